//! The session datagram (kind 3, either direction, 24..=1024 bytes).
//!
//! ```text
//! 0   ver = 1
//! 1   kind = 3
//! 2   device id            u32
//! 6   session id           u32 (from the Welcome)
//! 10  counter              u32, per direction, starts at 0, +1 per datagram sent
//! 14  ciphertext           AES-128-CCM of the message (at least 2 bytes)
//! n-8 tag                  8 bytes
//! ```
//!
//! The 14 header bytes are the CCM associated data. The 13-byte nonce is
//! `device id || session id || direction (0 = device->server, 1 = server->device) || counter`.

use super::{field as common, read_u32, write_prefix, Kind, WireError};
use crate::crypto::{NONCE_LEN, TAG_LEN};

mod field {
    use super::super::field::Field;
    pub const SESSION_ID: Field = 6..10;
    pub const COUNTER: Field = 10..14;
    pub const HEADER_LEN: usize = 14;
}

/// Length of the clear header of a session datagram.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Bytes a session datagram adds to its message: header and tag.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest message that fits in one datagram.
pub const MAX_MESSAGE: usize = crate::MAX_DATAGRAM - OVERHEAD;
/// The smallest message a datagram may carry (so that the datagram is at least 24 bytes).
pub const MIN_MESSAGE: usize = crate::MIN_DATAGRAM - OVERHEAD;

/// Direction of a session datagram; part of the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Device to server.
    DeviceToServer = 0,
    /// Server to device.
    ServerToDevice = 1,
}

/// A view over a session datagram.
#[derive(Debug)]
pub struct DataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DataPacket<T> {
    /// Accepts a buffer of 24..=1024 bytes, version 1, kind Data.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if !crate::length_ok(b.len()) {
            return Err(WireError::Length);
        }
        if b[common::VERSION] != crate::VERSION {
            return Err(WireError::Version);
        }
        if Kind::from(b[common::KIND]) != Kind::Data {
            return Err(WireError::Kind);
        }
        Ok(DataPacket { buffer })
    }

    /// The device id.
    pub fn device_id(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[common::DEVICE_ID])
    }

    /// The session id.
    pub fn session_id(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SESSION_ID])
    }

    /// The per-direction counter.
    pub fn counter(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::COUNTER])
    }

    /// The CCM nonce for this datagram in `direction`.
    pub fn nonce(&self, direction: Direction) -> [u8; NONCE_LEN] {
        let b = self.buffer.as_ref();
        nonce(
            read_u32(&b[common::DEVICE_ID]),
            read_u32(&b[field::SESSION_ID]),
            direction,
            read_u32(&b[field::COUNTER]),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DataPacket<T> {
    /// Splits the datagram into (header, ciphertext, tag) for opening in place.
    pub fn split_mut(&mut self) -> (&[u8], &mut [u8], [u8; TAG_LEN]) {
        let b = self.buffer.as_mut();
        let tag_at = b.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&b[tag_at..]);
        let (header, rest) = b.split_at_mut(HEADER_LEN);
        (header, &mut rest[..tag_at - HEADER_LEN], tag)
    }
}

/// Builds the 13-byte CCM nonce.
pub fn nonce(
    device_id: u32,
    session_id: u32,
    direction: Direction,
    counter: u32,
) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[0..4].copy_from_slice(&device_id.to_be_bytes());
    n[4..8].copy_from_slice(&session_id.to_be_bytes());
    n[8] = direction as u8;
    n[9..13].copy_from_slice(&counter.to_be_bytes());
    n
}

/// Writes the clear header of a session datagram into `buf[..14]`.
pub fn emit_header(buf: &mut [u8], device_id: u32, session_id: u32, counter: u32) {
    write_prefix(buf, Kind::Data, device_id);
    buf[field::SESSION_ID].copy_from_slice(&session_id.to_be_bytes());
    buf[field::COUNTER].copy_from_slice(&counter.to_be_bytes());
}
