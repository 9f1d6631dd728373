//! Small filesystem helpers shared by everything that must survive a power cut.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content: write a
/// temporary file beside it, fsync it, rename it over, fsync the folder. A failed write (a full
/// disk) removes its temporary file, so it holds no space.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io_write(dir, e))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io_write(path, e)
    })
}

/// For a small counter file rewritten now and then (sequence numbers, outbox ids): writes it
/// atomically, and when that fails (a full disk has no block for the temporary file) overwrites
/// the existing file in place instead, which needs no new block. Counters only grow, so the new
/// text is never shorter than the old; what a power cut could tear is a few bytes of one sector.
pub fn write_counter(path: &Path, bytes: &[u8]) -> Result<()> {
    let atomic = match write_atomic(path, bytes) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let in_place = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.write_all(bytes)?;
        file.set_len(bytes.len() as u64)?;
        file.sync_all()
    };
    match in_place() {
        Ok(()) => {
            log::debug!("{}: rewritten in place ({atomic})", path.display());
            Ok(())
        }
        Err(_) => Err(atomic),
    }
}

/// The files of a model folder cvedge writes (`cvedge export`, `cvedge quantize`).
pub const MODEL_FOLDER_FILES: [&str; 5] = [
    crate::export::MODEL_FILE,
    crate::export::LABEL_FILE,
    crate::export::METADATA_FILE,
    crate::export::MANIFEST_FILE,
    crate::quantize::RECORD_FILE,
];

/// A model folder's own file, or `write_atomic`'s temporary file of one (a kill's leftover).
/// Nothing else, hidden files included (`.git`, `.env`): replacing the folder would delete them.
fn is_model_folder_file(name: &str) -> bool {
    let temporary = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp"));
    MODEL_FOLDER_FILES.contains(&temporary.unwrap_or(name))
}

/// `.NAME.WHAT` beside `path`.
pub fn hidden_sibling(path: &Path, what: &str) -> std::path::PathBuf {
    path.with_file_name(format!(".{}.{what}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()))
}

/// Whether `out` exists, refusing one that holds anything but a model folder's files (replacing
/// it would delete someone's files).
pub fn check_replaceable(out: &Path) -> Result<bool> {
    // `.`, `..`, `/`: no name to write a sibling under and rename, and never a folder to replace.
    if out.file_name().is_none() {
        return Err(Error::Option(format!("--out {} names no folder of its own; give a new folder, e.g. --out ./export", out.display())));
    }
    let entries = match std::fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(out, e)),
        Ok(entries) => entries,
    };
    let mut foreign: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !is_model_folder_file(n)).collect();
    if foreign.is_empty() {
        return Ok(true);
    }
    foreign.sort();
    Err(Error::package(
        out,
        format!("already holds other files ({}), which writing the model folder there would delete", foreign.join(", ")),
        "give --out a new or empty folder (or one an earlier `cvedge export` or `cvedge quantize` wrote)",
    ))
}

/// Writes a model folder whole: `write` fills `.NAME.partial` beside `out`, which is then renamed
/// to `out`; an earlier folder there is moved aside first and removed after. A kill at any moment
/// leaves `out` absent, the earlier folder or the new one, never a part or a mix.
pub fn write_folder<T>(out: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    check_replaceable(out)?;
    let staging = hidden_sibling(out, "partial");
    let _ = std::fs::remove_dir_all(&staging);
    let written = std::fs::create_dir_all(&staging).map_err(|e| Error::io_write(&staging, e)).and_then(|()| write(&staging)).and_then(|value| {
        if check_replaceable(out)? {
            let aside = hidden_sibling(out, "old");
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(out, &aside).map_err(|e| Error::io_write(out, e))?;
            std::fs::rename(&staging, out).map_err(|e| Error::io_write(out, e))?;
            let _ = std::fs::remove_dir_all(aside);
        } else {
            std::fs::rename(&staging, out).map_err(|e| Error::io_write(out, e))?;
        }
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(value)
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_folder_must_have_a_name_of_its_own() {
        for out in [".", "..", "/", "a/.."] {
            let err = check_replaceable(Path::new(out)).unwrap_err().to_string();
            assert!(err.contains("names no folder of its own") && err.contains("--out ./export"), "{out}: {err}");
        }
        assert!(!check_replaceable(Path::new("/nonexistent/fresh")).unwrap());
    }

    #[test]
    fn a_folder_with_hidden_files_of_its_own_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), "x").unwrap();
        std::fs::write(dir.path().join(".labels.txt.tmp"), "a kill's leftover").unwrap();
        assert!(check_replaceable(dir.path()).unwrap(), "a model folder with a leftover temporary file");
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let err = check_replaceable(dir.path()).unwrap_err().to_string();
        assert!(err.contains("(.git)"), "{err}");
    }

    #[test]
    fn a_failed_atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a folder: the rename fails after the temporary file was written.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        assert!(write_atomic(&target, b"data").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["taken"]);
    }

    /// On a full disk (a tmpfs, so only as root) a counter is still rewritten, in place.
    #[test]
    fn a_counter_is_rewritten_in_place_on_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        if !std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(dir.path()).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success()) {
            eprintln!("skipped: needs root for a tmpfs");
            return;
        }
        let counter = dir.path().join("door.seq");
        let filled = (|| -> std::io::Result<()> {
            write_counter(&counter, b"1000").map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut fill = std::fs::File::create(dir.path().join("fill"))?;
            while fill.write_all(&[0u8; 4096]).is_ok() {}
            while fill.write_all(&[0u8; 1]).is_ok() {}
            Ok(())
        })();
        let atomic = write_atomic(&dir.path().join("other"), b"2000");
        let rewritten = write_counter(&counter, b"12000");
        let read = std::fs::read_to_string(&counter);
        let _ = std::process::Command::new("umount").arg("-l").arg(dir.path()).status();
        filled.unwrap();
        assert!(atomic.is_err(), "the disk was not full");
        rewritten.unwrap();
        assert_eq!(read.unwrap(), "12000");
    }
}
