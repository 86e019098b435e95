//! Configurations larger than one datagram (PROTOCOL.md 17.4): the ConfigChunk message
//! (0x85, server -> device), the ChunkAck answer (0x08, device -> server), the layout of an
//! assembled configuration, and a reassembler with a fixed-size buffer.
//!
//! ```text
//! ConfigChunk body:  version u32 | total u16 | index u8 | count u8 | digest [8] | data
//! ChunkAck body:     version u32 | state u8 | received u32 (bit i = chunk i held)
//! assembled:         items length u16 | items (PROTOCOL.md 7.6) | channel map (17.2)
//! digest:            AES-CMAC(K_cfg, version u32 || assembled)[0..8],
//!                    K_cfg = KDF(K, "tek cfg", empty context)
//! ```
//!
//! Every chunk but the last carries exactly [`CHUNK_DATA`] bytes; `count` is
//! `ceil(total / CHUNK_DATA)`. The reassembler holds one transfer: a chunk whose header
//! (version, total, count, digest) differs from the transfer in progress starts a new one and
//! discards the old, so chunks of two configurations never mix; the assembled bytes are released
//! only when every chunk arrived **and** the digest matches. Parsing never panics.

use super::map::{ChannelMap, MapError};
use crate::crypto::{handshake_tag, handshake_tag_prefix_ok, kdf, Key};
use crate::message::config::Config;
use crate::message::MessageError;

/// Data bytes of every chunk but the last.
pub const CHUNK_DATA: usize = 960;
/// Most chunks of one configuration.
pub const MAX_CHUNKS: usize = 32;
/// Largest assembled configuration the protocol allows (a device states its own limit in
/// [`Capabilities::max_config`]).
pub const MAX_CONFIG: usize = CHUNK_DATA * MAX_CHUNKS;
/// Digest bytes carried in every chunk.
pub const DIGEST_LEN: usize = 8;
/// Label of the configuration digest key.
pub const LABEL_CFG: &[u8] = b"tek cfg";

const CHUNK_HEADER: usize = 4 + 2 + 1 + 1 + DIGEST_LEN;

/// The digest key of a device (`K_cfg`).
pub fn digest_key(master: &Key) -> Key {
    kdf(master, LABEL_CFG, &[])
}

/// The digest of an assembled configuration.
pub fn digest(k_cfg: &Key, version: u32, assembled: &[u8]) -> [u8; DIGEST_LEN] {
    let tag = handshake_tag(k_cfg, &[&version.to_be_bytes(), assembled]);
    let mut d = [0u8; DIGEST_LEN];
    d.copy_from_slice(&tag[..DIGEST_LEN]);
    d
}

/// Whether `claimed` is the digest of `assembled`, compared in constant time: the digest is a
/// truncated MAC, and an early exit at the first wrong byte would tell whoever can time the
/// answers how much of a guess was right.
pub fn digest_ok(k_cfg: &Key, version: u32, assembled: &[u8], claimed: &[u8; DIGEST_LEN]) -> bool {
    handshake_tag_prefix_ok(k_cfg, &[&version.to_be_bytes(), assembled], claimed)
}

/// Chunks a configuration of `total` bytes is split into (0 if it is empty or too large).
pub fn chunk_count(total: usize) -> usize {
    if total == 0 || total > MAX_CONFIG {
        0
    } else {
        total.div_ceil(CHUNK_DATA)
    }
}

/// One chunk (message 0x85 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigChunk<'a> {
    /// Configuration version.
    pub version: u32,
    /// Length of the assembled configuration.
    pub total: u16,
    /// This chunk's index.
    pub index: u8,
    /// Number of chunks.
    pub count: u8,
    /// Digest of the whole configuration.
    pub digest: [u8; DIGEST_LEN],
    /// This chunk's bytes.
    pub data: &'a [u8],
}

