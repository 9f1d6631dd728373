//! Trained iterations: the on-device equivalent of the portal's iteration list.
//!
//! # Layout of the iterations folder
//! ```text
//! ROOT/published.json        {"number": N, "id": "..."}: the published iteration
//! ROOT/<N>/iteration.json    what it is and how good it is (record::IterationRecord)
//! ROOT/<N>/head.json         the trained head's weights
//! ROOT/<N>/data.json         which images it was trained on, with which tags
//! ROOT/bases/<sha1>/         the base export's files, copied once: an iteration keeps working
//!                            after the export it was trained from is moved or deleted
//! ROOT/images/<sha1>.<ext>   the training images, by content (hard links to the data folder
//!                            where possible); shared by every iteration that used them
//! ROOT/.cache/features/      backbone features (crate::train::features)
//! ```
//!
//! # Crash safety
//! An iteration is written in full into a hidden `.tmp-*` folder and renamed to its number, so a
//! numbered folder is always complete. Publishing rewrites `published.json` atomically (temporary
//! file, fsync, rename): after a kill -9 at any moment it names either the old or the new
//! iteration. Deleting renames the folder away first, then removes it, then drops the images and
//! bases no remaining iteration lists: never one another iteration uses.

mod record;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use record::{BaseRecord, DataImage, DataManifest, HeadRecord, IterationRecord, PreprocessingRecord, TrainingRecord};
use record::{damaged, read_json, write_json};

use crate::classifier::{Classifier, Kind, LoadOptions};
use crate::error::{Error, Result};
use crate::head::Head as _;
use crate::package::{ExportPackage, ModelFormat};
use crate::train::{TrainOptions, Trained};

const RECORD: &str = "iteration.json";
const HEAD: &str = "head.json";
const DATA: &str = "data.json";
const PUBLISHED: &str = "published.json";
/// Temporary folders older than this were left by a killed process (see `remove_stale_temporaries`).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Published {
    number: u32,
    id: String,
}

/// The iterations folder.
pub struct Store {
    root: PathBuf,
}

/// A loaded iteration: its folder and record.
#[derive(Debug, Clone)]
pub struct Iteration {
    pub dir: PathBuf,
    pub record: IterationRecord,
}

fn iteration_error(path: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Iteration { path: path.to_path_buf(), problem: problem.into(), fix: fix.into() }
}

