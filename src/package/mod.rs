//! Export packages: the zip, the unzipped folder, or a bare model file with `labels.txt` beside it.
//!
//! Loading only gathers bytes and the exporter's own descriptions; what the graph means is the
//! engine's business.

mod format;
mod manifest;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use format::{detect, ModelFormat};
pub use manifest::{parse_labels, parse_metadata, Manifest};

use crate::error::{Error, Result};

const MODEL_NAMES: [&str; 3] = ["model.onnx", "model.tflite", "model.pb"];
/// Zip entries larger than this are not models we can run on a Pi; refusing them early keeps a
/// hostile or mistaken zip from exhausting memory.
const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// Everything an export ships, read once.
#[derive(Debug, Clone)]
pub struct ExportPackage {
    /// What the user pointed at (zip, folder or model file).
    pub origin: PathBuf,
    /// The model file, as a path for messages (inside a zip: `export.zip/app/model.tflite`).
    pub model_path: PathBuf,
    pub model_bytes: Vec<u8>,
    /// SHA1 of the model file, hex: what a trained iteration records as its base.
    pub model_sha1: String,
    pub format: ModelFormat,
    /// `labels.txt`, when the export has one (some 2018 ONNX exports keep tags in the graph).
    pub labels: Option<Vec<String>>,
    pub manifest: Option<Manifest>,
    /// `metadata_properties.json`, empty when absent.
    pub metadata: BTreeMap<String, String>,
    /// Things worth telling the user that do not stop loading (SHA1 mismatch, unreadable extras).
    pub warnings: Vec<String>,
}

/// Where the export's files live.
enum Container {
    Dir(PathBuf),
    /// Zip entries by their path inside the archive.
    Zip(BTreeMap<String, Vec<u8>>),
}

impl Container {
    /// Files whose name (last path component) matches, case-insensitively, shallowest first.
    /// Looks at the top level and one folder down, where Docker exports keep `app/`.
    fn find(&self, name: &str) -> Option<(String, Vec<u8>)> {
        self.list().into_iter().find(|p| last_component(p).eq_ignore_ascii_case(name)).and_then(|p| {
            let bytes = self.read(&p).ok()?;
            Some((p, bytes))
        })
    }

    fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Container::Zip(entries) => entries.keys().cloned().collect(),
            Container::Dir(dir) => {
                let mut names = vec![];
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let path = entry.path();
                    if path.is_dir() {
                        for sub in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                            if sub.path().is_file() {
                                names.push(format!("{name}/{}", sub.file_name().to_string_lossy()));
                            }
                        }
                    } else {
                        names.push(name);
                    }
                }
                names
            }
        };
        names.sort_by_key(|n| (n.matches('/').count(), n.clone()));
        names
    }

    fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Container::Zip(entries) => Ok(entries[name].clone()),
            Container::Dir(dir) => std::fs::read(dir.join(name)),
        }
    }
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ExportPackage {
    /// Loads a zip, a folder, or a bare model file (with `labels.txt` etc. beside it).
    pub fn load(path: impl AsRef<Path>) -> Result<ExportPackage> {
        let origin = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&origin).map_err(|e| Error::io(&origin, e))?;
        if meta.is_dir() {
            return Self::from_container(origin.clone(), Container::Dir(origin), None);
        }
        let bytes = std::fs::read(&origin).map_err(|e| Error::io(&origin, e))?;
        if format::is_zip(&bytes) {
            return Self::from_bytes(origin, bytes);
        }
        let dir = origin.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let name = origin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::from_container(origin, Container::Dir(dir), Some((name, bytes)))
    }

    /// Loads an export held in memory: a zip, or a bare model file with nothing beside it.
    /// `origin` names it in messages.
    pub fn from_bytes(origin: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<ExportPackage> {
        let origin = origin.into();
        if format::is_zip(&bytes) {
            let entries = read_zip(&origin, &bytes)?;
            return Self::from_container(origin, Container::Zip(entries), None);
        }
        let name = origin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::from_container(origin, Container::Zip(BTreeMap::new()), Some((name, bytes)))
    }

    fn from_container(
        origin: PathBuf,
        container: Container,
        bare_model: Option<(String, Vec<u8>)>,
    ) -> Result<ExportPackage> {
        let mut warnings = vec![];
        let manifest = match container.find("cvexport.manifest") {
            Some((name, bytes)) => match Manifest::parse(&bytes) {
                Ok(m) => Some(m),
                Err(e) => {
                    warnings.push(format!("ignoring {name}: not valid JSON ({e})"));
                    None
                }
            },
            None => None,
        };
        let (model_path, model_name, model_bytes) = match bare_model {
            Some((name, bytes)) => (origin.clone(), name, bytes),
            None => {
                let (name, bytes) = choose_model(&origin, &container, manifest.as_ref())?;
                (origin.join(&name), name, bytes)
            }
        };
        let format = detect_format(&model_path, &model_name, &model_bytes)?;

        let label_name = manifest.as_ref().and_then(|m| m.label_file_name.clone());
        let labels = container
            .find(label_name.as_deref().unwrap_or("labels.txt"))
            .or_else(|| container.find("labels.txt"))
            .map(|(_, bytes)| parse_labels(&bytes));
        let metadata_name = manifest.as_ref().and_then(|m| m.metadata_props_file_name.clone());
        let metadata = match container
            .find(metadata_name.as_deref().unwrap_or("metadata_properties.json"))
            .or_else(|| container.find("metadata_properties.json"))
        {
            Some((name, bytes)) => parse_metadata(&bytes).unwrap_or_else(|e| {
                warnings.push(format!("ignoring {name}: {e}"));
                BTreeMap::new()
            }),
            None => BTreeMap::new(),
        };
        let model_sha1 = sha1_smol::Sha1::from(&model_bytes).digest().to_string();
        if let Some(expected) = manifest.as_ref().and_then(|m| m.model_file_sha1.as_deref()) {
            let actual = &model_sha1;
            if !actual.eq_ignore_ascii_case(expected.trim()) {
                // Older exporters wrote a SHA1 that never matched; a mismatch is worth a warning,
                // never a refusal.
                warnings.push(format!(
                    "{} has SHA1 {actual} but cvexport.manifest says {expected}: the file was changed or the exporter wrote a stale hash",
                    model_name
                ));
            }
        }
        Ok(ExportPackage { origin, model_path, model_bytes, model_sha1, format, labels, manifest, metadata, warnings })
    }

    /// The Custom Vision iteration id, when the manifest has one.
    pub fn iteration_id(&self) -> Option<&str> {
        self.manifest.as_ref().and_then(|m| m.iteration_id.as_deref())
    }

    /// The manifest's flavor (`OnnxFloat16`, `TensorFlowLiteFloat16`...).
    pub fn flavor(&self) -> Option<&str> {
        self.manifest.as_ref().and_then(|m| m.flavor.as_deref())
    }
}

fn read_zip(origin: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    read_zip_within(origin, bytes, MAX_ENTRY_BYTES)
}

/// The zip's files, which may add up to at most `limit` bytes (one larger than that is skipped).
fn read_zip_within(origin: &Path, bytes: &[u8], limit: u64) -> Result<BTreeMap<String, Vec<u8>>> {
    let damaged = |e: &dyn std::fmt::Display| {
        Error::package(
            origin,
            format!("the zip is damaged or incomplete ({e})"),
            "download or copy the export again and check its size",
        )
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| damaged(&e))?;
    let mut entries = BTreeMap::new();
    let mut budget = limit;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| damaged(&e))?;
        let size = file.size();
        if file.is_dir() || size > limit {
            continue;
        }
        if size > budget {
            return Err(Error::package(
                origin,
                format!("the zip's files add up to more than {} MB", limit.div_ceil(1 << 20)),
                "unzip the export and point --model at the folder holding the model file",
            ));
        }
        let name = file.name().trim_start_matches("./").to_owned();
        // The declared size is only a claim: a deflated entry can inflate far beyond it (a zip
        // bomb), so no more than it is read and only what arrives is allocated.
        let mut data = Vec::with_capacity(size.min(bytes.len() as u64) as usize);
        (&mut file).take(size + 1).read_to_end(&mut data).map_err(|e| damaged(&e))?;
        if data.len() as u64 != size {
            let than = if data.len() as u64 > size { "more" } else { "fewer" };
            return Err(damaged(&format!("{name} holds {than} bytes than the {size} its header says")));
        }
        budget -= size;
        entries.insert(name, data);
    }
    Ok(entries)
}

