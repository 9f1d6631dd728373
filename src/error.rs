//! The library's typed errors. Every message names the problem and what to do about it, because
//! the CLI prints them as they are, in one sentence, to people who did not write the code.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The io error is part of the message, not a `source`, so it is printed once. A full or
    // read-only disk says so (it is a write that failed, and the fix is space, not the path).
    #[error("{}", io_message(path, cause, *writing))]
    Io { path: PathBuf, cause: std::io::Error, writing: bool },

    #[error("{}: {problem}; {fix}", path.display())]
    Package { path: PathBuf, problem: String, fix: String },

    #[error("{}: the file is an early-2018 preview ONNX export (opset 1, {detail}) that no current runtime supports; re-export the iteration from Custom Vision as ONNX (or TensorFlow Lite) and use that file", path.display())]
    LegacyPreviewExport { path: PathBuf, detail: String },

    #[error("{}: {problem}; {fix}", path.display())]
    Model { path: PathBuf, problem: String, fix: String },

    #[error("{}: labels.txt lists {labels} tags but the model outputs {outputs} probabilities; use the labels.txt that came in the same export (one tag per line, in output order)", path.display())]
    LabelCount { path: PathBuf, labels: usize, outputs: usize },

    #[error("{origin}: {problem}; {fix}")]
    Image { origin: String, problem: String, fix: String },

    /// A bad configuration value: names the key, what is wrong and the fix.
    #[error("config: {key}: {problem}; {fix}")]
    Config { key: String, problem: String, fix: String },

    /// The daemon's own files (sequence counters, outbox).
    #[error("{}: {problem}; {fix}", path.display())]
    State { path: PathBuf, problem: String, fix: String },

    /// A frame source (camera, stream, ffmpeg, replay) that cannot be opened or stopped delivering.
    #[error("{origin}: {problem}; {fix}")]
    Source { origin: String, problem: String, fix: String },

    /// Training data or options that cannot produce a head.
    #[error("cannot train: {problem}; {fix}")]
    Training { problem: String, fix: String },

    /// A trained iteration (or the folder of them) that is missing, damaged or misused.
    #[error("{}: {problem}; {fix}", path.display())]
    Iteration { path: PathBuf, problem: String, fix: String },

    /// An engine that cannot be used here (library missing, CPU too old, model it cannot run).
    #[error("the {engine} engine: {problem}; {fix}")]
    Engine { engine: &'static str, problem: String, fix: String },

    /// A quantization that cannot be done or did not pass its accuracy gate.
    #[error("cannot quantize: {problem}; {fix}")]
    Quantize { problem: String, fix: String },

    /// The prediction server cannot start (address, port, threads).
    #[error("HTTP server: {problem}; {fix}")]
    Serve { problem: String, fix: String },

    #[error("inference failed: {0}; this is a bug or an unsupported model, please report it with `cvedge inspect` output")]
    Inference(String),

    #[error("invalid option: {0}")]
    Option(String),
}

fn io_message(path: &std::path::Path, cause: &std::io::Error, writing: bool) -> String {
    use std::io::ErrorKind::*;
    match cause.kind() {
        StorageFull | QuotaExceeded => format!(
            "cannot write {}: the disk is full ({cause}); free space on it (old captures, unused iterations: `cvedge iterations delete N`) or move the folder to a larger disk",
            path.display()
        ),
        ReadOnlyFilesystem => format!("cannot write {}: the disk is read-only ({cause}); remount it read-write or move the folder to a writable disk", path.display()),
        _ if writing => format!("cannot write {}: {cause}; check that its folder exists and that cvedge's user may write there", path.display()),
        _ => format!("cannot read {}: {cause}; check that the path exists and is readable", path.display()),
    }
}

impl Error {
    /// A failed read (or a look at a folder).
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), cause: source, writing: false }
    }

    /// A failed write, rename or removal.
    pub(crate) fn io_write(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), cause: source, writing: true }
    }

    pub(crate) fn package(path: impl Into<PathBuf>, problem: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Package { path: path.into(), problem: problem.into(), fix: fix.into() }
    }

    pub(crate) fn model(path: impl Into<PathBuf>, problem: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Model { path: path.into(), problem: problem.into(), fix: fix.into() }
    }

    pub(crate) fn config(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Config { key: key.into(), problem: problem.into(), fix: fix.into() }
    }

    pub(crate) fn capture(origin: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Source { origin: origin.into(), problem: problem.into(), fix: fix.into() }
    }

    pub(crate) fn engine(engine: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Engine { engine, problem: problem.into(), fix: fix.into() }
    }

    pub(crate) fn image(origin: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Image { origin: origin.into(), problem: problem.into(), fix: fix.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_say_a_full_disk_is_full_and_a_missing_file_is_missing() {
        let full = Error::io("/var/lib/cvedge/data/cat/x.jpg", std::io::Error::from_raw_os_error(28)).to_string();
        assert!(full.starts_with("cannot write /var/lib/cvedge/data/cat/x.jpg: the disk is full") && full.contains("free space"), "{full}");
        let read_only = Error::io("/data/x", std::io::Error::from_raw_os_error(30)).to_string();
        assert!(read_only.contains("read-only") && read_only.starts_with("cannot write"), "{read_only}");
        let missing = Error::io("model.onnx", std::io::Error::from(std::io::ErrorKind::NotFound)).to_string();
        assert!(missing.starts_with("cannot read model.onnx") && missing.contains("exists"), "{missing}");
    }
}
