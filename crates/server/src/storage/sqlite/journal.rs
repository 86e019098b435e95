//! The files the telemetry inbox keeps its records in ([`super::inbox`]; issue 21, disk written
//! per datagram): a write-ahead log of its own beside `tek.db`.
//!
//! Why files and not tables: a commit into a SQLite table wrote the table's tail page, often a
//! new leaf, the interior page, the freelist trunk and page 1 to the log, each frame 4 KiB + 24 B
//! (so straddling two pages of the OS), and the checkpoint wrote them again: ~120 B per record
//! at 100 devices. An append here writes the encoded batch where the previous one ended, and
//! `fdatasync` writes the one or two pages it touched, nothing else:
//! - each file is **preallocated with zeros** when it is created, so an append never changes
//!   its size nor allocates blocks, and `fdatasync` has no metadata to write;
//! - it is written with **direct I/O** (`O_DIRECT`), in whole aligned blocks of [`BLOCK`]
//!   bytes: the block the previous append left partly filled, kept in memory, is written again
//!   with the new frame after it. Through the page cache, an append would dirty a whole *folio*,
//!   and the kernel caches a file written or read in large pieces in large folios (64 KiB seen
//!   here): each `fdatasync` then wrote 64 KiB for a frame of a few hundred bytes. Where direct
//!   I/O is refused (tmpfs), the same aligned writes go through the page cache;
//! - it is then reused forever: once everything it held is stored in SQLite, it is *reset*, by a
//!   new **generation** in its header, and frames of an older generation no longer count.
//!
//! Layout (all integers little-endian):
//! - page 0, the header, in two slots [`SLOT`] bytes apart: a generation `g` is written in slot
//!   `g % 2`, so a reset torn by a crash leaves the other slot (the previous generation) whole.
//!   A slot: [`MAGIC`], the format ([`FORMAT`]), the generation (u64), then the CRC-32C of those.
//!   The valid slot of the highest generation counts.
//! - from [`FRAMES_AT`] on, frames one after another: the payload's length (u32), the generation
//!   (u64), the CRC-32C of the length, the generation and the payload (u32), then the payload.
//!
//! Reading stops at the first frame that is not whole and of the current generation: a torn
//! last frame (a crash during its append) was never acknowledged, since Acks follow the
//! `fdatasync`, and the frames after it are zeros or an older generation's.
//!
//! Locking: a process takes a pair of files (`tek.db-inbox-N-a` and `-b`) with an exclusive
//! lock (`flock`, per open file, so two handles in one process exclude each other too) on the
//! first; a pair nobody holds is a crashed or stopped process's, which the
//! others may fold ([`super::inbox`]). Locks go with the process, so a kill -9 releases them.

use crate::storage::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The first bytes of a header slot.
const MAGIC: [u8; 8] = *b"tekinbox";

/// The layout described above; a file of another format is not read.
const FORMAT: u32 = 1;

/// Bytes between the two header slots: each in a sector of its own.
const SLOT: u64 = 512;

/// Bytes of a header slot: magic, format, generation, CRC.
const SLOT_LEN: usize = 8 + 4 + 8 + 4;

/// The unit of every read and write, and their alignment in the file and in memory: what
/// direct I/O needs on any device (logical blocks are 512 or 4,096 bytes), and a page of the OS.
const BLOCK: usize = 4096;

/// Where frames start: the header has a block of its own, so no append rewrites it.
pub(super) const FRAMES_AT: u64 = BLOCK as u64;

/// Bytes before a frame's payload: length, generation, CRC.
pub(super) const FRAME_HEAD: u64 = 4 + 8 + 4;

/// Size of a new journal file: twice what [`super::inbox::FOLD_ROWS`] records take at one record
/// per commit (~26 bytes with the frame), so a file seldom fills before its fold is due.
pub(super) const CAPACITY: u64 = 2 << 20;