impl<'a> ConfigChunk<'a> {
    /// Decodes and checks a chunk body: total 1..=[`MAX_CONFIG`], count = its chunk count,
    /// index < count, data of the length its index implies.
    pub fn parse(b: &'a [u8]) -> Result<Self, MessageError> {
        if b.len() < CHUNK_HEADER {
            return Err(MessageError::Truncated);
        }
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&b[8..CHUNK_HEADER]);
        let c = ConfigChunk {
            version: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            total: u16::from_be_bytes([b[4], b[5]]),
            index: b[6],
            count: b[7],
            digest,
            data: &b[CHUNK_HEADER..],
        };
        let count = chunk_count(usize::from(c.total));
        if count == 0 || usize::from(c.count) != count || c.index >= c.count {
            return Err(MessageError::Range);
        }
        let want = c.data_len();
        match c.data.len() {
            n if n < want => Err(MessageError::Truncated),
            n if n > want => Err(MessageError::Trailing),
            _ => Ok(c),
        }
    }

    /// Data bytes this chunk must carry.
    fn data_len(&self) -> usize {
        let start = usize::from(self.index) * CHUNK_DATA;
        (usize::from(self.total) - start.min(usize::from(self.total))).min(CHUNK_DATA)
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        CHUNK_HEADER + self.data.len()
    }

    /// Writes the body; `None` if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let b = buf.get_mut(..self.buffer_len())?;
        b[0..4].copy_from_slice(&self.version.to_be_bytes());
        b[4..6].copy_from_slice(&self.total.to_be_bytes());
        b[6] = self.index;
        b[7] = self.count;
        b[8..CHUNK_HEADER].copy_from_slice(&self.digest);
        b[CHUNK_HEADER..].copy_from_slice(self.data);
        Some(b.len())
    }

    /// Chunk `index` of `assembled` (version `version`, digest under `k_cfg`); `None` if the
    /// configuration is empty or too large, or there is no such chunk.
    pub fn split(k_cfg: &Key, version: u32, assembled: &'a [u8], index: usize) -> Option<Self> {
        let count = chunk_count(assembled.len());
        if index >= count {
            return None;
        }
        let start = index * CHUNK_DATA;
        let end = (start + CHUNK_DATA).min(assembled.len());
        Some(ConfigChunk {
            version,
            total: assembled.len() as u16,
            index: index as u8,
            count: count as u8,
            digest: digest(k_cfg, version, assembled),
            data: assembled.get(start..end)?,
        })
    }
}

/// Where the device is with a transfer (the ChunkAck state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// 0: chunks missing; `received` says which arrived.
    Receiving,
    /// 1: complete, digest and contents valid; the device now treats it as a Config (10.8) and
    /// answers ConfigAck.
    Accepted,
    /// 2: complete, digest wrong: everything discarded; send it all again.
    DigestMismatch,
    /// 3: complete and authentic, but not a valid configuration: discarded.
    Invalid,
    /// 4: larger than this device can hold (see Capabilities).
    TooLarge,
    /// Another code.
    Unknown(u8),
}

impl ChunkState {
    /// From the wire code.
    pub fn from_code(c: u8) -> ChunkState {
        match c {
            0 => ChunkState::Receiving,
            1 => ChunkState::Accepted,
            2 => ChunkState::DigestMismatch,
            3 => ChunkState::Invalid,
            4 => ChunkState::TooLarge,
            n => ChunkState::Unknown(n),
        }
    }
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            ChunkState::Receiving => 0,
            ChunkState::Accepted => 1,
            ChunkState::DigestMismatch => 2,
            ChunkState::Invalid => 3,
            ChunkState::TooLarge => 4,
            ChunkState::Unknown(n) => n,
        }
    }
}

/// The device's answer to a chunk (message 0x08 body, 9 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAck {
    /// Configuration version.
    pub version: u32,
    /// State of the transfer.
    pub state: ChunkState,
    /// Bit i set: chunk i is held.
    pub received: u32,
}

impl ChunkAck {
    /// Body length.
    pub const LEN: usize = 9;

