//! The on-disk outbox: predictions not yet acknowledged by the broker, one file each, in id order.
//!
//! Each entry is written to a temp file and renamed into place, so a file under its final name
//! is complete as far as the process is concerned, and a kill at any moment leaves either no
//! entry or a whole one (a stray temp file is deleted at the next open). Each file carries a
//! length and checksum, so what a power cut leaves half-written is detected and discarded.
//!
//! Entries are **not** fsynced. On an SD card an fsync per prediction is a journal commit per
//! message: slow, and card wear for nothing in the common case where the broker acknowledges
//! within milliseconds and the file is deleted before ext4's 5 s commit ever writes it. The cost
//! is that a power cut (not a process kill: the page cache survives that) can lose the last few
//! seconds of unacknowledged predictions. The id counter, written once per [`ID_BLOCK`] ids, is
//! fsynced, so ids never go backwards, even across power cuts.
//!
//! When the disk fails (full, read-only, removed), entries are kept in memory instead and sent
//! the same way; they are lost only if the process stops before they are delivered.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::MqttError;

const MAGIC: &[u8; 4] = b"CVOB";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 2 + 4 + 8;
const ID_FILE: &str = "next-id";
/// Ids are reserved this many at a time, so the counter file is written once per block.
pub(crate) const ID_BLOCK: u64 = 1000;

/// What opening found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub entries: usize,
    /// Files that were unreadable, torn or not ours: deleted.
    pub discarded: usize,
}

#[derive(Debug)]
enum Body {
    OnDisk,
    InMemory(Vec<u8>),
}

#[derive(Debug)]
struct Entry {
    topic: String,
    body: Body,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    dir: PathBuf,
    entries: BTreeMap<u64, Entry>,
    next_id: u64,
    /// Ids below this are recorded as used in the counter file.
    reserved: u64,
}

impl Outbox {
    /// Opens (creating) the directory, deletes temp files, loads the entries in id order.
    pub fn open(dir: &Path) -> Result<(Outbox, Recovered), MqttError> {
        let fail = |cause| MqttError::Outbox { path: dir.to_path_buf(), cause };
        fs::create_dir_all(dir).map_err(fail)?;
        let mut entries = BTreeMap::new();
        let mut recovered = Recovered::default();
        let mut highest = 0;
        for item in fs::read_dir(dir).map_err(fail)? {
            let path = item.map_err(fail)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(".tmp") {
                // Half-written by a process that died before the rename.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".msg").and_then(|n| n.parse::<u64>().ok()) else { continue };
            highest = highest.max(id);
            match fs::read(&path).ok().and_then(|bytes| decode(&bytes)) {
                Some((topic, _)) => {
                    entries.insert(id, Entry { topic, body: Body::OnDisk });
                    recovered.entries += 1;
                }
                None => {
                    log::warn!("outbox: discarding torn or unreadable entry {}", path.display());
                    let _ = fs::remove_file(&path);
                    recovered.discarded += 1;
                }
            }
        }
        let counted = match fs::read_to_string(dir.join(ID_FILE)) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(fail(e)),
        };
        let next_id = counted.max(highest + 1).max(1);
        let mut outbox = Outbox { dir: dir.to_path_buf(), entries, next_id, reserved: next_id };
        // Reserving the first block also proves the directory is writable, at start rather
        // than at the first prediction.
        outbox.reserve().map_err(fail)?;
        Ok((outbox, recovered))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries kept only in memory because the disk failed.
    pub fn in_memory(&self) -> usize {
        self.entries.values().filter(|e| matches!(e.body, Body::InMemory(_))).count()
    }

    /// Adds an entry; on a disk error it is kept in memory and the error returned with its id.
    pub fn push(&mut self, topic: &str, payload: Vec<u8>) -> (u64, Option<io::Error>) {
        let id = self.next_id;
        self.next_id += 1;
        let written = if id >= self.reserved { self.reserve() } else { Ok(()) }.and_then(|()| self.write(id, topic, &payload));
        let (body, error) = match written {
            Ok(()) => (Body::OnDisk, None),
            Err(e) => (Body::InMemory(payload), Some(e)),
        };
        self.entries.insert(id, Entry { topic: topic.to_string(), body });
        (id, error)
    }

    /// Removes an entry; false if it was not there.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.entries.remove(&id) {
            Some(Entry { body: Body::OnDisk, .. }) => {
                if let Err(e) = fs::remove_file(self.path(id)) {
                    // It is sent again after a restart: a duplicate, which at-least-once allows.
                    log::warn!("outbox: cannot delete {}: {e}", self.path(id).display());
                }
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Ids in order, starting at `from`.
    pub fn ids_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        self.entries.range(from..).map(|(id, _)| *id)
    }

    /// Topic and payload of an entry; an error if its file has gone bad (the caller drops it).
    pub fn load(&self, id: u64) -> io::Result<(String, Vec<u8>)> {
        let entry = self.entries.get(&id).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such entry"))?;
        match &entry.body {
            Body::InMemory(payload) => Ok((entry.topic.clone(), payload.clone())),
            Body::OnDisk => {
                let bytes = fs::read(self.path(id))?;
                decode(&bytes).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "torn or corrupt outbox file"))
            }
        }
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.msg"))
    }

    fn write(&self, id: u64, topic: &str, payload: &[u8]) -> io::Result<()> {
        let temp = self.dir.join(format!("{id:020}.tmp"));
        let result = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(&encode(topic, payload))?;
            fs::rename(&temp, self.path(id))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Records the next block of ids as used, durably, before any of them is used.
    fn reserve(&mut self) -> io::Result<()> {
        let until = self.next_id.max(self.reserved) + ID_BLOCK;
        // Atomically, or in place when a full disk has no room for a temporary file: the
        // outbox then keeps its entries in memory, but ids still never go backwards.
        crate::fsutil::write_counter(&self.dir.join(ID_FILE), format!("{until}\n").as_bytes()).map_err(|e| match e {
            crate::error::Error::Io { cause, .. } => cause,
            other => io::Error::other(other.to_string()),
        })?;
        self.reserved = until;
        Ok(())
    }
}

