//! # tek-proto — the TEK controller/server wire protocol
//!
//! Everything both ends of a TEK link must agree on, with no heap and no I/O, so the same code runs
//! on a 64 kB Cortex-M3 controller and on the server:
//!
//! * [`wire`] — the datagram layouts: the clear header every datagram starts with, the two
//!   handshake datagrams ([`wire::Hello`], [`wire::Welcome`]) and the encrypted session datagram.
//! * [`message`] — what travels inside a session datagram once it is decrypted: telemetry batches,
//!   acknowledgements, configuration, commands, status, keepalives.
//! * [`crypto`] — the per-device key, the AES-CMAC key derivation and AES-128-CCM sealing.
//! * [`handshake`] — the two-message handshake that starts every session, for both roles.
//! * [`session`] — an established session: per-direction counters and the [`replay`] window.
//! * [`tz`] — POSIX TZ rules (the local-time rule a configuration carries for schedules).
//! * [`channel`] — configurable channels: channel maps, expression programs, configurations
//!   split over several datagrams, wide telemetry and the capabilities a device states.
//! * [`backlog`] — records logged before a restart, delivered and acknowledged under the boot
//!   they were logged in.
//!
//! ## Guarantees
//! * Parsing untrusted bytes never panics; every failure is a small `Copy` error that the caller
//!   turns into a silent drop (and a counter), never into a reply.
//! * Emitting into a buffer of at least the reported length never panics.
//! * The replay window is consulted before the AEAD is opened and updated only after it succeeded.
//!
//! docs/PROTOCOL.md is the normative description; this crate is its reference implementation.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod backlog;
pub mod channel;
pub mod crypto;
pub mod handshake;
pub mod message;
pub mod replay;
pub mod session;
pub mod tz;
pub mod wire;

/// Protocol version carried in the first byte of every datagram.
pub const VERSION: u8 = 1;

/// The UDP port servers listen on by default.
pub const SERVER_PORT: u16 = 8844;

/// Smallest datagram either side accepts or sends.
pub const MIN_DATAGRAM: usize = 24;

/// Largest datagram either side accepts or sends.
pub const MAX_DATAGRAM: usize = 1024;

/// The range a device draws its source port from, anew for every attempt to contact a server.
pub const DEVICE_PORTS: core::ops::RangeInclusive<u16> = 0x7000..=0x7FFF;

/// Maps 16 random bits onto [`DEVICE_PORTS`] (the range is 4096 ports, so the low 12 bits suffice
/// and the mapping is uniform).
pub const fn device_port_from_random(random: u16) -> u16 {
    0x7000 | (random & 0x0FFF)
}

/// Whether a datagram length is one the protocol allows. Checked before anything else.
pub const fn length_ok(len: usize) -> bool {
    len >= MIN_DATAGRAM && len <= MAX_DATAGRAM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mapping_stays_in_range() {
        for r in [0u16, 1, 0x0FFF, 0x1000, 0x7FFF, 0x8000, 0xFFFF, 12345] {
            assert!(DEVICE_PORTS.contains(&device_port_from_random(r)));
        }
        assert_eq!(device_port_from_random(0), 28672);
        assert_eq!(device_port_from_random(0xFFFF), 32767);
    }

    #[test]
    fn length_bounds() {
        assert!(!length_ok(23));
        assert!(length_ok(24));
        assert!(length_ok(1024));
        assert!(!length_ok(1025));
    }
}
