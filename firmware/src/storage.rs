//! Persistent storage: the controller's flash record (two slots, behind the small [`Flash`]
//! trait) and the telemetry log's region, both as NOR flash with the LM3S6965's rules
//! ([`HostNor`], an `embedded_storage::nor_flash::NorFlash`).
//!
//! The controller writes its record alternately into two slots (tek-controller's `persist`
//! module: sequence number and CRC, so a power cut during a write leaves the other slot valid).
//! Here each slot is [`SLOT_LEN`] bytes, which on the LM3S6965 is two 1 kB flash pages, and a write
//! is "erase the slot, program the record".
//!
//! The chip's flash map (tek-controller's `flash_log::layout`): the image in the first 144 kB
//! (its budget), the telemetry log in the 100 pages after it (0x24000..0x3D000), the channel
//! part's two record slots of four pages each ([`ChannelSlots`], 0x3D000..0x3F000), the two
//! slots of the controller's record in the top four pages (0x3F000..0x40000).
//!
//! QEMU does not model the LM3S6965's flash controller (its flash is read-only ROM to the guest),
//! so the test bench keeps flash in host files reached through semihosting: the slots in the
//! `flash=` file, laid out like the top four pages, the log in a second file (the same path
//! with `.log` appended), laid out like the log region, and the channel slots in a third
//! (`.channels` appended). [`HostNor`] enforces the NOR rules on
//! them: erase sets a 1 kB page to 0xFF, programming is by aligned 4-byte words and only onto
//! erased words (a host file cannot remember which words were programmed, so a word that no
//! longer reads 0xFFFF_FFFF counts as programmed: programming it again without an erase is
//! [`FlashError::NotErased`]). A driver for the real flash controller (FMA/FMD/FMC registers, page
//! erase + word program) implements the same `NorFlash` trait over the same addresses — not
//! written, because QEMU could not test it.

use crate::semihosting::{HostFile, Mode};
use embedded_storage::nor_flash::{
    check_erase, check_read, check_write, ErrorType, NorFlash, NorFlashError, NorFlashErrorKind,
    ReadNorFlash,
};

/// Bytes per slot: two flash pages, more than tek-controller's longest record.
pub const SLOT_LEN: usize = 2048;
const _: () = assert!(SLOT_LEN >= tek_controller::persist::MAX_LEN);
/// The chip's flash erase page.
pub const PAGE_LEN: usize = 1024;
const WORD: usize = 4;
const _: () = assert!(SLOT_LEN % PAGE_LEN == 0);
const _: () = assert!(tek_controller::flash_log::layout::PAGE_LEN as usize == PAGE_LEN);

/// A flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// The slot number is not 0 or 1, the record is longer than a slot, or an address is past
    /// the region.
    Bounds,
    /// An address or length is not a multiple of the word (programming) or page (erase).
    NotAligned,
    /// Programming a word that is not erased: a word is programmed once between erases.
    NotErased,
    /// The medium reported an error.
    Io,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::Bounds => NorFlashErrorKind::OutOfBounds,
            FlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FlashError::NotErased | FlashError::Io => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for FlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        match kind {
            NorFlashErrorKind::NotAligned => FlashError::NotAligned,
            _ => FlashError::Bounds,
        }
    }
}

/// Two slots of flash.
pub trait Flash {
    /// Reads slot `slot` (0 or 1) into `buf` (at most [`SLOT_LEN`] bytes; erased bytes are 0xFF).
    fn read(&mut self, slot: u8, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Erases slot `slot` and programs `record` at its start.
    fn write(&mut self, slot: u8, record: &[u8]) -> Result<(), FlashError>;
}

/// A region of NOR flash in a host file (a short file reads as erased).
pub struct HostNor {
    /// NUL-terminated host path.
    path: heapless::Vec<u8, 100>,
    len: usize,
}

impl HostNor {
    /// The region of `len` bytes (whole pages) kept in the host file `path` followed by
    /// `suffix`; created, erased, when it does not exist.
    pub fn open(path: &str, suffix: &str, len: usize) -> Result<HostNor, FlashError> {
        if len % PAGE_LEN != 0 {
            return Err(FlashError::NotAligned);
        }
        let mut p = heapless::Vec::new();
        p.extend_from_slice(path.as_bytes())
            .and_then(|()| p.extend_from_slice(suffix.as_bytes()))
            .map_err(|_| FlashError::Bounds)?;
        p.push(0).map_err(|_| FlashError::Bounds)?;
        let mut region = HostNor { path: p, len };
        if HostFile::open(&region.path, Mode::Read).is_err() {
            // A new part: all erased.
            HostFile::open(&region.path, Mode::Create).map_err(|_| FlashError::Io)?;
            region.erase(0, len as u32)?;
        }
        Ok(region)
    }
}

impl ErrorType for HostNor {
    type Error = FlashError;
}

impl ReadNorFlash for HostNor {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        check_read(self, offset, bytes.len())?;
        let mut f = HostFile::open(&self.path, Mode::Read).map_err(|_| FlashError::Io)?;
        f.seek(offset as usize).map_err(|_| FlashError::Io)?;
        bytes.fill(0xFF);
        // A short file reads as erased flash.
        f.read(bytes).map_err(|_| FlashError::Io)?;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for HostNor {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE_LEN;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        check_erase(self, from, to)?;
        let mut f = HostFile::open(&self.path, Mode::ReadWrite).map_err(|_| FlashError::Io)?;
        f.seek(from as usize).map_err(|_| FlashError::Io)?;
        let erased = [0xFFu8; 256];
        for _ in 0..(to - from) as usize / erased.len() {
            f.write(&erased).map_err(|_| FlashError::Io)?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        check_write(self, offset, bytes.len())?;
        // Every word must be erased before anything is programmed.
        let mut now = [0u8; 64];
        for (i, chunk) in bytes.chunks(now.len()).enumerate() {
            let at = offset + (i * now.len()) as u32;
            self.read(at, &mut now[..chunk.len()])?;
            if now[..chunk.len()].iter().any(|&b| b != 0xFF) {
                return Err(FlashError::NotErased);
            }
        }
        // Programming an erased word leaves exactly the data (0xFF & b == b).
        let mut f = HostFile::open(&self.path, Mode::ReadWrite).map_err(|_| FlashError::Io)?;
        f.seek(offset as usize).map_err(|_| FlashError::Io)?;
        f.write(bytes).map_err(|_| FlashError::Io)
    }
}

/// The test bench's flash for the two record slots: a host file of two slots.
pub struct HostFileFlash {
    nor: HostNor,
}

impl HostFileFlash {
    /// Flash kept in the host file `path` (created, erased, when it does not exist).
    pub fn new(path: &str) -> Result<HostFileFlash, FlashError> {
        Ok(HostFileFlash {
            nor: HostNor::open(path, "", 2 * SLOT_LEN)?,
        })
    }
}

impl Flash for HostFileFlash {
    fn read(&mut self, slot: u8, buf: &mut [u8]) -> Result<(), FlashError> {
        if slot > 1 || buf.len() > SLOT_LEN {
            return Err(FlashError::Bounds);
        }
        self.nor.read(u32::from(slot) * SLOT_LEN as u32, buf)
    }

