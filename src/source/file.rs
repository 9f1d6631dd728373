//! Replaying image files: `predict`'s source, and the daemon's `file:` cameras.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::pace::Pacer;
use super::{Frame, Pixels, Source};
use crate::error::{Error, Result};

/// Extensions a `file:` folder is searched for.
const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// Replays image files in the given order, optionally forever and at a frame rate.
pub struct FileSource {
    paths: Vec<PathBuf>,
    next: usize,
    looping: bool,
    pacer: Pacer,
    seq: u64,
}

impl FileSource {
    pub fn new(paths: impl IntoIterator<Item = impl AsRef<Path>>) -> FileSource {
        let paths = paths.into_iter().map(|p| p.as_ref().to_path_buf()).collect();
        FileSource { paths, next: 0, looping: false, pacer: Pacer::new(None), seq: 0 }
    }

    /// Starts again from the first file after the last.
    pub fn looping(mut self, looping: bool) -> FileSource {
        self.looping = looping;
        self
    }

    /// Delivers at most `fps` frames per second.
    pub fn paced(mut self, fps: Option<f32>) -> FileSource {
        self.pacer = Pacer::new(fps);
        self
    }

    /// The files a `file:` spec names: a file, the images in a folder, or a glob's matches
    /// (sorted by name, so a numbered sequence replays in order).
    pub fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
        let origin = format!("file:{pattern}");
        let path = Path::new(pattern);
        let mut paths: Vec<PathBuf> = if path.is_dir() {
            images_in(path)?
        } else if pattern.contains(['*', '?', '[']) {
            let matches = glob::glob(pattern).map_err(|e| Error::capture(&origin, format!("not a valid glob ({e})"), "write e.g. file:/images/*.jpg"))?;
            matches.filter_map(|m| m.ok()).filter(|p| p.is_file()).collect()
        } else {
            vec![path.to_path_buf()]
        };
        paths.sort();
        if paths.is_empty() {
            return Err(Error::capture(origin, "no image files match", "check the path; folders are searched for .jpg, .png, .bmp, .gif, .webp and .tif files"));
        }
        if paths.len() == 1 && !paths[0].exists() {
            return Err(Error::capture(origin, "the file does not exist", "check the path"));
        }
        Ok(paths)
    }
}

/// Whether the file's name ends in an image extension (any case).
pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files directly inside `dir`, sorted by name. Hidden files are skipped: a `.name`
/// is a half-written temporary file or macOS's `._photo.jpg` metadata, never a picture.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut images: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file() && is_image(p) && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    images.sort();
    Ok(images)
}

impl Source for FileSource {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.next == self.paths.len() && self.looping {
            self.next = 0;
        }
        let path = self.paths.get(self.next)?.clone();
        self.next += 1;
        self.pacer.wait();
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

    #[test]
    fn folders_globs_looping_and_pacing() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jpg", "a.PNG", "notes.txt"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let folder = FileSource::expand(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(folder, [dir.path().join("a.PNG"), dir.path().join("b.jpg")]);
        let glob = FileSource::expand(&format!("{}/*.jpg", dir.path().display())).unwrap();
        assert_eq!(glob, [dir.path().join("b.jpg")]);
        let err = FileSource::expand(&format!("{}/*.webp", dir.path().display())).unwrap_err().to_string();
        assert!(err.contains("no image files match"), "{err}");

        let start = std::time::Instant::now();
        let mut source = FileSource::new(folder).looping(true).paced(Some(50.0));
        let origins: Vec<String> = (0..5).map(|_| source.next_frame().unwrap().unwrap().origin).collect();
        assert!(origins[0].ends_with("a.PNG") && origins[2].ends_with("a.PNG") && origins[4].ends_with("a.PNG"), "{origins:?}");
        // Five frames at 50 fps: four intervals of 20 ms.
        assert!(start.elapsed() >= std::time::Duration::from_millis(75), "{:?}", start.elapsed());
    }
}