fn choose_model(origin: &Path, container: &Container, manifest: Option<&Manifest>) -> Result<(String, Vec<u8>)> {
    if let Some(name) = manifest.and_then(|m| m.model_file_name.as_deref()) {
        if let Some(found) = container.find(name) {
            return Ok(found);
        }
    }
    for name in MODEL_NAMES {
        if let Some(found) = container.find(name) {
            return Ok(found);
        }
    }
    let names = container.list();
    if names.iter().any(|n| last_component(n).eq_ignore_ascii_case("saved_model.pb")) {
        return Err(Error::package(
            origin,
            "this is a TensorFlow SavedModel export, which cvedge does not load",
            "export the iteration as TensorFlow (frozen graph), TensorFlow Lite or ONNX",
        ));
    }
    let candidates: Vec<&String> =
        names.iter().filter(|n| format::from_extension(n).is_some()).collect();
    match candidates.as_slice() {
        [one] => Ok(((*one).clone(), container.read(one).map_err(|e| Error::io(origin.join(one), e))?)),
        [] => Err(Error::package(
            origin,
            "no model file found (looked for model.onnx, model.tflite, model.pb or any .onnx/.tflite/.pb)",
            "point --model at a Custom Vision export zip, its folder, or the model file itself",
        )),
        many => Err(Error::package(
            origin,
            format!("several model files found: {}", many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
            "point --model at the one model file you want (labels.txt must sit beside it)",
        )),
    }
}

fn detect_format(model_path: &Path, name: &str, bytes: &[u8]) -> Result<ModelFormat> {
    if let Some(found) = detect(bytes) {
        return Ok(found);
    }
    let problem = match format::from_extension(name) {
        Some(expected) => format!("the file's name says {expected} but its bytes are not in that format (empty, truncated or corrupt)"),
        None => "the file is not an ONNX, TensorFlow Lite or TensorFlow frozen-graph model".to_owned(),
    };
    Err(Error::package(model_path, problem, "copy the model file from the Custom Vision export again"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in files {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// Rewrites every header's uncompressed size of a one-entry zip (local header offset 22,
    /// central directory offset 24).
    fn claim_size(mut zip: Vec<u8>, size: u32) -> Vec<u8> {
        for (signature, offset) in [(b"PK\x03\x04", 22), (b"PK\x01\x02", 24)] {
            let at = zip.windows(4).position(|w| w == signature).unwrap() + offset;
            zip[at..at + 4].copy_from_slice(&size.to_le_bytes());
        }
        zip
    }

    #[test]
    fn zips_load_from_memory() {
        let model = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/conformance/tflite-2019-fp32/model.tflite")).unwrap();
        let package = ExportPackage::from_bytes("x.zip", zip(&[("app/model.tflite", &model), ("app/labels.txt", b"a\nb\n")])).unwrap();
        assert_eq!((package.format, package.model_path.as_path()), (ModelFormat::TfLite, Path::new("x.zip/app/model.tflite")));
        assert_eq!(package.labels, Some(vec!["a".to_owned(), "b".to_owned()]));
        let bare = ExportPackage::from_bytes("dir/m.tflite", model).unwrap();
        assert_eq!((bare.model_path.as_path(), bare.labels), (Path::new("dir/m.tflite"), None));
    }

    #[test]
    fn an_entry_larger_than_its_header_says_is_refused() {
        // A zip bomb's entries claim a small size and inflate to far more; reading stops at the claim.
        let wire = claim_size(zip(&[("model.onnx", &[8u8; 100])]), 10);
        let err = ExportPackage::from_bytes("bomb.zip", wire).unwrap_err().to_string();
        assert!(err.contains("model.onnx holds more bytes than the 10 its header says"), "{err}");
    }

    #[test]
    fn a_zip_whose_files_add_up_to_more_than_the_limit_is_refused() {
        let wire = zip(&[("model.onnx", &[8u8; 600]), ("labels.txt", &[b'a'; 600])]);
        let err = read_zip_within(Path::new("big.zip"), &wire, 1000).unwrap_err().to_string();
        assert!(err.contains("big.zip") && err.contains("add up to more than 1 MB") && err.contains("unzip the export"), "{err}");
        assert_eq!(read_zip_within(Path::new("big.zip"), &wire, 1200).unwrap().len(), 2);
    }
}