    /// Decodes a body (an unknown state decodes to [`ChunkState::Unknown`]).
    pub fn parse(b: &[u8]) -> Result<ChunkAck, MessageError> {
        match b.len() {
            n if n < Self::LEN => Err(MessageError::Truncated),
            n if n > Self::LEN => Err(MessageError::Trailing),
            _ => Ok(ChunkAck {
                version: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                state: ChunkState::from_code(b[4]),
                received: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
            }),
        }
    }

    /// Writes the body; `None` if `buf` is shorter than [`Self::LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let b = buf.get_mut(..Self::LEN)?;
        b[0..4].copy_from_slice(&self.version.to_be_bytes());
        b[4] = self.state.code();
        b[5..9].copy_from_slice(&self.received.to_be_bytes());
        Some(Self::LEN)
    }
}

/// Why an assembled configuration is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssembledError {
    /// The items length runs past the end.
    Truncated,
    /// The item list is invalid (PROTOCOL.md 7.6).
    Items(MessageError),
    /// The channel map is invalid.
    Map(MapError),
}

impl core::fmt::Display for AssembledError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AssembledError::Truncated => f.write_str("assembled configuration truncated"),
            AssembledError::Items(e) => write!(f, "configuration items: {e}"),
            AssembledError::Map(e) => write!(f, "{e}"),
        }
    }
}

/// An assembled configuration, validated: the item list and the channel map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assembled<'a> {
    /// The item list (decode with [`Config::parse_items`]).
    pub items: &'a [u8],
    /// The channel map (validated).
    pub map: ChannelMap<'a>,
}

impl<'a> Assembled<'a> {
    /// Splits and validates an assembled configuration.
    pub fn parse(b: &'a [u8]) -> Result<Self, AssembledError> {
        let len = b.get(..2).ok_or(AssembledError::Truncated)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let items = b.get(2..2 + len).ok_or(AssembledError::Truncated)?;
        Config::parse_items(items).map_err(AssembledError::Items)?;
        let map = ChannelMap::new_checked(&b[2 + len..]).map_err(AssembledError::Map)?;
        map.validate().map_err(AssembledError::Map)?;
        Ok(Assembled { items, map })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        2 + self.items.len() + self.map.as_bytes().len()
    }

    /// Writes the assembled form; `None` if `buf` is too short or the items exceed 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let len = u16::try_from(self.items.len()).ok()?;
        let b = buf.get_mut(..self.buffer_len())?;
        b[..2].copy_from_slice(&len.to_be_bytes());
        b[2..2 + self.items.len()].copy_from_slice(self.items);
        b[2 + self.items.len()..].copy_from_slice(self.map.as_bytes());
        Some(b.len())
    }
}

/// What one chunk did to the reassembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'r> {
    /// More chunks needed; the ChunkAck to send.
    Partial(ChunkAck),
    /// Every chunk arrived and the digest matches: the assembled bytes (still to be validated
    /// with [`Assembled::parse`]).
    Complete(u32, &'r [u8]),
    /// Every chunk arrived but the digest does not match: all discarded.
    DigestMismatch(ChunkAck),
    /// The configuration is larger than the buffer: refused.
    TooLarge(ChunkAck),
}

/// Collects the chunks of one configuration in a fixed buffer of `N` bytes.
#[derive(Debug, Clone)]
pub struct Reassembler<const N: usize> {
    buf: [u8; N],
    /// (version, total, count, digest) of the transfer in progress.
    current: Option<(u32, u16, u8, [u8; DIGEST_LEN])>,
    received: u32,
}

impl<const N: usize> Default for Reassembler<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Reassembler<N> {
    /// Empty.
    pub const fn new() -> Self {
        Reassembler {
            buf: [0; N],
            current: None,
            received: 0,
        }
    }

    /// Forgets the transfer in progress.
    pub fn reset(&mut self) {
        self.current = None;
        self.received = 0;
    }

    /// The version being received, if any.
    pub fn version(&self) -> Option<u32> {
        self.current.map(|c| c.0)
    }