    fn write(&mut self, slot: u8, record: &[u8]) -> Result<(), FlashError> {
        if slot > 1 || record.len() > SLOT_LEN {
            return Err(FlashError::Bounds);
        }
        let base = u32::from(slot) * SLOT_LEN as u32;
        self.nor.erase(base, base + SLOT_LEN as u32)?;
        // Whole words, the last one padded with erased bytes.
        let whole = record.len() / WORD * WORD;
        self.nor.write(base, &record[..whole])?;
        if whole < record.len() {
            let mut last = [0xFFu8; WORD];
            last[..record.len() - whole].copy_from_slice(&record[whole..]);
            self.nor.write(base + whole as u32, &last)?;
        }
        Ok(())
    }
}

/// Bytes per channel slot (tek-controller's `flash_log::layout::CHANNEL_SLOT_LEN`).
pub const CHANNEL_SLOT_LEN: usize = tek_controller::flash_log::layout::CHANNEL_SLOT_LEN as usize;
const _: () = assert!(CHANNEL_SLOT_LEN % PAGE_LEN == 0);

/// The channel part's two record slots (`Action::PersistChannels`), in the host file
/// `<flash path>.channels`, laid out like their region of the chip's flash.
pub struct ChannelSlots {
    nor: HostNor,
}

impl ChannelSlots {
    /// The slots kept in `<flash_path>.channels` (created, erased, when it does not exist).
    pub fn new(flash_path: &str) -> Result<ChannelSlots, FlashError> {
        Ok(ChannelSlots {
            nor: HostNor::open(
                flash_path,
                ".channels",
                tek_controller::flash_log::layout::CHANNEL_SLOTS_LEN as usize,
            )?,
        })
    }

    /// Reads slot `slot` (0 or 1) into `buf` (at most [`CHANNEL_SLOT_LEN`] bytes).
    pub fn read(&mut self, slot: u8, buf: &mut [u8]) -> Result<(), FlashError> {
        if slot > 1 || buf.len() > CHANNEL_SLOT_LEN {
            return Err(FlashError::Bounds);
        }
        self.nor
            .read(u32::from(slot) * CHANNEL_SLOT_LEN as u32, buf)
    }

    /// Erases slot `slot` and programs the concatenation of `pieces` at its start, in whole
    /// words (the last one padded with erased bytes). Returns the bytes written.
    pub fn write(&mut self, slot: u8, pieces: &[&[u8]]) -> Result<usize, FlashError> {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        if slot > 1 || len > CHANNEL_SLOT_LEN {
            return Err(FlashError::Bounds);
        }
        let base = u32::from(slot) * CHANNEL_SLOT_LEN as u32;
        self.nor.erase(base, base + CHANNEL_SLOT_LEN as u32)?;
        // The pieces are not word-aligned one by one: program through a buffer of whole words.
        let mut chunk = [0xFFu8; 64];
        let mut filled = 0;
        let mut at = base;
        for &b in pieces.iter().flat_map(|p| p.iter()) {
            chunk[filled] = b;
            filled += 1;
            if filled == chunk.len() {
                self.nor.write(at, &chunk)?;
                at += chunk.len() as u32;
                filled = 0;
            }
        }
        if filled > 0 {
            let whole = filled.div_ceil(WORD) * WORD;
            chunk[filled..whole].fill(0xFF);
            self.nor.write(at, &chunk[..whole])?;
        }
        Ok(len)
    }
}

/// The telemetry log's region (tek-controller's `flash_log::layout::LOG_LEN`, 100 pages) in the
/// host file `<flash path>.log`, for a `tek_controller::flash_log::FlashLog`.
pub fn log_region(flash_path: &str) -> Result<HostNor, FlashError> {
    HostNor::open(
        flash_path,
        ".log",
        tek_controller::flash_log::layout::LOG_LEN as usize,
    )
}
