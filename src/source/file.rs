//! Replaying image files: `predict`'s source, and the daemon's `file:` cameras.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Frame, Pixels, Source};
use crate::error::{Error, Result};

/// Replays image files in the given order.
pub struct FileSource {
    paths: std::vec::IntoIter<PathBuf>,
    seq: u64,
}

impl FileSource {
    pub fn new(paths: impl IntoIterator<Item = impl AsRef<Path>>) -> FileSource {
        let paths: Vec<PathBuf> = paths.into_iter().map(|p| p.as_ref().to_path_buf()).collect();
        FileSource { paths: paths.into_iter(), seq: 0 }
    }
}

impl Source for FileSource {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        let path = self.paths.next()?;
        self.seq += 1;
        let origin = path.display().to_string();
        let frame = std::fs::read(&path)
            .map_err(|e| Error::io(&path, e))
            .map(|bytes| Frame { origin, seq: self.seq, time: SystemTime::now(), pixels: Pixels::Encoded(bytes) });
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_source_reports_missing_files_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        std::fs::write(&good, b"any bytes: decoding happens later").unwrap();
        let mut source = FileSource::new([dir.path().join("missing.png"), good]);
        assert!(source.next_frame().unwrap().is_err());
        let frame = source.next_frame().unwrap().unwrap();
        assert_eq!(frame.seq, 2);
        assert!(matches!(frame.pixels, Pixels::Encoded(ref b) if b.starts_with(b"any bytes")));
        assert!(source.next_frame().is_none());
    }
}
