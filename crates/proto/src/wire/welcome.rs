//! The Welcome datagram (kind 2, server -> device, exactly 46 bytes: never longer than the Hello
//! it answers, so a server cannot be used to amplify traffic).
//!
//! ```text
//! 0   ver = 1
//! 1   kind = 2
//! 2   device id            u32
//! 6   session id           u32, non-zero, chosen at random by the server
//! 10  server nonce         16 random bytes
//! 26  server time          u32, Unix seconds
//! 30  tag                  AES-CMAC(K_hs, bytes 0..30 || Hello bytes 6..30), 16 bytes
//! ```

use super::{field as common, read_u32, write_prefix, Kind, WireError};
use crate::crypto::{handshake_tag, handshake_tag_ok, Key};

mod field {
    use super::super::field::Field;
    pub const SESSION_ID: Field = 6..10;
    pub const NONCE: Field = 10..26;
    pub const TIME: Field = 26..30;
    pub const TAG: Field = 30..46;
    pub const LEN: usize = 46;
}

/// A view over a Welcome datagram.
#[derive(Debug, Clone, Copy)]
pub struct Welcome<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Welcome<T> {
    /// Length of every Welcome.
    pub const LEN: usize = field::LEN;

    /// Accepts a buffer of exactly the Welcome length, version 1, kind Welcome.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() != field::LEN {
            return Err(WireError::Length);
        }
        if b[common::VERSION] != crate::VERSION {
            return Err(WireError::Version);
        }
        if Kind::from(b[common::KIND]) != Kind::Welcome {
            return Err(WireError::Kind);
        }
        Ok(Welcome { buffer })
    }

    /// The device it is addressed to.
    pub fn device_id(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[common::DEVICE_ID])
    }

    /// Checks the tag under the device's handshake key, bound to the Hello `transcript`
    /// (bytes 6..30 of the Hello this answers).
    pub fn verify(&self, handshake_key: &Key, hello_transcript: &[u8]) -> bool {
        let b = self.buffer.as_ref();
        handshake_tag_ok(
            handshake_key,
            &[&b[..field::TAG.start], hello_transcript],
            &b[field::TAG],
        )
    }
}

/// The content of a Welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WelcomeRepr {
    /// The device it answers.
    pub device_id: u32,
    /// The new session's id (non-zero).
    pub session_id: u32,
    /// 16 fresh random bytes from the server.
    pub nonce: [u8; 16],
    /// The server's clock, Unix seconds: the device's first time sync.
    pub server_time: u32,
}

impl WelcomeRepr {
    /// Reads the fields of a checked Welcome (does not verify the tag).
    pub fn parse<T: AsRef<[u8]>>(welcome: &Welcome<T>) -> WelcomeRepr {
        let b = welcome.buffer.as_ref();
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&b[field::NONCE]);
        WelcomeRepr {
            device_id: read_u32(&b[common::DEVICE_ID]),
            session_id: read_u32(&b[field::SESSION_ID]),
            nonce,
            server_time: read_u32(&b[field::TIME]),
        }
    }

    /// Writes the Welcome into `buf[..46]`, tagged under `handshake_key` and bound to the Hello
    /// transcript. Returns the length, or `None` if `buf` is too short.
    pub fn emit(
        &self,
        handshake_key: &Key,
        hello_transcript: &[u8],
        buf: &mut [u8],
    ) -> Option<usize> {
        let buf = buf.get_mut(..field::LEN)?;
        write_prefix(buf, Kind::Welcome, self.device_id);
        buf[field::SESSION_ID].copy_from_slice(&self.session_id.to_be_bytes());
        buf[field::NONCE].copy_from_slice(&self.nonce);
        buf[field::TIME].copy_from_slice(&self.server_time.to_be_bytes());
        let tag = handshake_tag(handshake_key, &[&buf[..field::TAG.start], hello_transcript]);
        buf[field::TAG].copy_from_slice(&tag);
        Some(field::LEN)
    }
}
