//! A NOR flash that behaves like the LM3S6965's, for tests: 1 kB erase pages that erase to
//! 0xFF, word (4-byte) programming that only clears bits, a word programmed twice without an
//! erase is an error, and a power cut after any number of operations (word programs and page
//! erases) so tests can cut at every instant.
//!
//! What a cut leaves: the words programmed before it; the word being programmed half done (its
//! first two bytes programmed and the other two still erased, or the other way round: see
//! [`SimFlash::cut_after`]); a page being erased half erased
//! (its first half 0xFF, the rest as it was). Every later operation fails until
//! [`SimFlash::restart`].

use embedded_storage::nor_flash::{
    check_erase, check_read, check_write, ErrorType, NorFlash, NorFlashError, NorFlashErrorKind,
    ReadNorFlash,
};
use std::vec;
use std::vec::Vec;

/// The LM3S6965's erase page.
pub const PAGE_LEN: usize = 1024;
const WORD: usize = 4;

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// Offset or length not a multiple of the unit.
    NotAligned,
    /// Past the end of the flash.
    OutOfBounds,
    /// A word programmed a second time without an erase: a bug in the caller.
    ProgrammedTwice,
    /// The power was cut (now or earlier).
    PowerCut,
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::NotAligned => NorFlashErrorKind::NotAligned,
            SimError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SimError::ProgrammedTwice | SimError::PowerCut => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for SimError {
    fn from(kind: NorFlashErrorKind) -> Self {
        match kind {
            NorFlashErrorKind::NotAligned => SimError::NotAligned,
            _ => SimError::OutOfBounds,
        }
    }
}

/// The simulated flash.
#[derive(Debug, Clone)]
pub struct SimFlash {
    mem: Vec<u8>,
    programmed: Vec<bool>,
    erases: Vec<u32>,
    /// Operations left before the power cut; `None`: no cut planned.
    budget: Option<u64>,
    cut: bool,
    /// Whether a word cut short has its last two bytes programmed (else its first two).
    tear_high: bool,
    /// Operations carried out (word programs and page erases).
    ops: u64,
}

impl SimFlash {
    /// A blank part of `pages` pages.
    pub fn new(pages: usize) -> SimFlash {
        SimFlash {
            mem: vec![0xFF; pages * PAGE_LEN],
            programmed: vec![false; pages * PAGE_LEN / WORD],
            erases: vec![0; pages],
            budget: None,
            cut: false,
            tear_high: false,
            ops: 0,
        }
    }

    /// Cuts the power after `ops` more operations; the next one is left half done (a word with
    /// its last two bytes programmed if `tear_high`, else its first two).
    pub fn cut_after(&mut self, ops: u64, tear_high: bool) {
        self.budget = Some(ops);
        self.tear_high = tear_high;
    }

    /// Clears bits of a byte, as a disturbed or worn cell would: for tests of corrupt data.
    pub fn disturb(&mut self, offset: usize, clear: u8) {
        self.mem[offset] &= !clear;
    }

    /// Power back: operations work again; the contents are what the cut left.
    pub fn restart(&mut self) {
        self.budget = None;
        self.cut = false;
    }

    /// Operations carried out so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Erases per page.
    pub fn erases(&self) -> &[u32] {
        &self.erases
    }

    /// Takes one operation from the budget; false when the power goes now.
    fn spend(&mut self) -> Result<bool, SimError> {
        if self.cut {
            return Err(SimError::PowerCut);
        }
        match &mut self.budget {
            Some(0) => {
                self.cut = true;
                Ok(false)
            }
            Some(n) => {
                *n -= 1;
                self.ops += 1;
                Ok(true)
            }
            None => {
                self.ops += 1;
                Ok(true)
            }
        }
    }
}

impl ErrorType for SimFlash {
    type Error = SimError;
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if self.cut {
            return Err(SimError::PowerCut);
        }
        check_read(self, offset, bytes.len())?;
        let at = offset as usize;
        bytes.copy_from_slice(&self.mem[at..at + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE_LEN;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        check_erase(self, from, to)?;
        for page in (from as usize / PAGE_LEN)..(to as usize / PAGE_LEN) {
            let bytes = page * PAGE_LEN..(page + 1) * PAGE_LEN;
            let words = page * PAGE_LEN / WORD..(page + 1) * PAGE_LEN / WORD;
            if !self.spend()? {
                let half = bytes.start + PAGE_LEN / 2;
                self.mem[bytes.start..half].fill(0xFF);
                self.programmed[words.start..words.start + PAGE_LEN / WORD / 2].fill(false);
                return Err(SimError::PowerCut);
            }
            self.mem[bytes].fill(0xFF);
            self.programmed[words].fill(false);
            self.erases[page] += 1;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        check_write(self, offset, bytes.len())?;
        for (i, word) in bytes.chunks_exact(WORD).enumerate() {
            let at = offset as usize + i * WORD;
            if self.programmed[at / WORD] {
                return Err(SimError::ProgrammedTwice);
            }
            let whole = self.spend()?;
            let done = match (whole, self.tear_high) {
                (true, _) => 0..WORD,
                (false, false) => 0..WORD / 2,
                (false, true) => WORD / 2..WORD,
            };
            for (m, b) in self.mem[at + done.start..at + done.end]
                .iter_mut()
                .zip(&word[done.clone()])
            {
                // Programming only clears bits.
                *m &= b;
            }
            if whole || word[done].iter().any(|&b| b != 0xFF) {
                self.programmed[at / WORD] = true;
            }
            if !whole {
                return Err(SimError::PowerCut);
            }
        }
        Ok(())
    }
}