    /// Takes one (parsed) chunk. `k_cfg` is the device's digest key.
    pub fn push(&mut self, k_cfg: &Key, chunk: &ConfigChunk<'_>) -> Progress<'_> {
        let header = (chunk.version, chunk.total, chunk.count, chunk.digest);
        let ack = |state, received| ChunkAck {
            version: chunk.version,
            state,
            received,
        };
        let total = usize::from(chunk.total);
        if total > N {
            self.reset();
            return Progress::TooLarge(ack(ChunkState::TooLarge, 0));
        }
        if self.current != Some(header) {
            self.current = Some(header);
            self.received = 0;
        }
        let start = usize::from(chunk.index) * CHUNK_DATA;
        match self.buf.get_mut(start..start + chunk.data.len()) {
            Some(dst) if start + chunk.data.len() <= total => dst.copy_from_slice(chunk.data),
            // Not a chunk `ConfigChunk::parse` lets through; refuse it the same way.
            _ => {
                self.reset();
                return Progress::TooLarge(ack(ChunkState::TooLarge, 0));
            }
        }
        self.received |= 1u32.checked_shl(u32::from(chunk.index)).unwrap_or(0);
        let all = if chunk.count >= 32 {
            u32::MAX
        } else {
            (1u32 << chunk.count) - 1
        };
        if self.received != all {
            return Progress::Partial(ack(ChunkState::Receiving, self.received));
        }
        let received = self.received;
        self.reset();
        let assembled = &self.buf[..total];
        if !digest_ok(k_cfg, chunk.version, assembled, &chunk.digest) {
            return Progress::DigestMismatch(ack(ChunkState::DigestMismatch, received));
        }
        Progress::Complete(chunk.version, assembled)
    }
}

/// Feature bits of [`Capabilities::features`].
pub mod feature {
    /// Understands ConfigChunk / ChunkAck and assembled configurations with a channel map.
    pub const SPLIT_CONFIG: u32 = 1 << 0;
    /// Sends wide telemetry (0x07) while it runs a channel map.
    pub const WIDE_TELEMETRY: u32 = 1 << 1;
    /// Runs Modbus RTU sources.
    pub const MODBUS: u32 = 1 << 2;
    /// Runs computed channels (expression programs of PROTOCOL.md 17.3).
    pub const EXPRESSIONS: u32 = 1 << 3;
    /// Keeps its log across restarts and delivers earlier boots' records as Backlog
    /// ([`crate::backlog`]) once the server states it takes them.
    pub const BACKLOG: u32 = 1 << 4;
}

/// What a device can run (message 0x06 body, device -> server, at least 9 bytes).
///
/// ```text
/// features     u32  feature bits (unknown bits: ignore)
/// channels     u8   most channels of a map, 1..=128
/// buses        u8   most buses, 0..=4
/// max config   u16  largest assembled configuration it holds, bytes
/// max program  u8   longest expression program, bytes
/// ```
/// Later versions may append fields; a receiver ignores bytes after those it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// [`feature`] bits.
    pub features: u32,
    /// Most channels.
    pub max_channels: u8,
    /// Most serial buses.
    pub max_buses: u8,
    /// Largest assembled configuration, bytes.
    pub max_config: u16,
    /// Longest program, bytes.
    pub max_program: u8,
}

impl Capabilities {
    /// Body length written by this version.
    pub const LEN: usize = 9;

    /// Decodes a body (extra bytes after the known fields are ignored).
    pub fn parse(b: &[u8]) -> Result<Capabilities, MessageError> {
        let b = b.get(..Self::LEN).ok_or(MessageError::Truncated)?;
        let c = Capabilities {
            features: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            max_channels: b[4],
            max_buses: b[5],
            max_config: u16::from_be_bytes([b[6], b[7]]),
            max_program: b[8],
        };
        if c.max_channels == 0 || usize::from(c.max_channels) > super::map::MAX_CHANNELS {
            return Err(MessageError::Range);
        }
        if usize::from(c.max_buses) > super::map::MAX_BUSES {
            return Err(MessageError::Range);
        }
        Ok(c)
    }

