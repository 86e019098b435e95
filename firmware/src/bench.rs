//! The test bench's stand-ins for what a real board gets at the factory or from a jumper, read
//! from the semihosting command line (QEMU's `-append "..."`).
//!
//! ```text
//! id=<u32>            device id                  (factory: the identity page in flash)
//! key=<32 hex>        device key                 (factory: the identity page in flash)
//! server=<name[:port]> factory server list entry, repeatable, at most 8 (factory: the image)
//! flash=<host path>   file backing the two flash slots (see storage.rs)
//! halt                the HALT jumper is held at power-up
//! run=<seconds>       end the QEMU run after that long with the final report (0 = never)
//! gsm                 a GSM modem is fitted, on UART1 (the board option; QEMU: 2nd -serial)
//! probe=<seconds>     while on GSM, probe Ethernet this often (default 600; the GSM test
//!                     shortens it so the way back is seen within minutes)
//! ```
//!
//! The command line is read once at power-up, which is exactly when a jumper is sampled: it is a
//! deterministic replacement for a button QEMU 7.2 cannot hold down before the guest starts.
//! A bad argument stops the boot with a message — a device with a broken identity must not run.
//!
//! The parsed values borrow from the command-line buffer (no copies of the names): boot reads
//! the line into one small buffer, hands the names to the controller, which copies what it keeps,
//! and the buffer is gone before the loop starts.

use heapless::Vec;
use tek_proto::crypto::Key;
use tek_proto::message::config::{MAX_SERVERS, MAX_TEXT};

/// The HALT input, sampled at power-up.
pub trait HaltInput {
    /// Whether HALT was held when the controller powered up.
    fn held_at_power_up(&self) -> bool;
}

/// What a device is given at the factory.
pub struct Identity<'a> {
    /// Device id (non-zero).
    pub device_id: u32,
    /// Device key.
    pub key: Key,
    /// The factory server list, used until a configuration sets one.
    pub servers: Vec<&'a str, MAX_SERVERS>,
}

/// Everything the command line sets.
pub struct Bench<'a> {
    /// Identity and factory server list.
    pub identity: Identity<'a>,
    /// Host path of the flash file.
    pub flash_path: &'a str,
    /// The HALT jumper.
    pub halt: bool,
    /// Seconds after which the run ends (0 = never).
    pub run_s: u32,
    /// A GSM modem is fitted.
    pub gsm: bool,
    /// Ethernet probe interval while on GSM, seconds (0 = the controller's default).
    pub probe_s: u32,
}

/// Longest flash path (the flash driver keeps a NUL-terminated copy).
pub const MAX_PATH: usize = 79;

impl HaltInput for Bench<'_> {
    fn held_at_power_up(&self) -> bool {
        self.halt
    }
}

/// A command-line argument is missing or malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchError {
    /// No `id=` or id 0 or not a number.
    Id,
    /// No `key=` or not 32 hex digits.
    Key,
    /// A server name is empty, longer than 63 bytes, or there are more than 8.
    Server,
    /// The flash path is too long.
    Flash,
    /// `run=` is not a number.
    Run,
    /// An argument this firmware does not know.
    Unknown,
}

impl core::fmt::Display for BenchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BenchError::Id => "id=<non-zero u32> missing or malformed",
            BenchError::Key => "key=<32 hex digits> missing or malformed",
            BenchError::Server => "server=<name> empty, longer than 63 bytes, or more than 8",
            BenchError::Flash => "flash=<path> longer than 79 bytes",
            BenchError::Run => "run=<seconds> or probe=<seconds> is not a (non-zero) number",
            BenchError::Unknown => "unknown argument",
        })
    }
}

impl<'a> Bench<'a> {
    /// Parses the command line (its first word is the kernel's path and is skipped).
    pub fn parse(cmdline: &'a str) -> Result<Bench<'a>, BenchError> {
        let mut id = None;
        let mut key = None;
        let mut servers = Vec::new();
        // Default: a file next to where QEMU runs.
        let mut flash_path = "tek-flash.bin";
        let mut halt = false;
        let mut run_s = 0;
        let mut gsm = false;
        let mut probe_s = 0;
        for arg in cmdline.split_ascii_whitespace().skip(1) {
            let (name, value) = arg.split_once('=').unwrap_or((arg, ""));
            match name {
                "id" => {
                    id = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|&v| v != 0)
                            .ok_or(BenchError::Id)?,
                    )
                }
                "key" => key = Some(Key::from_hex(value).ok_or(BenchError::Key)?),
                "server" => {
                    if value.is_empty() || value.len() > MAX_TEXT {
                        return Err(BenchError::Server);
                    }
                    servers.push(value).map_err(|_| BenchError::Server)?;
                }
                "flash" => {
                    if value.len() > MAX_PATH {
                        return Err(BenchError::Flash);
                    }
                    flash_path = value;
                }
                "halt" if value.is_empty() => halt = true,
                "run" => run_s = value.parse().map_err(|_| BenchError::Run)?,
                "gsm" if value.is_empty() => gsm = true,
                "probe" => {
                    probe_s = value
                        .parse()
                        .ok()
                        .filter(|&s| s > 0)
                        .ok_or(BenchError::Run)?
                }
                _ => return Err(BenchError::Unknown),
            }
        }
        Ok(Bench {
            identity: Identity {
                device_id: id.ok_or(BenchError::Id)?,
                key: key.ok_or(BenchError::Key)?,
                servers,
            },
            flash_path,
            halt,
            run_s,
            gsm,
            probe_s,
        })
    }
}
