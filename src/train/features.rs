//! Backbone features for training images, computed once per image and cached by content hash.
//!
//! The cache is a folder per (base model, preprocessing) pair holding one small file per image
//! variant: `<image sha1>-<variant>.f32` (variant 0 is the image itself; augmented variants add
//! the augmentation seed to the name). Retraining after adding ten images therefore costs ten
//! backbone passes. Files are the features as little-endian f32 followed by the first 8 bytes of
//! their SHA1, so a file cut short or zero-filled by a power cut is recomputed, not trusted; that
//! check is why the cache can skip fsync (it is a cache: losing it costs time, never results).
//!
//! Extraction decodes, augments, preprocesses and runs the backbone on worker threads (one per
//! core) that hand finished feature rows to the caller's thread over a bounded channel: at most a
//! few images are decoded at any moment, whatever the dataset size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::classifier::Classifier;
use crate::dataset::TaggedImage;
use crate::error::{Error, Result};
use crate::preprocess::Preprocess;

use super::augment;

const CHECK_BYTES: usize = 8;

/// The cache for one base model and preprocessing.
pub struct FeatureCache {
    dir: PathBuf,
    width: usize,
}

impl FeatureCache {
    /// The cache folder under `root` for `classifier`'s backbone and preprocessing.
    pub fn open(root: &Path, classifier: &Classifier) -> Result<FeatureCache> {
        let key = format!(
            "{}|{}|{}|{:?}|{}",
            classifier.package.model_sha1,
            classifier.engine.input(),
            classifier.preprocessor.conventions,
            classifier.facts.split_at,
            classifier.engine.output_width()
        );
        let key = sha1_smol::Sha1::from(key).digest().to_string();
        let dir = root.join(format!("{}-{}", &classifier.package.model_sha1[..12], &key[..12]));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io_write(&dir, e))?;
        Ok(FeatureCache { dir, width: classifier.engine.output_width() })
    }

    fn path(&self, image_sha1: &str, variant: usize, seed: u64) -> PathBuf {
        match variant {
            0 => self.dir.join(format!("{image_sha1}-0.f32")),
            v => self.dir.join(format!("{image_sha1}-{v}s{seed}.f32")),
        }
    }

    /// Cached features, or `None` when absent or damaged.
    pub fn get(&self, image_sha1: &str, variant: usize, seed: u64) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.path(image_sha1, variant, seed)).ok()?;
        if bytes.len() != self.width * 4 + CHECK_BYTES {
            return None;
        }
        let (values, check) = bytes.split_at(self.width * 4);
        if sha1_smol::Sha1::from(values).digest().bytes()[..CHECK_BYTES] != *check {
            return None;
        }
        Some(values.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect())
    }

    pub fn put(&self, image_sha1: &str, variant: usize, seed: u64, features: &[f32]) -> Result<()> {
        let path = self.path(image_sha1, variant, seed);
        let mut bytes: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
        let check = sha1_smol::Sha1::from(&bytes).digest().bytes();
        bytes.extend_from_slice(&check[..CHECK_BYTES]);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            std::fs::File::create(&tmp)?.write_all(&bytes)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::io_write(&path, e))
    }
}

/// Features of every image: `variants` rows of the backbone's width per image, image-major
/// (`features[(image * variants + variant) * width ..]`). Images that could not be read or
/// decoded are listed in `failed` (with the reason) and their rows are zero.
pub struct Features {
    pub values: Vec<f32>,
    pub width: usize,
    pub variants: usize,
    pub failed: Vec<(usize, Error)>,
    /// Backbone passes actually run (the rest came from the cache).
    pub computed: usize,
}

impl Features {
    pub fn row(&self, image: usize, variant: usize) -> &[f32] {
        let start = (image * self.variants + variant) * self.width;
        &self.values[start..start + self.width]
    }
}

/// One image's variants through decode, augmentation, preprocessing and the backbone.
fn compute(classifier: &Classifier, image: &TaggedImage, variants: &[usize], seed: u64) -> Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(&image.path).map_err(|e| Error::io(&image.path, e))?;
    let decoded = crate::source::decode(&bytes, &image.path.display().to_string())?;
    drop(bytes);
    let mut tensor = vec![0f32; classifier.preprocessor.tensor_len()];
    variants
        .iter()
        .map(|&v| {
            classifier.backbone(&augment::variant(decoded.clone(), seed, &image.sha1, v), &mut tensor)
        })
        .collect()
}

/// Features for `images`, each with `variants` variants (1: no augmentation), from the cache
/// where present; `progress` advances once per image.
pub fn extract(
    classifier: &Classifier,
    cache: &FeatureCache,
    images: &[TaggedImage],
    variants: usize,
    seed: u64,
    progress: &indicatif::ProgressBar,
) -> Result<Features> {
    let width = classifier.engine.output_width();
    let mut features = Features { values: vec![0.0; images.len() * variants * width], width, variants, failed: vec![], computed: 0 };
    // Cached rows first; what is missing goes to the workers.
    let mut todo: Vec<(usize, Vec<usize>)> = vec![];
    for (i, image) in images.iter().enumerate() {
        let mut missing = vec![];
        for v in 0..variants {
            match cache.get(&image.sha1, v, seed) {
                Some(row) => {
                    let start = (i * variants + v) * width;
                    features.values[start..start + width].copy_from_slice(&row);
                }
                None => missing.push(v),
            }
        }
        if missing.is_empty() {
            progress.inc(1);
        } else {
            todo.push((i, missing));
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(todo.len()).max(1);
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<usize>, Result<Vec<Vec<f32>>>)>(workers * 2);
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let (tx, next, todo) = (tx.clone(), &next, &todo);
            scope.spawn(move || {
                while let Some((image, missing)) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let rows = compute(classifier, &images[*image], missing, seed);
                    if tx.send((*image, missing.clone(), rows)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (image, missing, rows) in rx {
            progress.inc(1);
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    features.failed.push((image, e));
                    continue;
                }
            };
            for (&v, row) in missing.iter().zip(rows) {
                if row.len() != width {
                    return Err(Error::Inference(format!("the backbone returned {} features instead of {width}", row.len())));
                }
                // A cache that cannot be written (full disk) only costs time next run.
                if let Err(e) = cache.put(&images[image].sha1, v, seed, &row) {
                    log::warn!("feature cache: {e}");
                }
                let start = (image * variants + v) * width;
                features.values[start..start + width].copy_from_slice(&row);
                features.computed += 1;
            }
        }
        Ok(())
    })?;
    features.failed.sort_by_key(|(image, _)| *image);
    Ok(features)
}
