//! The few ARM semihosting calls the firmware uses in QEMU, as safe functions.
//!
//! Semihosting is the debugger's (here QEMU's) service channel: a `BKPT 0xAB` with an operation
//! number in r0 and an argument block in r1. The firmware uses it as the test bench's stand-in for
//! three things a real board has and QEMU's `lm3s6965evb` does not model usefully:
//!
//! * the console (`SYS_WRITE` to the host's stdout, via `cortex-m-semihosting`'s `hprintln`,
//!   see [`crate::console`]);
//! * flash that survives a reset (`SYS_OPEN`/`SYS_READ`/`SYS_WRITE`/`SYS_SEEK` on a host file,
//!   see [`crate::storage`]);
//! * the HALT jumper and the factory identity (`SYS_GET_CMDLINE`, see [`crate::halt`] and
//!   [`crate::identity`]).
//!
//! Every call here is only valid while a semihosting host is attached: on a board without a
//! debugger `BKPT` faults. The real-hardware drivers that replace these stand-ins sit behind the
//! same traits, so nothing outside this module and its users depends on it.

use cortex_m_semihosting::{nr, syscall, syscall1};

/// A semihosting call failed (the host returned -1 or a short count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

/// Copies the command line the host was started with (QEMU: `-append "..."`) into `buf` and
/// returns it, or `None` when the host has none or it does not fit.
pub fn cmdline(buf: &mut [u8]) -> Option<&str> {
    // The argument block is {buffer pointer, buffer length}; the host rewrites the length.
    let mut block: [usize; 2] = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: `block` points to a live buffer of `block[1]` writable bytes for the duration of the
    // call; the host writes at most that many bytes and updates `block[1]`, which we pass by a
    // pointer derived from a unique borrow.
    let rc = unsafe { syscall1(nr::GET_CMDLINE, &mut block as *mut [usize; 2] as usize) };
    if rc != 0 {
        return None;
    }
    let len = block[1].min(buf.len());
    let bytes = &buf[..len];
    // The host NUL-terminates and may or may not count the NUL.
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
    core::str::from_utf8(bytes).ok()
}

/// An open host file.
pub struct HostFile {
    handle: usize,
}

/// How to open a host file (the ISO C `fopen` modes semihosting numbers 0..=11).
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// "rb": read an existing file.
    Read,
    /// "r+b": read and write an existing file.
    ReadWrite,
    /// "w+b": create or truncate, read and write.
    Create,
}

impl HostFile {
    /// Opens `path` (which must end with a NUL byte so the host can use it as a C string).
    pub fn open(path: &[u8], mode: Mode) -> Result<HostFile, HostError> {
        if path.last() != Some(&0) {
            return Err(HostError);
        }
        let mode = match mode {
            Mode::Read => nr::open::R_BINARY,
            Mode::ReadWrite => nr::open::RW_BINARY,
            Mode::Create => nr::open::RW_TRUNC_BINARY,
        };
        let block: [usize; 3] = [path.as_ptr() as usize, mode, path.len() - 1];
        // SAFETY: the block names a NUL-terminated string that lives for the call; the host only
        // reads it.
        let rc = unsafe { syscall(nr::OPEN, &block) } as isize;
        if rc < 0 {
            return Err(HostError);
        }
        Ok(HostFile {
            handle: rc as usize,
        })
    }

    /// Moves to absolute byte `offset`.
    pub fn seek(&mut self, offset: usize) -> Result<(), HostError> {
        let block: [usize; 2] = [self.handle, offset];
        // SAFETY: the block holds two integers the host only reads.
        let rc = unsafe { syscall(nr::SEEK, &block) };
        if rc == 0 {
            Ok(())
        } else {
            Err(HostError)
        }
    }

    /// Reads up to `buf.len()` bytes; returns how many were read (fewer at the end of the file).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, HostError> {
        let block: [usize; 3] = [self.handle, buf.as_mut_ptr() as usize, buf.len()];
        // SAFETY: the block points to `buf`, writable for `buf.len()` bytes during the call; the
        // host writes at most that many.
        let rc = unsafe { syscall(nr::READ, &block) };
        // The host returns the number of bytes NOT read.
        buf.len().checked_sub(rc).ok_or(HostError)
    }

    /// Writes all of `data`.
    pub fn write(&mut self, data: &[u8]) -> Result<(), HostError> {
        let block: [usize; 3] = [self.handle, data.as_ptr() as usize, data.len()];
        // SAFETY: the block points to `data`, readable for `data.len()` bytes during the call.
        let rc = unsafe { syscall(nr::WRITE, &block) };
        if rc == 0 {
            Ok(())
        } else {
            Err(HostError)
        }
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let block: [usize; 1] = [self.handle];
        // SAFETY: closes a handle this value owns; it is not used afterwards.
        unsafe { syscall(nr::CLOSE, &block) };
    }
}

/// Ends the QEMU run with a status the test script sees as QEMU's exit code.
pub fn exit(success: bool) -> ! {
    use cortex_m_semihosting::debug;
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Without a semihosting host the call above returns: stop here.
    loop {
        cortex_m::asm::wfi();
    }
}
