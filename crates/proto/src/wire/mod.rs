//! Datagram layouts.
//!
//! Every datagram starts with the same six clear bytes (all integers big-endian):
//!
//! ```text
//! 0      1      2             6
//! +------+------+-------------+----------------------------------+
//! | ver  | kind | device id   | kind-specific, see below          |
//! +------+------+-------------+----------------------------------+
//! ```
//!
//! * kind 1, [`Hello`]: device -> server, starts a session (46 bytes).
//! * kind 2, [`Welcome`]: server -> device, answers a Hello (46 bytes).
//! * kind 3, [`data`]: either direction, an encrypted message inside a session (24..=1024 bytes).
//!
//! Each layout is a view over a byte buffer ([`Datagram`], [`Hello`] …) whose getters cannot panic
//! once `new_checked` accepted the buffer, plus plain value types where the content is more than a
//! few fields.

pub mod data;
mod hello;
mod welcome;

pub use hello::{Hello, HelloRepr};
pub use welcome::{Welcome, WelcomeRepr};

/// Why a datagram was refused before or during parsing. Every variant means: drop it silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than 24 or longer than 1024 bytes, or not the exact length of its kind.
    Length,
    /// A protocol version this implementation does not speak.
    Version,
    /// A datagram kind this implementation does not know.
    Kind,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WireError::Length => "bad datagram length",
            WireError::Version => "unknown protocol version",
            WireError::Kind => "unknown datagram kind",
        })
    }
}

/// The kind byte of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Device -> server: session setup request.
    Hello,
    /// Server -> device: session setup answer.
    Welcome,
    /// Either direction: an encrypted message in an established session.
    Data,
    /// Any other value; always dropped.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(value: u8) -> Kind {
        match value {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Data,
            other => Kind::Unknown(other),
        }
    }
}

impl From<Kind> for u8 {
    fn from(kind: Kind) -> u8 {
        match kind {
            Kind::Hello => 1,
            Kind::Welcome => 2,
            Kind::Data => 3,
            Kind::Unknown(other) => other,
        }
    }
}

pub(crate) mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VERSION: usize = 0;
    pub const KIND: usize = 1;
    pub const DEVICE_ID: Field = 2..6;
}

/// A view over any received datagram: the cheap checks every receiver runs first.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Accepts a buffer whose length is within 24..=1024 and whose version is [`crate::VERSION`].
    /// The kind is not checked here: [`Datagram::kind`] may return [`Kind::Unknown`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if !crate::length_ok(bytes.len()) {
            return Err(WireError::Length);
        }
        if bytes[field::VERSION] != crate::VERSION {
            return Err(WireError::Version);
        }
        Ok(Datagram { buffer })
    }

    /// The datagram kind.
    pub fn kind(&self) -> Kind {
        Kind::from(self.buffer.as_ref()[field::KIND])
    }

    /// The device the datagram is from or for.
    pub fn device_id(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::DEVICE_ID])
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

pub(crate) fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

pub(crate) fn write_prefix(buf: &mut [u8], kind: Kind, device_id: u32) {
    buf[field::VERSION] = crate::VERSION;
    buf[field::KIND] = kind.into();
    buf[field::DEVICE_ID].copy_from_slice(&device_id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_checks() {
        assert_eq!(
            Datagram::new_checked(&[1u8; 23][..]).err(),
            Some(WireError::Length)
        );
        assert_eq!(
            Datagram::new_checked(&[1u8; 1025][..]).err(),
            Some(WireError::Length)
        );
        let mut b = [0u8; 24];
        b[0] = 2;
        assert_eq!(
            Datagram::new_checked(&b[..]).err(),
            Some(WireError::Version)
        );
        b[0] = 1;
        b[1] = 9;
        b[2..6].copy_from_slice(&0xDEADBEEFu32.to_be_bytes());
        let d = Datagram::new_checked(&b[..]).unwrap();
        assert_eq!(d.kind(), Kind::Unknown(9));
        assert_eq!(d.device_id(), 0xDEADBEEF);
    }

    #[test]
    fn kind_codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(u8::from(Kind::from(code)), code);
        }
    }
}
