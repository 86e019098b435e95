//! Records of earlier boots (PROTOCOL.md 18): the messages by which a device whose log survives
//! a restart (a log in flash) delivers what it logged before the restart.
//!
//! A record is named by the boot it was logged in and its sequence number in that boot
//! (PROTOCOL.md 7.3): Telemetry (0x01) and WideTelemetry (0x07) carry the records of the
//! session's own boot. A record logged in an earlier boot travels in a **Backlog** (0x0A), which
//! names that boot, and is acknowledged by a **BacklogAck** (0x87), which names it too — an Ack
//! (0x81) of the current boot's records can never free another boot's records.
//!
//! Both ends opt in, as for channels (PROTOCOL.md 17.1): a device states feature bit
//! [`crate::channel::split::feature::BACKLOG`] in Capabilities; a server that implements this
//! section answers every such Capabilities with **Accepts** (0x86). A device sends Backlog only
//! in a session whose server sent Accepts with [`accepts::BACKLOG`]; a version 1 server never
//! answers, and drops Backlog as an unknown message.
//!
//! ```text
//! 0x0A Backlog     device -> server
//!      boot        u32  the boot the records were logged in: 1 <= boot < the session's boot
//!      flags       u8   bit 0: times estimated (the device never learnt the server's clock in
//!                       that boot: its ages assume the boot ended when the next one began);
//!                       bit 1: the body is WideTelemetry's (0x07), else Telemetry's (0x01);
//!                       other bits: range
//!      body             that message's body: first seq, channels, records, times as ages at
//!                       sealing, exactly as sections 7.3 and 17.5 say
//! 0x86 Accepts     server -> device, in reply to Capabilities with the backlog bit
//!      features    u32  bit 0: Backlog and BacklogAck; other bits: ignore
//! 0x87 BacklogAck  server -> device
//!      boot        u32  the Backlog's boot
//!      through seq u32  records of that boot are stored up to and including this one
//! ```
//!
//! Parsing untrusted bytes never panics; emitting into a buffer of the reported length never
//! panics.

use crate::channel::wide::WideTelemetry;
use crate::message::{MessageError, Telemetry};

/// Message type codes of this section.
pub mod code {
    /// Backlog (device -> server).
    pub const BACKLOG: u8 = 0x0A;
    /// Accepts (server -> device).
    pub const ACCEPTS: u8 = 0x86;
    /// BacklogAck (server -> device).
    pub const BACKLOG_ACK: u8 = 0x87;
}

/// Feature bits of Accepts.
pub mod accepts {
    /// The server takes Backlog and answers it with BacklogAck.
    pub const BACKLOG: u32 = 1 << 0;
}

/// Backlog flag: the times are estimated.
pub const ESTIMATED: u8 = 1 << 0;
/// Backlog flag: the body is wide telemetry.
pub const WIDE: u8 = 1 << 1;
/// Bytes of a Backlog before its body.
pub const HEADER_LEN: usize = 5;

/// The records of a Backlog: the body of a Telemetry or of a WideTelemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records<'a> {
    /// Telemetry's layout (five pool channels).
    Telemetry(Telemetry<'a>),
    /// WideTelemetry's layout.
    Wide(WideTelemetry<'a>),
}

impl Records<'_> {
    /// Sequence number of the first record.
    pub fn first_seq(&self) -> u32 {
        match self {
            Records::Telemetry(t) => t.first_seq(),
            Records::Wide(w) => w.first_seq(),
        }
    }

    /// Sequence number of the last record.
    pub fn last_seq(&self) -> u32 {
        match self {
            Records::Telemetry(t) => t.last_seq(),
            Records::Wide(w) => w.last_seq(),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Records::Telemetry(t) => t.as_bytes(),
            Records::Wide(w) => w.as_bytes(),
        }
    }
}

/// A validated Backlog, borrowed from the decrypted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog<'a> {
    /// The boot its records were logged in (not 0).
    pub boot: u32,
    /// Whether their times are estimated.
    pub estimated: bool,
    /// The records.
    pub records: Records<'a>,
}