    /// Writes the body; `None` if `buf` is shorter than [`Self::LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let b = buf.get_mut(..Self::LEN)?;
        b[0..4].copy_from_slice(&self.features.to_be_bytes());
        b[4] = self.max_channels;
        b[5] = self.max_buses;
        b[6..8].copy_from_slice(&self.max_config.to_be_bytes());
        b[8] = self.max_program;
        Some(Self::LEN)
    }

    /// Whether a device with these capabilities can run `assembled` (an assembled
    /// configuration already validated): the server asks this before it sends one.
    pub fn can_run(&self, assembled: &Assembled<'_>) -> bool {
        let map = assembled.map;
        if self.features & feature::SPLIT_CONFIG == 0
            || assembled.buffer_len() > usize::from(self.max_config)
            || map.channel_count() > usize::from(self.max_channels)
            || map.bus_count() > usize::from(self.max_buses)
        {
            return false;
        }
        map.channels().all(|ch| match ch.source {
            super::map::Source::Modbus(_) => self.features & feature::MODBUS != 0,
            super::map::Source::Computed(code) => {
                self.features & feature::EXPRESSIONS != 0
                    && code.len() <= usize::from(self.max_program)
            }
            super::map::Source::Board(_) => true,
            super::map::Source::Unknown(_) => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: Key = Key([7; 16]);

    fn config(len: usize) -> std::vec::Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    #[test]
    fn chunks_round_trip_and_reassemble_in_any_order() {
        let k = digest_key(&K);
        let data = config(2500);
        assert_eq!(chunk_count(2500), 3);
        let chunks: std::vec::Vec<_> = (0..3)
            .map(|i| ConfigChunk::split(&k, 9, &data, i).unwrap())
            .collect();
        assert!(ConfigChunk::split(&k, 9, &data, 3).is_none());
        assert_eq!(chunks[2].data.len(), 580);
        let mut bodies = std::vec::Vec::new();
        for c in &chunks {
            let mut b = std::vec![0u8; c.buffer_len()];
            c.emit(&mut b).unwrap();
            assert_eq!(ConfigChunk::parse(&b).unwrap(), *c);
            bodies.push(b);
        }
        let mut r = Reassembler::<4096>::new();
        for i in [2, 0, 0] {
            let c = ConfigChunk::parse(&bodies[i]).unwrap();
            assert!(
                matches!(r.push(&k, &c), Progress::Partial(a) if a.state == ChunkState::Receiving)
            );
        }
        let c = ConfigChunk::parse(&bodies[1]).unwrap();
        match r.push(&k, &c) {
            Progress::Complete(9, got) => assert_eq!(got, &data[..]),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.version(), None);
    }

    #[test]
    fn digest_ok_accepts_only_the_exact_digest() {
        let k = digest_key(&K);
        let a = config(300);
        let d = digest(&k, 4, &a);
        assert!(digest_ok(&k, 4, &a, &d));
        assert!(!digest_ok(&k, 5, &a, &d));
        assert!(!digest_ok(&k, 4, &a[1..], &d));
        for bit in 0..DIGEST_LEN * 8 {
            let mut wrong = d;
            wrong[bit / 8] ^= 1 << (bit % 8);
            assert!(!digest_ok(&k, 4, &a, &wrong), "bit {bit}");
        }
    }

    #[test]
    fn half_delivered_or_mixed_is_never_complete() {
        let k = digest_key(&K);
        let a = config(2000);
        let mut b = a.clone();
        b[1500] ^= 1;
        let mut r = Reassembler::<4096>::new();
        // Two chunks of A, then the last of B (same version, different digest): B starts over.
        let ca0 = ConfigChunk::split(&k, 3, &a, 0).unwrap();
        let ca1 = ConfigChunk::split(&k, 3, &a, 1).unwrap();
        let cb2 = ConfigChunk::split(&k, 3, &b, 2).unwrap();
        assert!(matches!(r.push(&k, &ca0), Progress::Partial(_)));
        assert!(matches!(r.push(&k, &ca1), Progress::Partial(_)));
        match r.push(&k, &cb2) {
            Progress::Partial(ack) => assert_eq!(ack.received, 0b100),
            other => panic!("{other:?}"),
        }
        // A forged mix: the header of A with the bytes of B is caught by the digest.
        let mut forged = ConfigChunk::split(&k, 3, &b, 1).unwrap();
        forged.digest = ca0.digest;
        let ca2 = ConfigChunk::split(&k, 3, &a, 2).unwrap();
        assert!(matches!(r.push(&k, &ca0), Progress::Partial(_)));
        assert!(matches!(r.push(&k, &forged), Progress::Partial(_)));
        match r.push(&k, &ca2) {
            Progress::DigestMismatch(ack) => assert_eq!(ack.state, ChunkState::DigestMismatch),
            other => panic!("{other:?}"),
        }
        // A digest under another device's key is refused too.
        let other = digest_key(&Key([8; 16]));
        let mut r = Reassembler::<4096>::new();
        let small = config(10);
        let c = ConfigChunk::split(&other, 1, &small, 0).unwrap();
        assert!(matches!(r.push(&k, &c), Progress::DigestMismatch(_)));
        // Too large for the buffer.
        let mut r = Reassembler::<1000>::new();
        let c = ConfigChunk::split(&k, 1, &a, 0).unwrap();
        assert!(matches!(r.push(&k, &c), Progress::TooLarge(_)));
    }

    #[test]
    fn chunk_header_checks() {
        let mut body = std::vec![0u8; CHUNK_HEADER + 10];
        body[5] = 10; // total 10
        body[7] = 1; // count 1
        assert!(ConfigChunk::parse(&body).is_ok());
        assert_eq!(
            ConfigChunk::parse(&body[..CHUNK_HEADER - 1]),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            ConfigChunk::parse(&body[..CHUNK_HEADER + 9]),
            Err(MessageError::Truncated)
        );
        let mut long = body.clone();
        long.push(0);
        assert_eq!(ConfigChunk::parse(&long), Err(MessageError::Trailing));
        let mut b = body.clone();
        b[7] = 2; // wrong count
        assert_eq!(ConfigChunk::parse(&b), Err(MessageError::Range));
        let mut b = body.clone();
        b[6] = 1; // index past count
        assert_eq!(ConfigChunk::parse(&b), Err(MessageError::Range));
        let mut b = body.clone();
        b[4] = 0;
        b[5] = 0; // total 0
        assert_eq!(ConfigChunk::parse(&b), Err(MessageError::Range));
        let mut b = body;
        b[4] = 0xFF;
        b[5] = 0xFF; // past MAX_CONFIG
        assert_eq!(ConfigChunk::parse(&b), Err(MessageError::Range));
    }

    #[test]
    fn acks_and_capabilities() {
        let a = ChunkAck {
            version: 7,
            state: ChunkState::Receiving,
            received: 0b101,
        };
        let mut b = [0u8; 9];
        a.emit(&mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 7, 0, 0, 0, 0, 5]);
        assert_eq!(ChunkAck::parse(&b), Ok(a));
        assert_eq!(ChunkAck::parse(&b[..8]), Err(MessageError::Truncated));
        b[4] = 9;
        assert_eq!(ChunkAck::parse(&b).unwrap().state, ChunkState::Unknown(9));

        let c = Capabilities {
            features: feature::SPLIT_CONFIG | feature::WIDE_TELEMETRY,
            max_channels: 128,
            max_buses: 2,
            max_config: 8192,
            max_program: 128,
        };
        let mut b = [0u8; 12];
        c.emit(&mut b).unwrap();
        assert_eq!(&b[..9], &[0, 0, 0, 3, 128, 2, 0x20, 0, 128]);
        // A later device's longer body still decodes.
        assert_eq!(Capabilities::parse(&b), Ok(c));
        assert_eq!(Capabilities::parse(&b[..8]), Err(MessageError::Truncated));
        b[4] = 0;
        assert_eq!(Capabilities::parse(&b), Err(MessageError::Range));
        b[4] = 1;
        b[5] = 5;
        assert_eq!(Capabilities::parse(&b), Err(MessageError::Range));
    }

    #[test]
    fn assembled_layout_and_what_a_device_can_run() {
        use crate::channel::expr::op;
        use crate::channel::map::{self, *};
        let code = [op::CHAN, 0, op::CONST8, 2, op::MUL];
        let channels = [
            Channel {
                source: Source::Board(0),
                conversion: Conversion::IDENTITY,
                resolution: Resolution {
                    unit: Unit::Watt,
                    exponent: 0,
                },
            },
            Channel {
                source: Source::Computed(&code),
                conversion: Conversion::IDENTITY,
                resolution: Resolution {
                    unit: Unit::Watt,
                    exponent: 0,
                },
            },
        ];
        let mut mb = [0u8; 64];
        let n = map::emit(&[], &channels, &mut mb).unwrap();
        let items = [1u8, 2, 0, 60];
        let a = Assembled {
            items: &items,
            map: ChannelMap::new_checked(&mb[..n]).unwrap(),
        };
        let mut buf = [0u8; 128];
        let len = a.emit(&mut buf).unwrap();
        assert_eq!(&buf[..6], &[0, 4, 1, 2, 0, 60]);
        let parsed = Assembled::parse(&buf[..len]).unwrap();
        assert_eq!(parsed, a);
        let mut caps = Capabilities {
            features: feature::SPLIT_CONFIG | feature::EXPRESSIONS,
            max_channels: 2,
            max_buses: 0,
            max_config: 4096,
            max_program: 5,
        };
        assert!(caps.can_run(&parsed));
        caps.max_program = 4;
        assert!(!caps.can_run(&parsed));
        caps.max_program = 5;
        caps.features = feature::SPLIT_CONFIG;
        assert!(!caps.can_run(&parsed));
        caps.features |= feature::EXPRESSIONS;
        caps.max_channels = 1;
        assert!(!caps.can_run(&parsed));
        // Invalid items or map are refused, naming the part.
        buf[5] = 1; // log interval 1 s
        assert!(matches!(
            Assembled::parse(&buf[..len]),
            Err(AssembledError::Items(_))
        ));
        buf[5] = 60;
        assert!(matches!(
            Assembled::parse(&buf[..len - 1]),
            Err(AssembledError::Map(_))
        ));
        assert_eq!(Assembled::parse(&[0, 9, 1]), Err(AssembledError::Truncated));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let k = digest_key(&K);
            let mut r = Reassembler::<2048>::new();
            if let Ok(c) = ConfigChunk::parse(&bytes) {
                let _ = r.push(&k, &c);
            }
            let _ = ChunkAck::parse(&bytes);
            let _ = Capabilities::parse(&bytes);
            let _ = Assembled::parse(&bytes);
        }

        #[test]
        fn any_delivery_order_with_losses_and_duplicates(
            len in 1usize..3000,
            order in proptest::collection::vec(0usize..4, 0..20),
        ) {
            let k = digest_key(&K);
            let data = config(len);
            let count = chunk_count(len);
            let mut r = Reassembler::<3000>::new();
            let mut have = 0u32;
            for i in order.into_iter().filter(|&i| i < count) {
                have |= 1 << i;
                let c = ConfigChunk::split(&k, 1, &data, i).unwrap();
                match r.push(&k, &c) {
                    Progress::Complete(_, got) => {
                        prop_assert_eq!(have, (1u32 << count) - 1);
                        prop_assert_eq!(got, &data[..]);
                        have = 0;
                    }
                    Progress::Partial(ack) => prop_assert_eq!(ack.received, have),
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }
}