impl Store {
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| Error::io_write(&root, e))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where training caches backbone features.
    pub fn feature_cache(&self) -> PathBuf {
        self.root.join(".cache").join("features")
    }

    fn numbers(&self) -> Result<Vec<u32>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let mut numbers: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|n| self.root.join(n.to_string()).join(RECORD).is_file())
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Every iteration, oldest first.
    pub fn list(&self) -> Result<Vec<Iteration>> {
        self.numbers()?.into_iter().map(|n| self.get(n)).collect()
    }

    pub fn get(&self, number: u32) -> Result<Iteration> {
        let dir = self.root.join(number.to_string());
        if !dir.join(RECORD).is_file() {
            let known: Vec<String> = self.numbers()?.iter().map(u32::to_string).collect();
            return Err(iteration_error(
                &self.root,
                format!("there is no iteration {number}"),
                if known.is_empty() { "train one with `cvedge train`".to_owned() } else { format!("use one of: {}", known.join(", ")) },
            ));
        }
        Ok(Iteration { record: read_json(&dir.join(RECORD))?, dir })
    }

    /// The published iteration's number, if any.
    pub fn published(&self) -> Result<Option<u32>> {
        let path = self.root.join(PUBLISHED);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_json::<Published>(&path)?.number))
    }

    /// Writes a new iteration from a training run and returns it.
    pub fn create(&self, classifier: &Classifier, trained: &Trained, options: &TrainOptions) -> Result<Iteration> {
        self.remove_stale_temporaries();
        let base = self.keep_base(classifier)?;
        let mut images = vec![];
        for image in &trained.images {
            images.push(self.keep_image(image)?);
        }
        let tmp = self.root.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
        let mut record = IterationRecord {
            number: 0,
            id: uuid::Uuid::new_v4().to_string(),
            created: crate::prediction::utc(std::time::SystemTime::now()),
            kind: match trained.kind {
                Kind::MultiClass => "multiclass",
                Kind::MultiLabel => "multilabel",
            }
            .to_owned(),
            tags: trained.tags.clone(),
            threshold: options.threshold,
            base,
            preprocessing: PreprocessingRecord::of(&classifier.preprocessor.conventions),
            training: TrainingRecord {
                options: options.clone(),
                images: trained.images.len(),
                skipped: trained.skipped.iter().map(|(i, why)| format!("{}: {why}", i.path.display())).collect(),
                folds: trained.folds,
                epochs: trained.final_fit.epochs,
                best_epoch: trained.final_fit.best_epoch,
                computed_features: trained.computed_features,
                feature_seconds: trained.feature_time.as_secs_f64(),
                training_seconds: trained.training_time.as_secs_f64(),
            },
            performance: trained.summary.clone(),
            confusion: trained.confusion.clone(),
        };
        let written = (|| {
            write_json(&tmp.join(HEAD), &HeadRecord::of(&trained.head))?;
            write_json(&tmp.join(DATA), &DataManifest { images })?;
            // The number is taken by the rename: two trainings at once get different numbers.
            let mut number = self.numbers()?.last().copied().unwrap_or(0) + 1;
            loop {
                record.number = number;
                write_json(&tmp.join(RECORD), &record)?;
                let dir = self.root.join(number.to_string());
                match std::fs::rename(&tmp, &dir) {
                    Ok(()) => {
                        sync_dir(&self.root);
                        return Ok(Iteration { dir, record });
                    }
                    Err(_) if dir.exists() => number += 1,
                    Err(e) => return Err(Error::io_write(&dir, e)),
                }
            }
        })();
        if written.is_err() {
            // A full disk: what was written of the iteration would only hold space.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written
    }

    /// Removes the temporary folders a killed training or deletion left (`.tmp-*`, `.trash-*`,
    /// `bases/.tmp-*`): the base export's copy alone is as large as the model. Only those
    /// untouched for an hour, so a training running beside this one keeps its own.
    fn remove_stale_temporaries(&self) {
        let stale = |entry: &std::fs::DirEntry| {
            entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > STALE_AFTER)
        };
        for (dir, prefixes) in [(self.root.clone(), &[".tmp-", ".trash-"][..]), (self.root.join("bases"), &[".tmp-"][..])] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p)) && stale(&entry) {
                    log::info!("removing {}, left by an interrupted training", entry.path().display());
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// Copies the base export's model, labels and metadata into `bases/<sha1>/` (once).
    fn keep_base(&self, classifier: &Classifier) -> Result<BaseRecord> {
        let package = &classifier.package;
        let dir = self.root.join("bases").join(&package.model_sha1);
        if !dir.exists() {
            // The classifier dropped its copy of the bytes; read the export again.
            let fresh = ExportPackage::load(&package.origin)?;
            if fresh.model_sha1 != package.model_sha1 {
                return Err(Error::Training {
                    problem: format!("{} changed while training", package.origin.display()),
                    fix: "train again".to_owned(),
                });
            }
            let tmp = self.root.join("bases").join(format!(".tmp-{}", uuid::Uuid::new_v4()));
            let name = match fresh.format {
                ModelFormat::Onnx => "model.onnx",
                ModelFormat::TfLite => "model.tflite",
                ModelFormat::TfFrozenGraph => "model.pb",
            };
            let written = (|| {
                crate::fsutil::write_atomic(&tmp.join(name), &fresh.model_bytes)?;
                if let Some(labels) = &fresh.labels {
                    crate::fsutil::write_atomic(&tmp.join("labels.txt"), (labels.join("\n") + "\n").as_bytes())?;
                }
                if !fresh.metadata.is_empty() {
                    write_json(&tmp.join("metadata_properties.json"), &fresh.metadata)?;
                }
                Ok(())
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
            if std::fs::rename(&tmp, &dir).is_err() {
                // Another training stored the same base meanwhile.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Ok(BaseRecord {
            sha1: package.model_sha1.clone(),
            format: package.format.to_string(),
            origin: std::fs::canonicalize(&package.origin).unwrap_or(package.origin.clone()).display().to_string(),
            iteration: package.iteration_id().map(str::to_owned),
            tags: classifier.labels.clone(),
        })
    }

    /// Keeps a training image in `images/` (a hard link when possible, else a copy).
    fn keep_image(&self, image: &crate::dataset::TaggedImage) -> Result<DataImage> {
        let extension = image.path.extension().and_then(|e| e.to_str()).unwrap_or("jpg").to_ascii_lowercase();
        let file = format!("images/{}.{extension}", image.sha1);
        let path = self.root.join(&file);
        if !path.exists() {
            std::fs::create_dir_all(self.root.join("images")).map_err(|e| Error::io_write(self.root.join("images"), e))?;
            if std::fs::hard_link(&image.path, &path).is_err() {
                let bytes = std::fs::read(&image.path).map_err(|e| Error::io(&image.path, e))?;
                crate::fsutil::write_atomic(&path, &bytes)?;
            }
        }
        Ok(DataImage { sha1: image.sha1.clone(), file, source: image.path.display().to_string(), tags: image.tags.clone() })
    }

    /// Makes `number` the published iteration, after checking it loads.
    pub fn publish(&self, number: u32) -> Result<Iteration> {
        let iteration = self.get(number)?;
        load_parts(&iteration.dir)?;
        let published = Published { number, id: iteration.record.id.clone() };
        write_json(&self.root.join(PUBLISHED), &published)?;
        Ok(iteration)
    }

    /// Deletes an iteration (never the published one), then the images and bases that no
    /// remaining iteration uses. Returns how many image files were removed.
    pub fn delete(&self, number: u32) -> Result<usize> {
        let iteration = self.get(number)?;
        if self.published()? == Some(number) {
            return Err(iteration_error(
                &iteration.dir,
                format!("iteration {number} is the published one"),
                "publish another iteration first (`cvedge iterations publish N`)",
            ));
        }
        let trash = self.root.join(format!(".trash-{}", uuid::Uuid::new_v4()));
        std::fs::rename(&iteration.dir, &trash).map_err(|e| Error::io_write(&iteration.dir, e))?;
        sync_dir(&self.root);
        std::fs::remove_dir_all(&trash).map_err(|e| Error::io_write(&trash, e))?;
        self.collect_garbage()
    }

    /// Removes images and bases that no iteration lists.
    fn collect_garbage(&self) -> Result<usize> {
        let mut images = BTreeSet::new();
        let mut bases = BTreeSet::new();
        for iteration in self.list()? {
            let data: DataManifest = read_json(&iteration.dir.join(DATA))?;
            images.extend(data.images.into_iter().map(|i| i.file));
            bases.insert(iteration.record.base.sha1);
        }
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join("images")).into_iter().flatten().flatten() {
            let file = format!("images/{}", entry.file_name().to_string_lossy());
            if !images.contains(&file) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        for entry in std::fs::read_dir(self.root.join("bases")).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !bases.contains(&name) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(removed)
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The iteration folder `path` names: an iteration folder itself, or an iterations folder (its
/// published iteration). `None` when `path` is neither (an export).
pub fn resolve(path: &Path) -> Result<Option<PathBuf>> {
    if !path.is_dir() {
        return Ok(None);
    }
    if path.join(RECORD).is_file() {
        return Ok(Some(path.to_path_buf()));
    }
    let published = path.join(PUBLISHED);
    if published.is_file() {
        let number = read_json::<Published>(&published)?.number;
        let dir = path.join(number.to_string());
        if !dir.join(RECORD).is_file() {
            return Err(damaged(&published, format!("it names iteration {number}, which is missing")));
        }
        return Ok(Some(dir));
    }
    let store = Store { root: path.to_path_buf() };
    if !store.numbers()?.is_empty() {
        return Err(iteration_error(path, "no iteration is published yet", format!("run `cvedge iterations publish N --iterations {}`, or point --model at one iteration's folder ({}/N)", path.display(), path.display())));
    }
    Ok(None)
}

/// The published iteration's id when `path` is an iterations folder with one published; the
/// daemon polls this to hot-swap.
pub fn published_id(path: &Path) -> Option<String> {
    read_json::<Published>(&path.join(PUBLISHED)).ok().map(|p| p.id)
}

/// An iteration's record, head and the folder of its base export.
fn load_parts(dir: &Path) -> Result<(IterationRecord, crate::head::LinearHead, PathBuf)> {
    let record: IterationRecord = read_json(&dir.join(RECORD))?;
    let head_path = dir.join(HEAD);
    let head = read_json::<HeadRecord>(&head_path)?.to_head(&head_path)?;
    if head.tags() != record.tags.len() {
        return Err(damaged(&head_path, format!("the head has {} outputs for {} tags", head.tags(), record.tags.len())));
    }
    let root = dir.parent().unwrap_or(Path::new("."));
    let base = root.join("bases").join(&record.base.sha1);
    if !base.is_dir() {
        return Err(iteration_error(&base, "the iteration's base export is missing", "train a new iteration from the export"));
    }
    Ok((record, head, base))
}

/// Writes the iteration named by `path` (an iteration folder, or an iterations folder: its
/// published one) as a standalone current-layout Custom Vision ONNX export in `out` (see
/// [`crate::export`]). An export given instead is written with its own head: for TFLite and
/// TensorFlow exports, their ONNX twin. Non-ONNX bases are rewritten by [`crate::convert`].
pub fn export(path: &Path, out: &Path) -> Result<crate::export::ExportReport> {
    let Some(dir) = resolve(path)? else {
        let classifier = Classifier::load_export(path, &LoadOptions::default())?;
        let head = classifier.head.linear().cloned().ok_or_else(|| {
            Error::model(path, "its final fully connected layer could not be split off", "report the model so its graph can be supported")
        })?;
        let package = ExportPackage::load(path)?;
        let bytes = crate::convert::onnx_bytes(&package, &classifier.preprocessor.conventions)?;
        return crate::export::export_onnx(&bytes, &package.model_path, &head, &classifier.labels, &classifier.iteration_id, out);
    };
    let (record, head, base) = load_parts(&dir)?;
    let package = ExportPackage::load(&base)?;
    // Only a base that needs rewriting needs its preprocessing, and so the loaded iteration.
    let bytes = match package.format {
        ModelFormat::Onnx => std::borrow::Cow::Borrowed(&package.model_bytes[..]),
        _ => crate::convert::onnx_bytes(&package, &load_classifier(&dir, &LoadOptions::default())?.preprocessor.conventions)?,
    };
    crate::export::export_onnx(&bytes, &package.model_path, &head, &record.tags, &record.id, out)
}

/// Loads an iteration as its base export's preprocessing and backbone with the trained head.
pub fn load_classifier(dir: &Path, options: &LoadOptions) -> Result<Classifier> {
    let (record, head, base) = load_parts(dir)?;
    if !options.engine.split {
        return Err(Error::Option("a trained iteration always runs as backbone + head; drop --no-split".to_owned()));
    }
    let mut options = options.clone();
    record.preprocessing.fill(&mut options);
    options.threshold = options.threshold.or(Some(record.threshold));
    let mut classifier = Classifier::load_export(&base, &options)?;
    if classifier.engine.output_width() != head.width {
        return Err(damaged(dir, format!("the head expects {} features but the base gives {}", head.width, classifier.engine.output_width())));
    }
    classifier.head = Box::new(head);
    classifier.labels = record.tags;
    classifier.kind = if record.kind == "multilabel" { Kind::MultiLabel } else { Kind::MultiClass };
    classifier.iteration_id = record.id;
    Ok(classifier)
}
