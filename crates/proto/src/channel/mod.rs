//! Channels: configurable sources, computed channels, large configurations and wide telemetry
//! (PROTOCOL.md 17).
//!
//! The five pool channels of [`crate::message::telemetry`] are one fixed channel map; this module
//! is the general one, as an extension that devices and servers of today never see unless both
//! ends state that they understand it:
//!
//! * [`map`] — the channel map: up to 128 channels, each a source (Modbus RTU read, board input,
//!   computed), a conversion and a resolution/unit code, plus the serial buses.
//! * [`expr`] — expression programs of computed channels: bytecode, verifier, evaluator.
//! * [`split`] — configurations larger than one datagram: chunks, their acknowledgement, the
//!   assembled layout, a fixed-buffer reassembler, and the Capabilities message by which a device
//!   states what it can run.
//! * [`wide`] — telemetry of any subset of up to 128 channels with a per-record "no value".
//! * [`roles`] — configuration item 16: which channel is the water temperature, which relay the
//!   pump and the heater.
//! * [`faults`] — per-channel fault counters and the last fault, sent next to Status.
//!
//! The new messages use type codes that version 1 receivers drop as unknown
//! ([`crate::message::Message::Unknown`]); [`ChannelMessage::parse`] decodes them.
//!
//! ## Guarantees
//! * Parsing untrusted bytes never panics, and no byte string makes [`expr::eval`] panic, loop or
//!   read out of bounds. Errors are small `Copy` values naming the channel and field at fault.
//! * Emitting into a buffer of at least the reported length never panics.
//! * No heap: every buffer is the caller's or a fixed-size array.

pub mod expr;
pub mod faults;
pub mod map;
pub mod roles;
pub mod split;
pub mod wide;

use crate::message::MessageError;

/// Message type codes of this extension.
pub mod code {
    /// Capabilities (device -> server).
    pub const CAPABILITIES: u8 = 0x06;
    /// Wide telemetry (device -> server).
    pub const WIDE_TELEMETRY: u8 = 0x07;
    /// Chunk acknowledgement (device -> server).
    pub const CHUNK_ACK: u8 = 0x08;
    /// Channel faults (device -> server).
    pub const CHANNEL_FAULTS: u8 = 0x09;
    /// Configuration chunk (server -> device).
    pub const CONFIG_CHUNK: u8 = 0x85;
}

/// One message of this extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMessage<'a> {
    /// What the device can run.
    Capabilities(split::Capabilities),
    /// A wide telemetry batch.
    WideTelemetry(wide::WideTelemetry<'a>),
    /// The device's answer to a chunk.
    ChunkAck(split::ChunkAck),
    /// A chunk of a configuration.
    ConfigChunk(split::ConfigChunk<'a>),
    /// Per-channel fault counters.
    ChannelFaults(faults::ChannelFaults<'a>),
}

impl<'a> ChannelMessage<'a> {
    /// Decodes a message (type byte and body). `Ok(None)`: not a type of this extension.
    pub fn parse(bytes: &'a [u8]) -> Result<Option<Self>, MessageError> {
        let (&c, body) = bytes.split_first().ok_or(MessageError::Truncated)?;
        Ok(Some(match c {
            code::CAPABILITIES => ChannelMessage::Capabilities(split::Capabilities::parse(body)?),
            code::WIDE_TELEMETRY => {
                ChannelMessage::WideTelemetry(wide::WideTelemetry::parse(body)?)
            }
            code::CHUNK_ACK => ChannelMessage::ChunkAck(split::ChunkAck::parse(body)?),
            code::CONFIG_CHUNK => ChannelMessage::ConfigChunk(split::ConfigChunk::parse(body)?),
            code::CHANNEL_FAULTS => {
                ChannelMessage::ChannelFaults(faults::ChannelFaults::parse(body)?)
            }
            _ => return Ok(None),
        }))
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            ChannelMessage::Capabilities(_) => split::Capabilities::LEN,
            ChannelMessage::WideTelemetry(t) => t.as_bytes().len(),
            ChannelMessage::ChunkAck(_) => split::ChunkAck::LEN,
            ChannelMessage::ConfigChunk(c) => c.buffer_len(),
            ChannelMessage::ChannelFaults(f) => f.as_bytes().len(),
        }
    }

    /// Writes the message (type byte and body); returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, MessageError> {
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(MessageError::Buffer)?;
        let (head, body) = buf.split_at_mut(1);
        head[0] = match self {
            ChannelMessage::Capabilities(c) => {
                c.emit(body);
                code::CAPABILITIES
            }
            ChannelMessage::WideTelemetry(t) => {
                body.copy_from_slice(t.as_bytes());
                code::WIDE_TELEMETRY
            }
            ChannelMessage::ChunkAck(a) => {
                a.emit(body);
                code::CHUNK_ACK
            }
            ChannelMessage::ConfigChunk(c) => {
                c.emit(body);
                code::CONFIG_CHUNK
            }
            ChannelMessage::ChannelFaults(f) => {
                body.copy_from_slice(f.as_bytes());
                code::CHANNEL_FAULTS
            }
        };
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use proptest::prelude::*;

    #[test]
    fn version_1_receivers_see_unknown_messages() {
        // What a v1 server or device decodes these as: Unknown, which it drops (PROTOCOL.md 13).
        let caps = [0x06, 0, 0, 0, 1, 16, 1, 0x10, 0, 64];
        assert_eq!(Message::parse(&caps), Ok(Message::Unknown(0x06)));
        assert!(matches!(
            ChannelMessage::parse(&caps),
            Ok(Some(ChannelMessage::Capabilities(_)))
        ));
        for c in [
            code::WIDE_TELEMETRY,
            code::CHUNK_ACK,
            code::CONFIG_CHUNK,
            code::CHANNEL_FAULTS,
        ] {
            assert_eq!(Message::parse(&[c]), Ok(Message::Unknown(c)));
        }
        assert_eq!(ChannelMessage::parse(&[0x01, 0]), Ok(None));
        assert_eq!(ChannelMessage::parse(&[]), Err(MessageError::Truncated));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_reemits(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            if let Ok(Some(m)) = ChannelMessage::parse(&bytes) {
                let mut out = std::vec![0u8; m.buffer_len()];
                let n = m.emit(&mut out).unwrap();
                prop_assert_eq!(ChannelMessage::parse(&out[..n]).unwrap(), Some(m));
            }
        }
    }
}
