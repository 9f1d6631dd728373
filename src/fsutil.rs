//! Small filesystem helpers shared by everything that must survive a power cut.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content: write a
/// temporary file beside it, fsync it, rename it over, fsync the folder. A failed write (a full
/// disk) removes its temporary file, so it holds no space.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
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
        Error::io(path, e)
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

#[cfg(test)]
mod tests {
    use super::*;

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