fn encode(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + topic.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(topic.as_bytes(), payload).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn decode(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return None;
    }
    let topic_len = u16::from_be_bytes(bytes[5..7].try_into().ok()?) as usize;
    let payload_len = u32::from_be_bytes(bytes[7..11].try_into().ok()?) as usize;
    let sum = u64::from_be_bytes(bytes[11..19].try_into().ok()?);
    let body = &bytes[HEADER..];
    if body.len() != topic_len + payload_len {
        return None;
    }
    let (topic, payload) = body.split_at(topic_len);
    if checksum(topic, payload) != sum {
        return None;
    }
    Some((String::from_utf8(topic.to_vec()).ok()?, payload.to_vec()))
}

/// FNV-1a: catches torn and zero-filled files; nobody forges outbox entries.
fn checksum(topic: &[u8], payload: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.iter().chain(payload) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(outbox: &Outbox) -> Vec<Vec<u8>> {
        outbox.ids_from(0).map(|id| outbox.load(id).unwrap().1).collect()
    }

    #[test]
    fn entries_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, recovered) = Outbox::open(dir.path()).unwrap();
        assert_eq!(recovered, Recovered::default());
        for i in 0..5u8 {
            let (_, error) = outbox.push("cvedge/pi/cam/predictions", vec![i]);
            assert!(error.is_none());
        }
        let first = outbox.ids_from(0).next().unwrap();
        assert!(outbox.remove(first));
        assert!(!outbox.remove(first));
        drop(outbox);

        let (outbox, recovered) = Outbox::open(dir.path()).unwrap();
        assert_eq!(recovered, Recovered { entries: 4, discarded: 0 });
        assert_eq!(payloads(&outbox), vec![vec![1], vec![2], vec![3], vec![4]]);
        assert_eq!(outbox.load(first + 1).unwrap().0, "cvedge/pi/cam/predictions");
    }

    #[test]
    fn ids_keep_growing_across_restarts_even_when_the_outbox_was_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path()).unwrap();
        let (a, _) = outbox.push("t", b"a".to_vec());
        outbox.remove(a);
        drop(outbox);
        let (mut outbox, _) = Outbox::open(dir.path()).unwrap();
        let (b, _) = outbox.push("t", b"b".to_vec());
        assert!(b > a, "{b} after {a}");
    }

    #[test]
    fn ids_cross_reservation_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path()).unwrap();
        let mut last = 0;
        for _ in 0..ID_BLOCK + 5 {
            let (id, error) = outbox.push("t", vec![]);
            assert!(error.is_none() && id > last);
            outbox.remove(id);
            last = id;
        }
        drop(outbox);
        let (mut outbox, _) = Outbox::open(dir.path()).unwrap();
        assert!(outbox.push("t", vec![]).0 > last);
    }

    #[test]
    fn half_written_and_torn_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path()).unwrap();
        let (id, _) = outbox.push("t", b"whole".to_vec());
        drop(outbox);
        // A process killed between create and rename leaves a temp file.
        fs::write(dir.path().join(format!("{:020}.tmp", id + 1)), &encode("t", b"half")[..10]).unwrap();
        // A power cut can leave a renamed file whose data never reached the disk.
        fs::write(dir.path().join(format!("{:020}.msg", id + 2)), vec![0u8; 40]).unwrap();
        let mut torn = encode("t", b"torn payload");
        torn.truncate(torn.len() - 3);
        fs::write(dir.path().join(format!("{:020}.msg", id + 3)), torn).unwrap();
        let mut flipped = encode("t", b"flipped");
        *flipped.last_mut().unwrap() ^= 1;
        fs::write(dir.path().join(format!("{:020}.msg", id + 4)), flipped).unwrap();

        let (mut outbox, recovered) = Outbox::open(dir.path()).unwrap();
        assert_eq!(recovered, Recovered { entries: 1, discarded: 3 });
        assert_eq!(payloads(&outbox), vec![b"whole".to_vec()]);
        assert!(!dir.path().join(format!("{:020}.tmp", id + 1)).exists());
        // New ids never reuse a discarded file's id.
        assert!(outbox.push("t", vec![]).0 > id + 4);
    }

    #[test]
    fn a_failing_disk_keeps_entries_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path()).unwrap();
        // Removing the directory makes every write fail, as a pulled USB stick would.
        fs::remove_dir_all(dir.path()).unwrap();
        let (id, error) = outbox.push("t", b"kept".to_vec());
        assert!(error.is_some());
        assert_eq!(outbox.in_memory(), 1);
        assert_eq!(outbox.load(id).unwrap(), ("t".to_string(), b"kept".to_vec()));
        assert!(outbox.remove(id));
        assert!(outbox.is_empty());
    }

    #[test]
    fn an_unwritable_directory_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, "").unwrap();
        let message = Outbox::open(&file.join("outbox")).unwrap_err().to_string();
        assert!(message.contains("outbox directory") && message.contains("writable"), "{message}");
    }
}
