//! Persistent storage for the controller's flash record, behind the small [`Flash`] trait.
//!
//! The controller writes its record alternately into two slots (tek-controller's `persist`
//! module: sequence number and CRC, so a power cut during a write leaves the other slot valid).
//! Here each slot is [`SLOT_LEN`] bytes, which on the LM3S6965 is two 1 kB flash pages, and a write
//! is "erase the slot, program the record".
//!
//! QEMU does not model the LM3S6965's flash controller (its flash is read-only ROM to the guest),
//! so the test bench uses [`HostFileFlash`]: a file on the host, reached through semihosting,
//! laid out exactly like the two flash slots (erased bytes read as 0xFF). A driver for the real
//! flash controller (FMA/FMD/FMC registers, page erase + word program) implements the same trait
//! over the top four pages of flash (0x3F000..0x40000) — not written yet because QEMU could not
//! test it.

use crate::semihosting::{HostFile, Mode};

/// Bytes per slot: two flash pages, more than tek-controller's longest record.
pub const SLOT_LEN: usize = 2048;
const _: () = assert!(SLOT_LEN >= tek_controller::persist::MAX_LEN);

/// A flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// The slot number is not 0 or 1, or the record is longer than a slot.
    Bounds,
    /// The medium reported an error.
    Io,
}

/// Two slots of flash.
pub trait Flash {
    /// Reads slot `slot` (0 or 1) into `buf` (at most [`SLOT_LEN`] bytes; erased bytes are 0xFF).
    fn read(&mut self, slot: u8, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Erases slot `slot` and programs `record` at its start.
    fn write(&mut self, slot: u8, record: &[u8]) -> Result<(), FlashError>;
}

/// The test bench's flash: a host file of two slots.
pub struct HostFileFlash {
    /// NUL-terminated host path.
    path: heapless::Vec<u8, 96>,
}

impl HostFileFlash {
    /// Flash kept in the host file `path` (created, erased, when it does not exist).
    pub fn new(path: &str) -> Result<HostFileFlash, FlashError> {
        let mut p = heapless::Vec::new();
        p.extend_from_slice(path.as_bytes())
            .map_err(|_| FlashError::Bounds)?;
        p.push(0).map_err(|_| FlashError::Bounds)?;
        let flash = HostFileFlash { path: p };
        if HostFile::open(&flash.path, Mode::Read).is_err() {
            // A new part: both slots erased.
            let mut f = HostFile::open(&flash.path, Mode::Create).map_err(|_| FlashError::Io)?;
            let erased = [0xFFu8; 256];
            for _ in 0..(2 * SLOT_LEN / erased.len()) {
                f.write(&erased).map_err(|_| FlashError::Io)?;
            }
        }
        Ok(flash)
    }
}

impl Flash for HostFileFlash {
    fn read(&mut self, slot: u8, buf: &mut [u8]) -> Result<(), FlashError> {
        if slot > 1 || buf.len() > SLOT_LEN {
            return Err(FlashError::Bounds);
        }
        let mut f = HostFile::open(&self.path, Mode::Read).map_err(|_| FlashError::Io)?;
        f.seek(usize::from(slot) * SLOT_LEN)
            .map_err(|_| FlashError::Io)?;
        buf.fill(0xFF);
        // A short file reads as erased flash.
        f.read(buf).map_err(|_| FlashError::Io)?;
        Ok(())
    }

    fn write(&mut self, slot: u8, record: &[u8]) -> Result<(), FlashError> {
        if slot > 1 || record.len() > SLOT_LEN {
            return Err(FlashError::Bounds);
        }
        let mut f = HostFile::open(&self.path, Mode::ReadWrite).map_err(|_| FlashError::Io)?;
        f.seek(usize::from(slot) * SLOT_LEN)
            .map_err(|_| FlashError::Io)?;
        f.write(record).map_err(|_| FlashError::Io)?;
        // The erase of the rest of the slot.
        let erased = [0xFFu8; 64];
        let mut left = SLOT_LEN - record.len();
        while left > 0 {
            let n = left.min(erased.len());
            f.write(&erased[..n]).map_err(|_| FlashError::Io)?;
            left -= n;
        }
        Ok(())
    }
}