/// CRC-32C (Castagnoli), the checksum of iSCSI and ext4.
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One journal file, open for reading and appending.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// The file's size: frames never go past it.
    capacity: u64,
    generation: u64,
    /// Where the next frame goes: the end of the current generation's frames.
    end: u64,
    /// The bytes of the block `end` falls in, up to `end`: written again before the next frame.
    tail: Vec<u8>,
}

/// A zeroed buffer of a multiple of [`BLOCK`] bytes at an address aligned to [`BLOCK`], as
/// direct I/O needs (in safe code: a larger vector, used from its first aligned byte).
struct Aligned {
    bytes: Vec<u8>,
    at: usize,
    len: usize,
}

impl Aligned {
    fn zeroed(len: usize) -> Aligned {
        let bytes = vec![0u8; len + BLOCK];
        // For a byte pointer the offset is always computable (below BLOCK).
        let at = bytes.as_ptr().align_offset(BLOCK).min(BLOCK);
        Aligned { bytes, at, len }
    }
}

impl std::ops::Deref for Aligned {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.at..self.at + self.len]
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.at..self.at + self.len]
    }
}

/// The header block holding `generation` in its slot and, in the other, the one before it (the
/// fallback should this write be torn).
fn header_block(generation: u64) -> Aligned {
    let mut block = Aligned::zeroed(BLOCK);
    for g in [generation.saturating_sub(1), generation] {
        if g > 0 {
            let at = ((g % 2) * SLOT) as usize;
            block[at..at + SLOT_LEN].copy_from_slice(&slot_bytes(g));
        }
    }
    block
}

/// Opens `path` for reading and writing, with direct I/O where the file system allows it.
fn open_file(path: &Path) -> std::io::Result<File> {
    let direct = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    match direct {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            OpenOptions::new().read(true).write(true).open(path)
        }
        other => other,
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Backend(format!("{what} {}: {e}", path.display()))
}

