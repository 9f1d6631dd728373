//! Per-camera sequence numbers that are never reused, even across restarts and power cuts.
//! Numbers are reserved from disk in blocks (one small atomic write per block, not per frame, to
//! spare SD cards); a restart skips the rest of the last block, leaving a gap but no reuse.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const BLOCK: u64 = 1000;

pub struct SeqCounter {
    file: PathBuf,
    next: u64,
    reserved_until: u64,
}

impl SeqCounter {
    /// Opens (or creates) the counter stored in `file`.
    pub fn open(file: impl AsRef<Path>) -> Result<SeqCounter> {
        let file = file.as_ref().to_path_buf();
        let start = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| {
                Error::State {
                    path: file.clone(),
                    problem: "the sequence counter is corrupt".into(),
                    fix: "restore it from a backup, or delete it (sequence numbers may then repeat)".into(),
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(Error::io(&file, e)),
        };
        let mut counter = SeqCounter { file, next: start, reserved_until: start };
        counter.reserve()?;
        Ok(counter)
    }

    fn reserve(&mut self) -> Result<()> {
        let until = self.next + BLOCK;
        crate::fsutil::write_counter(&self.file, until.to_string().as_bytes())?;
        self.reserved_until = until;
        Ok(())
    }

    /// The next number.
    pub fn take(&mut self) -> Result<u64> {
        if self.next >= self.reserved_until {
            self.reserve()?;
        }
        let n = self.next;
        self.next += 1;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("door.seq");
        let mut a = SeqCounter::open(&file).unwrap();
        let first: Vec<u64> = (0..1500).map(|_| a.take().unwrap()).collect();
        assert!(first.windows(2).all(|w| w[1] == w[0] + 1));
        drop(a); // as if killed: nothing is flushed on drop
        let mut b = SeqCounter::open(&file).unwrap();
        assert!(b.take().unwrap() > *first.last().unwrap());
    }

    #[test]
    fn a_corrupt_counter_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.seq");
        std::fs::write(&file, "not a number").unwrap();
        assert!(SeqCounter::open(&file).is_err());
    }
}
