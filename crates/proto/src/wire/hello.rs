//! The Hello datagram (kind 1, device -> server, exactly 46 bytes).
//!
//! ```text
//! 0   ver = 1
//! 1   kind = 1
//! 2   device id            u32
//! 6   hello counter        u64  (boot counter << 32 | attempt in this boot), strictly increasing
//! 14  device nonce         16 random bytes
//! 30  tag                  AES-CMAC(K_hs, bytes 0..30), 16 bytes
//! ```

use super::{field as common, read_u32, read_u64, write_prefix, Kind, WireError};
use crate::crypto::{handshake_tag, handshake_tag_ok, Key, HANDSHAKE_TAG_LEN};

mod field {
    use super::super::field::Field;
    pub const COUNTER: Field = 6..14;
    pub const NONCE: Field = 14..30;
    pub const TAG: Field = 30..46;
    pub const LEN: usize = 46;
}

/// A view over a Hello datagram.
#[derive(Debug, Clone, Copy)]
pub struct Hello<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Hello<T> {
    /// Length of every Hello.
    pub const LEN: usize = field::LEN;

    /// Accepts a buffer of exactly the Hello length, version 1, kind Hello.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() != field::LEN {
            return Err(WireError::Length);
        }
        if b[common::VERSION] != crate::VERSION {
            return Err(WireError::Version);
        }
        if Kind::from(b[common::KIND]) != Kind::Hello {
            return Err(WireError::Kind);
        }
        Ok(Hello { buffer })
    }

    /// The device that claims to send it (not yet authenticated).
    pub fn device_id(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[common::DEVICE_ID])
    }

    /// The hello counter.
    pub fn counter(&self) -> u64 {
        read_u64(&self.buffer.as_ref()[field::COUNTER])
    }

    /// The device's fresh nonce.
    pub fn nonce(&self) -> [u8; 16] {
        let mut n = [0u8; 16];
        n.copy_from_slice(&self.buffer.as_ref()[field::NONCE]);
        n
    }

    /// Checks the tag under the device's handshake key (constant time).
    pub fn verify(&self, handshake_key: &Key) -> bool {
        let b = self.buffer.as_ref();
        handshake_tag_ok(handshake_key, &[&b[..field::TAG.start]], &b[field::TAG])
    }
}

/// The content of a Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloRepr {
    /// The sending device.
    pub device_id: u32,
    /// Strictly increasing per device, across reboots (see PROTOCOL.md, "Hello counter").
    pub counter: u64,
    /// 16 fresh random bytes.
    pub nonce: [u8; 16],
}

impl HelloRepr {
    /// Reads the fields of a checked Hello (does not verify the tag).
    pub fn parse<T: AsRef<[u8]>>(hello: &Hello<T>) -> HelloRepr {
        HelloRepr {
            device_id: hello.device_id(),
            counter: hello.counter(),
            nonce: hello.nonce(),
        }
    }

    /// Writes the Hello, tagged under `handshake_key`, into `buf[..46]`.
    /// Returns the length, or `None` if `buf` is too short.
    pub fn emit(&self, handshake_key: &Key, buf: &mut [u8]) -> Option<usize> {
        let buf = buf.get_mut(..field::LEN)?;
        write_prefix(buf, Kind::Hello, self.device_id);
        buf[field::COUNTER].copy_from_slice(&self.counter.to_be_bytes());
        buf[field::NONCE].copy_from_slice(&self.nonce);
        let tag: [u8; HANDSHAKE_TAG_LEN] =
            handshake_tag(handshake_key, &[&buf[..field::TAG.start]]);
        buf[field::TAG].copy_from_slice(&tag);
        Some(field::LEN)
    }
}
