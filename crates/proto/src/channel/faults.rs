//! Channel faults (message type 0x09, device -> server; PROTOCOL.md 17.8): per channel, how many
//! samples failed since boot and why the last one did, so a server can alarm on a sensor fault.
//!
//! ```text
//! count       u8       entries, 0..=128
//! entries     count ×  channel  u8   0..=127, strictly increasing
//!                      errors   u16  failed samples of the channel since boot or since the
//!                                     map changed (saturating)
//!                      last     u8   the last failure (Fault codes below)
//!                      detail   u8   the Modbus exception code for `exception`, else 0
//! ```
//!
//! It travels next to Status instead of inside it: Status has a fixed layout that a version 1
//! server refuses when it is longer (PROTOCOL.md 13), while an unknown message type is dropped
//! unread, so a server that does not know this message loses nothing else.
//!
//! Parsing untrusted bytes never panics; emitting into a buffer of at least
//! [`ChannelFaults::buffer_len`] bytes never panics.

use crate::message::MessageError;

/// Most entries (one per channel).
pub const MAX_ENTRIES: usize = super::map::MAX_CHANNELS;
/// Bytes of one entry.
pub const ENTRY_LEN: usize = 5;

/// Why a channel's sample has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 1: the Modbus slave did not answer within the bus timeout.
    Timeout,
    /// 2: the answer's CRC was wrong.
    Crc,
    /// 3: the slave answered with an exception (the code in `detail`).
    Exception(u8),
    /// 4: an answer of the wrong slave, function or length.
    Malformed,
    /// 5: the expression gave no value (a division by zero, an operand without a value, an
    /// overflow).
    NoValue,
    /// 6: the input, or the converted value, is out of range (a missing board input, a NaN or
    /// infinite float, a result outside `i32`).
    OutOfRange,
    /// A code this version does not know.
    Unknown(u8),
}

impl Fault {
    /// The wire code and detail byte.
    pub fn code(self) -> (u8, u8) {
        match self {
            Fault::Timeout => (1, 0),
            Fault::Crc => (2, 0),
            Fault::Exception(e) => (3, e),
            Fault::Malformed => (4, 0),
            Fault::NoValue => (5, 0),
            Fault::OutOfRange => (6, 0),
            Fault::Unknown(c) => (c, 0),
        }
    }

    /// From the wire code and detail byte.
    pub fn from_code(code: u8, detail: u8) -> Fault {
        match code {
            1 => Fault::Timeout,
            2 => Fault::Crc,
            3 => Fault::Exception(detail),
            4 => Fault::Malformed,
            5 => Fault::NoValue,
            6 => Fault::OutOfRange,
            c => Fault::Unknown(c),
        }
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Fault::Timeout => f.write_str("Modbus timeout"),
            Fault::Crc => f.write_str("Modbus CRC error"),
            Fault::Exception(e) => write!(f, "Modbus exception {e}"),
            Fault::Malformed => f.write_str("malformed Modbus answer"),
            Fault::NoValue => f.write_str("expression without value"),
            Fault::OutOfRange => f.write_str("input out of range"),
            Fault::Unknown(c) => write!(f, "fault {c}"),
        }
    }
}

/// One channel's fault counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultEntry {
    /// Channel index.
    pub channel: u8,
    /// Failed samples since boot or since the map changed (saturating at 65535).
    pub errors: u16,
    /// The last failure.
    pub last: Fault,
}

/// A validated ChannelFaults body, borrowed from the decrypted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelFaults<'a> {
    bytes: &'a [u8],
}

