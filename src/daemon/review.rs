//! Review frames: the frames a model was unsure about are the ones worth tagging and training on,
//! so with `[review]` configured each camera keeps some in `DATA/.review/<camera>/` (a dot-folder:
//! `cvedge dataset` and training skip it; a technician tags a file with
//! `cvedge capture --import FILE --tag TAG`).
//!
//! Bounded twice: the worker's [`ReviewGate`] passes at most one frame per `interval_s` (a cheap
//! check on the hot path), and [`ReviewFolder`] keeps the newest `max_images`, deleting the oldest.
//! Files are named `<number>-<UTC time>-<best tag>-<percent>.<ext>`; the number (one more than the
//! highest in the folder) orders them, so a clock that jumps back cannot make a new file look
//! oldest. Only files named that way are ever deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::ReviewConfig;
use crate::error::{Error, Result};
use crate::prediction::utc;
use crate::source::{Frame, Pixels};

/// The worker's side: which classified frames are worth keeping.
pub struct ReviewGate {
    below: f32,
    interval: Duration,
    next: Instant,
}

impl ReviewGate {
    pub fn new(config: &ReviewConfig) -> ReviewGate {
        ReviewGate { below: config.below, interval: Duration::from_secs_f32(config.interval_s), next: Instant::now() }
    }

    /// Whether a frame whose best probability is `best` should be kept now.
    pub fn wants(&self, best: f32) -> bool {
        best < self.below && Instant::now() >= self.next
    }

    /// A frame was handed over for saving: the next one waits `interval_s`.
    pub fn taken(&mut self) {
        self.next = Instant::now() + self.interval;
    }
}

/// The saving side: one camera's review folder.
pub struct ReviewFolder {
    dir: PathBuf,
    max_images: usize,
}

impl ReviewFolder {
    pub fn new(dir: PathBuf, max_images: usize) -> ReviewFolder {
        ReviewFolder { dir, max_images: max_images.max(1) }
    }

    /// Deletes the oldest review files until one more fits under `max_images`, then writes the
    /// frame (JPEG bytes as they are, raw pixels as PNG). Room is made first so the folder never
    /// holds more than `max_images`, not even for a moment (the cap is what bounds its disk use).
    /// `best` names the model's best guess in the file name.
    pub fn save(&self, frame: &Frame, best: &str, probability: f32) -> Result<PathBuf> {
        let ours = self.numbered_files()?;
        let number = ours.last().map_or(1, |(n, _)| n + 1);
        let (bytes, extension) = encode(frame)?;
        let excess = (ours.len() + 1).saturating_sub(self.max_images);
        for (_, old) in &ours[..excess] {
            std::fs::remove_file(old).map_err(|e| Error::io_write(old, e))?;
        }
        let time = utc(frame.time).replace(':', "-");
        let name = format!("{number:08}-{time}-{}-{:02.0}.{extension}", file_safe(best), (probability * 100.0).floor());
        let path = self.dir.join(name);
        crate::fsutil::write_atomic(&path, &bytes)?;
        Ok(path)
    }

    /// Review files this folder wrote, oldest first.
    fn numbered_files(&self) -> Result<Vec<(u64, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut files: Vec<(u64, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let number = name.to_str()?.split_once('-')?.0.parse().ok()?;
                Some((number, entry.path()))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn encode(frame: &Frame) -> Result<(std::borrow::Cow<'_, [u8]>, &'static str)> {
    match &frame.pixels {
        Pixels::Encoded(bytes) if bytes.starts_with(&[0xff, 0xd8]) => Ok((bytes.into(), "jpg")),
        Pixels::Encoded(bytes) => Ok((bytes.into(), "png")),
        Pixels::Rgb(image) => {
            let mut png = std::io::Cursor::new(Vec::new());
            image
                .write_to(&mut png, image::ImageFormat::Png)
                .map_err(|e| Error::image(&frame.origin, format!("cannot encode the frame ({e})"), "report this as a bug"))?;
            Ok((png.into_inner().into(), "png"))
        }
    }
}

/// A tag name reduced to characters every filesystem accepts.
fn file_safe(tag: &str) -> String {
    tag.chars().take(40).map(|c| if c.is_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(byte: u8) -> Frame {
        Frame { origin: "t".into(), seq: 0, time: SystemTime::now(), pixels: Pixels::Encoded(vec![0xff, 0xd8, byte]) }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_newest_max_images_are_kept_and_foreign_files_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let review = dir.path().join(".review/door");
        std::fs::create_dir_all(&review).unwrap();
        std::fs::write(review.join("notes.txt"), "mine").unwrap();
        let folder = ReviewFolder::new(review.clone(), 3);
        for i in 0..5 {
            let path = folder.save(&frame(i), "Dr. Pepper/2", 0.4321).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), [0xff, 0xd8, i]);
        }
        let names = names(&review);
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names[0].starts_with("00000003-") && names[2].starts_with("00000005-"), "{names:?}");
        assert!(names[0].ends_with("-Dr__Pepper_2-43.jpg"), "{names:?}");
        assert_eq!(names[3], "notes.txt");
    }

    #[test]
    fn the_gate_passes_unsure_frames_once_per_interval() {
        let mut gate = ReviewGate::new(&ReviewConfig { below: 0.5, max_images: 1, interval_s: 3600.0 });
        assert!(!gate.wants(0.9));
        assert!(gate.wants(0.4));
        gate.taken();
        assert!(!gate.wants(0.1), "rate-limited");
        let gate = ReviewGate::new(&ReviewConfig { below: 1.0, max_images: 1, interval_s: 0.0 });
        assert!(gate.wants(0.99));
    }
}