impl<'a> Backlog<'a> {
    /// Validates a body (after the type byte), every record included.
    pub fn parse(b: &'a [u8]) -> Result<Self, MessageError> {
        if b.len() < HEADER_LEN {
            return Err(MessageError::Truncated);
        }
        let boot = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let flags = b[4];
        if boot == 0 || flags & !(ESTIMATED | WIDE) != 0 {
            return Err(MessageError::Range);
        }
        let body = &b[HEADER_LEN..];
        let records = if flags & WIDE != 0 {
            Records::Wide(WideTelemetry::parse(body)?)
        } else {
            Records::Telemetry(Telemetry::parse(body)?)
        };
        Ok(Backlog {
            boot,
            estimated: flags & ESTIMATED != 0,
            records,
        })
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        let wide = matches!(self.records, Records::Wide(_));
        (u8::from(self.estimated) * ESTIMATED) | (u8::from(wide) * WIDE)
    }
}

/// Writes a Backlog's type byte and header into `buf`; the records' body follows at
/// [`HEADER_LEN`] + 1 (a device writes it there with its telemetry writer). `None` if `buf` is
/// too short or `boot` is 0.
pub fn write_header(buf: &mut [u8], boot: u32, flags: u8) -> Option<usize> {
    let b = buf.get_mut(..1 + HEADER_LEN)?;
    if boot == 0 || flags & !(ESTIMATED | WIDE) != 0 {
        return None;
    }
    b[0] = code::BACKLOG;
    b[1..5].copy_from_slice(&boot.to_be_bytes());
    b[5] = flags;
    Some(1 + HEADER_LEN)
}

/// One message of this section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BacklogMessage<'a> {
    /// Records of an earlier boot.
    Backlog(Backlog<'a>),
    /// What the server takes ([`accepts`] bits).
    Accepts(u32),
    /// Records of `boot` stored through `through_seq`.
    BacklogAck {
        /// The boot.
        boot: u32,
        /// Highest sequence number stored.
        through_seq: u32,
    },
}

impl<'a> BacklogMessage<'a> {
    /// Decodes a message (type byte and body). `Ok(None)`: not a type of this section.
    pub fn parse(bytes: &'a [u8]) -> Result<Option<Self>, MessageError> {
        let (&c, body) = bytes.split_first().ok_or(MessageError::Truncated)?;
        Ok(Some(match c {
            code::BACKLOG => BacklogMessage::Backlog(Backlog::parse(body)?),
            code::ACCEPTS => BacklogMessage::Accepts(be32(exact::<4>(body)?, 0)),
            code::BACKLOG_ACK => {
                let b = exact::<8>(body)?;
                let boot = be32(b, 0);
                if boot == 0 {
                    return Err(MessageError::Range);
                }
                BacklogMessage::BacklogAck {
                    boot,
                    through_seq: be32(b, 4),
                }
            }
            _ => return Ok(None),
        }))
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            BacklogMessage::Backlog(b) => HEADER_LEN + b.records.as_bytes().len(),
            BacklogMessage::Accepts(_) => 4,
            BacklogMessage::BacklogAck { .. } => 8,
        }
    }

    /// Writes the message (type byte and body); returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, MessageError> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(MessageError::Buffer)?;
        match self {
            BacklogMessage::Backlog(b) => {
                write_header(out, b.boot, b.flags()).ok_or(MessageError::Range)?;
                out[1 + HEADER_LEN..].copy_from_slice(b.records.as_bytes());
            }
            BacklogMessage::Accepts(features) => {
                out[0] = code::ACCEPTS;
                out[1..5].copy_from_slice(&features.to_be_bytes());
            }
            BacklogMessage::BacklogAck { boot, through_seq } => {
                out[0] = code::BACKLOG_ACK;
                out[1..5].copy_from_slice(&boot.to_be_bytes());
                out[5..9].copy_from_slice(&through_seq.to_be_bytes());
            }
        }
        Ok(len)
    }
}