impl<'a> ChannelFaults<'a> {
    /// Validates a body: the count, the length, channels below 128 and strictly increasing, a
    /// detail byte of 0 unless the fault is an exception.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MessageError> {
        let (&count, entries) = bytes.split_first().ok_or(MessageError::Truncated)?;
        if usize::from(count) > MAX_ENTRIES {
            return Err(MessageError::Range);
        }
        let want = usize::from(count) * ENTRY_LEN;
        match entries.len().cmp(&want) {
            core::cmp::Ordering::Less => return Err(MessageError::Truncated),
            core::cmp::Ordering::Greater => return Err(MessageError::Trailing),
            core::cmp::Ordering::Equal => {}
        }
        let mut previous: Option<u8> = None;
        for e in entries.chunks_exact(ENTRY_LEN) {
            let ch = e[0];
            if usize::from(ch) >= MAX_ENTRIES || previous.is_some_and(|p| ch <= p) {
                return Err(MessageError::Range);
            }
            if e[3] != 3 && e[4] != 0 {
                return Err(MessageError::Range);
            }
            previous = Some(ch);
        }
        Ok(ChannelFaults { bytes })
    }

    /// The entries, by channel.
    pub fn entries(&self) -> impl Iterator<Item = FaultEntry> + 'a {
        self.bytes
            .get(1..)
            .unwrap_or(&[])
            .chunks_exact(ENTRY_LEN)
            .map(|e| FaultEntry {
                channel: e[0],
                errors: u16::from_be_bytes([e[1], e[2]]),
                last: Fault::from_code(e[3], e[4]),
            })
    }

    /// The encoded body (without the message type byte).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes [`emit`](Self::emit) writes for `n` entries.
    pub fn buffer_len(n: usize) -> usize {
        1 + n * ENTRY_LEN
    }

    /// Writes a body of `entries` (sorted by channel, at most 128, channels below 128) into
    /// `buf`; returns its length, or `None` (writing nothing useful) if they break a rule or do
    /// not fit.
    pub fn emit(entries: &[FaultEntry], buf: &mut [u8]) -> Option<usize> {
        let n = Self::buffer_len(entries.len());
        if entries.len() > MAX_ENTRIES || buf.len() < n {
            return None;
        }
        buf[0] = entries.len() as u8;
        let mut previous: Option<u8> = None;
        for (e, out) in entries.iter().zip(buf[1..n].chunks_exact_mut(ENTRY_LEN)) {
            if usize::from(e.channel) >= MAX_ENTRIES || previous.is_some_and(|p| e.channel <= p) {
                return None;
            }
            let (code, detail) = e.last.code();
            out[0] = e.channel;
            out[1..3].copy_from_slice(&e.errors.to_be_bytes());
            out[3] = code;
            out[4] = if code == 3 { detail } else { 0 };
            previous = Some(e.channel);
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixture_round_trip() {
        let entries = [
            FaultEntry {
                channel: 0,
                errors: 3,
                last: Fault::Timeout,
            },
            FaultEntry {
                channel: 5,
                errors: 1,
                last: Fault::Exception(2),
            },
            FaultEntry {
                channel: 9,
                errors: 65535,
                last: Fault::NoValue,
            },
        ];
        let bytes: &[u8] = &[3, 0, 0, 3, 1, 0, 5, 0, 1, 3, 2, 9, 0xFF, 0xFF, 5, 0];
        let mut buf = [0u8; 16];
        assert_eq!(ChannelFaults::emit(&entries, &mut buf), Some(16));
        assert_eq!(&buf, bytes);
        let f = ChannelFaults::parse(bytes).unwrap();
        assert!(f.entries().eq(entries.iter().copied()));
        assert_eq!(ChannelFaults::parse(&[0]).unwrap().entries().count(), 0);
    }

    #[test]
    fn malformed() {
        let p = ChannelFaults::parse;
        assert_eq!(p(&[]), Err(MessageError::Truncated));
        assert_eq!(p(&[129]), Err(MessageError::Range));
        assert_eq!(p(&[1, 0, 0, 1, 1]), Err(MessageError::Truncated));
        assert_eq!(p(&[0, 0]), Err(MessageError::Trailing));
        // Channel 128, channels not increasing, a detail byte on a non-exception.
        assert_eq!(p(&[1, 128, 0, 1, 1, 0]), Err(MessageError::Range));
        assert_eq!(
            p(&[2, 4, 0, 1, 1, 0, 4, 0, 1, 1, 0]),
            Err(MessageError::Range)
        );
        assert_eq!(p(&[1, 4, 0, 1, 1, 7]), Err(MessageError::Range));
        // An unknown fault code is kept, not refused.
        let f = p(&[1, 4, 0, 1, 77, 0]).unwrap();
        assert_eq!(f.entries().next().unwrap().last, Fault::Unknown(77));
        // The emitter refuses what the parser would.
        let e = |channel| FaultEntry {
            channel,
            errors: 1,
            last: Fault::Crc,
        };
        assert_eq!(ChannelFaults::emit(&[e(3), e(3)], &mut [0u8; 64]), None);
        assert_eq!(ChannelFaults::emit(&[e(200)], &mut [0u8; 64]), None);
        assert_eq!(ChannelFaults::emit(&[e(1)], &mut [0u8; 5]), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_reemits(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(f) = ChannelFaults::parse(&bytes) {
                let entries: std::vec::Vec<_> = f.entries().collect();
                let mut out = std::vec![0u8; ChannelFaults::buffer_len(entries.len())];
                let n = ChannelFaults::emit(&entries, &mut out).unwrap();
                prop_assert_eq!(&out[..n], &bytes[..]);
            }
        }
    }
}
