//! The training data store: tagged captures in the common one-folder-per-tag layout
//! (`DATA/<tag>/<hash>.<ext>`). An image in several tag folders has all those tags (multilabel).
//! Files are named by a hash of their bytes, so adding the same picture twice to a tag is a no-op,
//! and written atomically (temp file, fsync, rename), so a power cut never leaves half an image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::source::{Frame, Pixels};

/// The portal's minimum number of images per tag.
pub const MIN_IMAGES_PER_TAG: usize = 5;

pub struct Dataset {
    root: PathBuf,
}

/// One training image: its content hash, a file holding it, and every tag it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedImage {
    /// SHA1 of the file's bytes, hex.
    pub sha1: String,
    pub path: PathBuf,
    /// Sorted tag names (several for a multilabel image).
    pub tags: Vec<String>,
}

/// What [`Dataset::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    Stored(PathBuf),
    /// The same bytes were already under this tag.
    Duplicate(PathBuf),
}

/// A tag name that is safe as one folder name: no separators, not `.` or `..`, no control
/// characters (tags arrive over MQTT too, and must never reach outside the data folder).
pub fn check_tag(tag: &str) -> Result<()> {
    let bad = tag.trim().is_empty()
        || tag == "."
        || tag == ".."
        || tag.starts_with('.')
        || tag.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(Error::config("tag", format!("{tag:?} cannot be a tag name"), "use letters, digits, spaces, '-' or '_' (no '/', no leading '.')"));
    }
    Ok(())
}

impl Dataset {
    pub fn open(root: impl AsRef<Path>) -> Result<Dataset> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| Error::io_write(&root, e))?;
        Ok(Dataset { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores encoded image bytes under `tag`; `extension` without the dot (`jpg`, `png`).
    pub fn add(&self, tag: &str, bytes: &[u8], extension: &str) -> Result<Added> {
        check_tag(tag)?;
        let hash = sha1_smol::Sha1::from(bytes).digest().to_string();
        let path = self.root.join(tag).join(format!("{}.{}", &hash[..20], extension.to_ascii_lowercase()));
        if path.exists() {
            return Ok(Added::Duplicate(path));
        }
        crate::fsutil::write_atomic(&path, bytes)?;
        Ok(Added::Stored(path))
    }

    /// Stores a frame as the camera delivered it (JPEG bytes as they are; decoded pixels as PNG,
    /// lossless).
    pub fn add_frame(&self, tag: &str, frame: &Frame) -> Result<Added> {
        match &frame.pixels {
            Pixels::Encoded(bytes) => {
                let extension = if bytes.starts_with(&[0xff, 0xd8]) { "jpg" } else { "png" };
                self.add(tag, bytes, extension)
            }
            Pixels::Rgb(image) => {
                let mut png = std::io::Cursor::new(Vec::new());
                image
                    .write_to(&mut png, image::ImageFormat::Png)
                    .map_err(|e| Error::image(&frame.origin, format!("cannot encode the frame ({e})"), "report this as a bug"))?;
                self.add(tag, png.get_ref(), "png")
            }
        }
    }

    /// Adds an existing image file (checked to be a readable image first).
    pub fn import(&self, tag: &str, file: &Path) -> Result<Added> {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        crate::source::decode(&bytes, &file.display().to_string())?;
        let extension = file.extension().and_then(|e| e.to_str()).filter(|_| crate::source::is_image(file)).unwrap_or("jpg");
        self.add(tag, &bytes, extension)
    }

    /// Image files per tag folder, each list sorted (hidden folders and files skipped).
    fn files_by_tag(&self) -> Result<BTreeMap<String, Vec<PathBuf>>> {
        let mut tags = BTreeMap::new();
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.is_dir() || name.starts_with('.') {
                continue;
            }
            let images = crate::source::images_in(&path)?;
            tags.insert(name, images);
        }
        Ok(tags)
    }

    /// Images per tag, by folder.
    pub fn counts(&self) -> Result<BTreeMap<String, usize>> {
        Ok(self.files_by_tag()?.into_iter().map(|(tag, files)| (tag, files.len())).collect())
    }

    /// Every distinct image (by content) with all its tags, sorted by hash so the order does not
    /// depend on the filesystem. Reads every file once to hash it; nothing is decoded.
    pub fn images(&self) -> Result<Vec<TaggedImage>> {
        let mut by_hash: BTreeMap<String, TaggedImage> = BTreeMap::new();
        for (tag, files) in self.files_by_tag()? {
            for path in files {
                let sha1 = file_sha1(&path)?;
                let image = by_hash.entry(sha1.clone()).or_insert_with(|| TaggedImage { sha1, path: path.clone(), tags: vec![] });
                if !image.tags.contains(&tag) {
                    image.tags.push(tag.clone());
                }
            }
        }
        Ok(by_hash.into_values().collect())
    }
}

/// SHA1 of a file's bytes, streamed (images can be large; a Pi has little memory).
pub fn file_sha1(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha1_smol::Sha1::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hasher.digest().to_string());
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_twice_under_one_tag_is_a_duplicate_under_two_tags_is_multilabel() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path()).unwrap();
        let first = data.add("cat", b"jpeg bytes", "jpg").unwrap();
        assert!(matches!(first, Added::Stored(_)));
        assert!(matches!(data.add("cat", b"jpeg bytes", "jpg").unwrap(), Added::Duplicate(_)));
        assert!(matches!(data.add("indoor", b"jpeg bytes", "jpg").unwrap(), Added::Stored(_)));
        assert!(matches!(data.add("cat", b"other bytes", "JPG").unwrap(), Added::Stored(_)));
        let counts = data.counts().unwrap();
        assert_eq!(counts["cat"], 2);
        assert_eq!(counts["indoor"], 1);
        // A hidden file (macOS `._` metadata, a temporary file) is never a training image.
        std::fs::write(dir.path().join("cat/._photo.jpg"), b"resource fork").unwrap();
        assert_eq!(data.counts().unwrap()["cat"], 2);
        let images = data.images().unwrap();
        assert_eq!(images.len(), 2, "two distinct images");
        let shared = images.iter().find(|i| i.sha1 == sha1_smol::Sha1::from(b"jpeg bytes").digest().to_string()).unwrap();
        assert_eq!(shared.tags, ["cat", "indoor"]);
        // No temporary files are left beside the images.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("cat")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.starts_with('.') || n == "._photo.jpg"), "{names:?}");
    }

    #[test]
    fn tags_cannot_escape_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().join("data")).unwrap();
        for tag in ["../evil", "..", "a/b", ".hidden", "", " ", "a\\b", "tab\there"] {
            assert!(data.add(tag, b"x", "jpg").is_err(), "{tag:?} accepted");
        }
        assert!(!dir.path().join("evil").exists());
        data.add("Dr. Pepper", b"x", "jpg").unwrap();
    }

    #[test]
    fn import_refuses_files_that_are_not_images() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::open(dir.path().join("data")).unwrap();
        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, "not an image").unwrap();
        assert!(data.import("cat", &text).is_err());
        assert!(data.counts().unwrap().is_empty());
    }
}