fn exact<const N: usize>(body: &[u8]) -> Result<&[u8], MessageError> {
    match body.len() {
        n if n < N => Err(MessageError::Truncated),
        n if n > N => Err(MessageError::Trailing),
        _ => Ok(body),
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, TelemetryWriter};
    use proptest::prelude::*;

    fn backlog_bytes(boot: u32, flags: u8) -> std::vec::Vec<u8> {
        let mut buf = [0u8; 64];
        let at = write_header(&mut buf, boot, flags).unwrap();
        let mut w = TelemetryWriter::new(&mut buf[at..], 7, 0b1_0011, 1000).unwrap();
        assert!(w.push(940, &[5, 10, 0, 0, 1, 0, 0, 0]));
        assert!(w.push(1000, &[6, 12, 0, 0, 1, 0, 0, 0]));
        let n = w.len();
        buf[..at + n].to_vec()
    }

    #[test]
    fn a_backlog_round_trips_and_names_its_boot() {
        let bytes = backlog_bytes(41, ESTIMATED);
        let Ok(Some(BacklogMessage::Backlog(b))) = BacklogMessage::parse(&bytes) else {
            panic!("not a backlog")
        };
        assert_eq!((b.boot, b.estimated), (41, true));
        assert_eq!((b.records.first_seq(), b.records.last_seq()), (7, 8));
        let Records::Telemetry(t) = b.records else {
            panic!("wide")
        };
        let ages: std::vec::Vec<u32> = t.records().map(|r| r.age_s).collect();
        assert_eq!(ages, [60, 0]);
        let mut out = [0u8; 64];
        let n = BacklogMessage::Backlog(b).emit(&mut out).unwrap();
        assert_eq!(&out[..n], &bytes[..]);
    }

    #[test]
    fn bad_backlogs_are_refused() {
        let good = backlog_bytes(3, 0);
        let mut boot_zero = good.clone();
        boot_zero[1..5].copy_from_slice(&[0; 4]);
        let mut bad_flag = good.clone();
        bad_flag[5] = 4;
        let mut wide_flag = good.clone();
        wide_flag[5] = WIDE;
        for (bytes, err) in [
            (&boot_zero[..], MessageError::Range),
            (&bad_flag[..], MessageError::Range),
            (&good[..5], MessageError::Truncated),
            (&good[..good.len() - 1], MessageError::Truncated),
        ] {
            assert_eq!(BacklogMessage::parse(bytes), Err(err), "{bytes:?}");
        }
        // The wide flag makes the same body a (malformed) wide batch.
        assert!(BacklogMessage::parse(&wide_flag).is_err());
        assert_eq!(write_header(&mut [0u8; 8], 0, 0), None);
        assert_eq!(write_header(&mut [0u8; 5], 1, 0), None);
    }

    #[test]
    fn acks_and_accepts_have_exact_lengths() {
        let ack = [code::BACKLOG_ACK, 0, 0, 0, 2, 0, 0, 1, 0];
        assert_eq!(
            BacklogMessage::parse(&ack),
            Ok(Some(BacklogMessage::BacklogAck {
                boot: 2,
                through_seq: 256
            }))
        );
        assert_eq!(
            BacklogMessage::parse(&ack[..8]),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            BacklogMessage::parse(&[code::BACKLOG_ACK, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(MessageError::Range)
        );
        assert_eq!(
            BacklogMessage::parse(&[code::ACCEPTS, 0, 0, 0, 1, 9]),
            Err(MessageError::Trailing)
        );
        assert_eq!(
            BacklogMessage::parse(&[code::ACCEPTS, 0, 0, 0, 3]),
            Ok(Some(BacklogMessage::Accepts(3)))
        );
        assert_eq!(BacklogMessage::parse(&[0x01, 0]), Ok(None));
        assert_eq!(BacklogMessage::parse(&[]), Err(MessageError::Truncated));
    }

    #[test]
    fn version_1_receivers_see_unknown_messages() {
        for c in [code::BACKLOG, code::ACCEPTS, code::BACKLOG_ACK] {
            assert_eq!(Message::parse(&[c]), Ok(Message::Unknown(c)));
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_reemits(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            if let Ok(Some(m)) = BacklogMessage::parse(&bytes) {
                let mut out = std::vec![0u8; m.buffer_len()];
                let n = m.emit(&mut out).unwrap();
                prop_assert_eq!(BacklogMessage::parse(&out[..n]).unwrap(), Some(m));
            }
        }
    }
}