/// Header slot bytes for `generation`.
fn slot_bytes(generation: u64) -> [u8; SLOT_LEN] {
    let mut b = [0u8; SLOT_LEN];
    b[..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    b[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = CRC.checksum(&b[..20]);
    b[20..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The generation a slot holds, if it is whole. A whole slot of another format is an error:
/// this build cannot know what its frames mean.
fn read_slot(b: &[u8]) -> Result<Option<u64>> {
    if b[..8] != MAGIC || CRC.checksum(&b[..20]).to_le_bytes() != b[20..SLOT_LEN] {
        return Ok(None);
    }
    let format = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if format != FORMAT {
        return Err(Error::Corrupt(format!(
            "inbox journal of format {format}, this build reads {FORMAT}"
        )));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&b[12..20]);
    Ok(Some(u64::from_le_bytes(g)))
}

/// A name no other thread or process uses for a file being created.
fn temporary_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".new-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    PathBuf::from(name)
}

/// Creates `path` as an empty journal of `capacity` bytes (rounded up to whole blocks, at
/// least one of frames), whole or not at all: written and
/// synced under a temporary name, then linked in place (never replacing a journal another
/// process created meanwhile, which may already hold records).
fn create(path: &Path, capacity: u64) -> Result<()> {
    let capacity = capacity
        .max(FRAMES_AT + BLOCK as u64)
        .next_multiple_of(BLOCK as u64);
    let tmp = temporary_name(path);
    let made = (|| -> std::io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // Zeros written, not a hole nor `fallocate`'s unwritten extents: either would make a
        // later append allocate or convert blocks, metadata that `fdatasync` must then write.
        let zeros = vec![0u8; 64 << 10];
        let mut at = 0;
        while at < capacity {
            let n = (capacity - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.write_all_at(&header_block(1), 0)?;
        file.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    made.map_err(|e| io_error("cannot create inbox journal", path, e))?;
    // The new name is durable only once the directory is synced.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("cannot sync", dir, e))?;
    }
    Ok(())
}

/// How the lock of a journal went.
pub(super) enum Lock {
    Taken,
    /// Another open file holds it: a live process (or another handle of this one).
    Held,
}

impl Journal {
    /// Opens the journal at `path`, creating it with `capacity` bytes if it does not exist (an
    /// existing file keeps its size). Its frames are not read yet: see [`Journal::frames`].
    pub(super) fn open(path: &Path, capacity: u64) -> Result<Journal> {
        if !path.exists() {
            create(path, capacity)?;
        }
        Journal::open_existing(path)
    }

    /// Opens the journal at `path`, which must exist.
    pub(super) fn open_existing(path: &Path) -> Result<Journal> {
        let file = open_file(path).map_err(|e| io_error("cannot open inbox journal", path, e))?;
        let capacity = file
            .metadata()
            .map_err(|e| io_error("cannot read the size of", path, e))?
            .len();
        if capacity <= FRAMES_AT || capacity % BLOCK as u64 != 0 {
            return Err(Error::Corrupt(format!(
                "inbox journal {} of {capacity} bytes, not whole blocks after its header",
                path.display()
            )));
        }
        let mut header = Aligned::zeroed(BLOCK);
        file.read_exact_at(&mut header, 0)
            .map_err(|e| io_error("cannot read", path, e))?;
        let generation = [0, 1]
            .into_iter()
            .map(|s| read_slot(&header[s * SLOT as usize..]))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .max()
            .ok_or_else(|| {
                Error::Corrupt(format!("inbox journal {}: no whole header", path.display()))
            })?;
        let mut journal = Journal {
            file,
            path: path.to_owned(),
            capacity,
            generation,
            end: FRAMES_AT,
            tail: Vec::new(),
        };
        // Where the next frame goes, known before any append.
        journal.frames()?;
        Ok(journal)
    }

    /// Takes the exclusive lock of this file, without waiting.
    pub(super) fn try_lock(&self) -> Result<Lock> {
        // `flock` itself rather than std's `File::try_lock` (the same call, but from Rust 1.89,
        // above the workspace's rust-version).
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a descriptor this `File` owns and keeps open.
        let rc = unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Lock::Taken);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(Lock::Held)
        } else {
            Err(io_error("cannot lock", &self.path, e))
        }
    }

    /// The payloads of the current generation's frames, in order; the next append goes after
    /// the last. Stops at the first frame that is not whole (see the module docs).
    pub(super) fn frames(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut body = Aligned::zeroed((self.capacity - FRAMES_AT) as usize);
        self.file
            .read_exact_at(&mut body, FRAMES_AT)
            .map_err(|e| io_error("cannot read", &self.path, e))?;
        let mut out = Vec::new();
        let mut at = 0usize;
        let head = FRAME_HEAD as usize;
        while at + head <= body.len() {
            let h = &body[at..at + head];
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let mut g = [0u8; 8];
            g.copy_from_slice(&h[4..12]);
            let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
            if len == 0 || len > body.len() - at - head || u64::from_le_bytes(g) != self.generation
            {
                break;
            }
            let payload = &body[at + head..at + head + len];
            if frame_crc(&h[..12], payload) != crc {
                break;
            }
            out.push(payload.to_vec());
            at += head + len;
        }
        self.end = FRAMES_AT + at as u64;
        self.tail = body[at / BLOCK * BLOCK..at].to_vec();
        Ok(out)
    }

    /// Whether a frame of `len` payload bytes fits after the last one.
    pub(super) fn fits(&self, len: usize) -> bool {
        self.end + FRAME_HEAD + len as u64 <= self.capacity
    }

    /// Whether a frame of `len` payload bytes fits in the file once it is reset.
    pub(super) fn fits_when_empty(&self, len: usize) -> bool {
        FRAMES_AT + FRAME_HEAD + len as u64 <= self.capacity
    }

    /// Whether frames follow the header (as far as this process wrote or read them).
    pub(super) fn holds_frames(&self) -> bool {
        self.end > FRAMES_AT
    }

    /// Appends a frame holding `payload` and syncs it: once this returns, the frame survives a
    /// crash or a power loss. The caller checks [`Journal::fits`] first.
    pub(super) fn append(&mut self, payload: &[u8]) -> Result<()> {
        if !self.fits(payload.len()) {
            return Err(Error::Backend(format!(
                "inbox journal {} full",
                self.path.display()
            )));
        }
        let len = u32::try_from(payload.len())
            .map_err(|_| Error::Backend("inbox batch over 4 GiB".into()))?;
        let mut head = [0u8; FRAME_HEAD as usize];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4..12].copy_from_slice(&self.generation.to_le_bytes());
        let crc = frame_crc(&head[..12], payload);
        head[12..].copy_from_slice(&crc.to_le_bytes());
        // The blocks from the one `end` falls in to the one the frame ends in: what was there
        // before `end`, the frame, zeros after it (over an older generation's bytes).
        let start = self.end - self.tail.len() as u64;
        let used = self.tail.len() + head.len() + payload.len();
        let mut blocks = Aligned::zeroed(used.next_multiple_of(BLOCK));
        let mut at = 0;
        for part in [&self.tail[..], &head[..], payload] {
            blocks[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        self.file
            .write_all_at(&blocks, start)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error("cannot append to", &self.path, e))?;
        self.end += (head.len() + payload.len()) as u64;
        self.tail = blocks[used / BLOCK * BLOCK..used].to_vec();
        Ok(())
    }

    /// Empties the journal: a new generation in the header, synced. Only once every frame it
    /// held is stored elsewhere (committed in SQLite).
    pub(super) fn reset(&mut self) -> Result<()> {
        let next = self.generation + 1;
        self.file
            .write_all_at(&header_block(next), 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error("cannot reset", &self.path, e))?;
        self.generation = next;
        self.end = FRAMES_AT;
        self.tail.clear();
        Ok(())
    }

    /// Where the next frame goes (tests).
    #[cfg(test)]
    pub(super) fn end(&self) -> u64 {
        self.end
    }
}

/// The CRC of a frame: its length and generation (`head`), then its payload.
fn frame_crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut d = CRC.digest();
    d.update(head);
    d.update(payload);
    d.finalize()
}

/// The two files of journal pair `n` beside the database file `db`.
pub(super) fn pair_paths(db: &Path, n: u32) -> [PathBuf; 2] {
    ["a", "b"].map(|side| {
        let mut name = db.as_os_str().to_owned();
        name.push(format!("-inbox-{n}-{side}"));
        PathBuf::from(name)
    })
}

/// The numbers of the journal pairs beside `db` (their first file exists), ascending.
pub(super) fn pairs_beside(db: &Path) -> Result<Vec<u32>> {
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(base) = db.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}-inbox-");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))? {
        let entry = entry.map_err(|e| io_error("cannot list", dir, e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix("-a"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(capacity: u64) -> (tempfile::TempDir, PathBuf, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let j = Journal::open(&path, capacity).unwrap();
        (dir, path, j)
    }

    #[test]
    fn frames_come_back_in_order_after_a_reopen() {
        let (_dir, path, mut j) = fresh(256 << 10);
        assert!(j.frames().unwrap().is_empty());
        j.append(b"one").unwrap();
        j.append(&[7u8; 1000]).unwrap();
        drop(j);
        let mut j = Journal::open(&path, 1).unwrap();
        assert_eq!(j.capacity, 256 << 10, "an existing file keeps its size");
        assert_eq!(j.frames().unwrap(), vec![b"one".to_vec(), vec![7u8; 1000]]);
        // The next append goes after them.
        j.append(b"three").unwrap();
        assert_eq!(
            Journal::open_existing(&path)
                .unwrap()
                .frames()
                .unwrap()
                .len(),
            3
        );
        // Frames across block boundaries, the block in progress kept across a reopen.
        let sizes = (0..200).map(|i| 1 + (i * 37) % 700);
        let mut want: Vec<Vec<u8>> = j.frames().unwrap();
        for (i, n) in sizes.enumerate() {
            if i == 120 {
                drop(j);
                j = Journal::open_existing(&path).unwrap();
            }
            let frame = vec![i as u8; n];
            j.append(&frame).unwrap();
            want.push(frame);
        }
        assert_eq!(
            Journal::open_existing(&path).unwrap().frames().unwrap(),
            want
        );
    }

    #[test]
    fn a_torn_or_corrupt_last_frame_ends_the_journal() {
        let (_dir, path, mut j) = fresh(64 << 10);
        j.append(b"kept").unwrap();
        let torn_at = j.end();
        j.append(&[9u8; 300]).unwrap();
        drop(j);
        // Cut the second frame's payload short, as a crash during its write would.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0u8; 100], torn_at + FRAME_HEAD + 200)
            .unwrap();
        let mut j = Journal::open_existing(&path).unwrap();
        assert_eq!(j.frames().unwrap(), vec![b"kept".to_vec()]);
        assert_eq!(
            j.end(),
            torn_at,
            "the next append overwrites the torn frame"
        );
        // A flipped bit in the first frame's payload: nothing is whole.
        f.write_all_at(b"K", FRAMES_AT + FRAME_HEAD).unwrap();
        assert!(Journal::open_existing(&path)
            .unwrap()
            .frames()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_reset_hides_the_older_generation() {
        let (_dir, path, mut j) = fresh(64 << 10);
        for i in 0..5u8 {
            j.append(&[i; 40]).unwrap();
        }
        j.reset().unwrap();
        assert!(j.frames().unwrap().is_empty());
        j.append(b"new").unwrap();
        drop(j);
        // The old frames past the new one are still in the file, of generation 1.
        let mut j = Journal::open_existing(&path).unwrap();
        assert_eq!(j.generation, 2);
        assert_eq!(j.frames().unwrap(), vec![b"new".to_vec()]);
        // Resets alternate slots; each reopen finds the newest.
        j.reset().unwrap();
        j.reset().unwrap();
        assert_eq!(Journal::open_existing(&path).unwrap().generation, 4);
    }

    #[test]
    fn a_torn_header_falls_back_to_the_previous_generation() {
        let (_dir, path, mut j) = fresh(64 << 10);
        j.append(b"old").unwrap();
        j.reset().unwrap();
        drop(j);
        // Generation 2 is in slot 0: tear it.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 4], 14).unwrap();
        let mut j = Journal::open_existing(&path).unwrap();
        assert_eq!(j.generation, 1);
        // Its frames are read again: they were stored before the reset, and storing a record
        // twice stores it once.
        assert_eq!(j.frames().unwrap(), vec![b"old".to_vec()]);
        // Both slots torn: an error, not an empty journal.
        f.write_all_at(&[0xff; 4], SLOT + 14).unwrap();
        assert!(matches!(
            Journal::open_existing(&path),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn a_full_journal_refuses_an_append_until_reset() {
        // Rounded up to a block of frames.
        let (_dir, _path, mut j) = fresh(FRAMES_AT + 100);
        let room = BLOCK - FRAME_HEAD as usize;
        assert!(j.fits(room));
        assert!(!j.fits(room + 1));
        j.append(&[1u8; 3000]).unwrap();
        assert!(!j.fits(3000));
        assert!(j.append(&[1u8; 3000]).is_err());
        assert!(j.fits_when_empty(3000));
        j.reset().unwrap();
        j.append(&[2u8; 3000]).unwrap();
        assert_eq!(j.frames().unwrap(), vec![vec![2u8; 3000]]);
    }

    #[test]
    fn a_pair_is_locked_by_one_open_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tek.db");
        let [a, _] = pair_paths(&db, 3);
        let first = Journal::open(&a, 8192).unwrap();
        assert!(matches!(first.try_lock().unwrap(), Lock::Taken));
        let second = Journal::open(&a, 8192).unwrap();
        assert!(matches!(second.try_lock().unwrap(), Lock::Held));
        drop(first);
        assert!(matches!(second.try_lock().unwrap(), Lock::Taken));
        assert_eq!(pairs_beside(&db).unwrap(), vec![3]);
    }
}
