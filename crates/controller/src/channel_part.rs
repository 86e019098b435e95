//! The controller's channel part (PROTOCOL.md 17): what a device that runs channel maps adds to
//! the [`Controller`](crate::Controller) — configurations that arrive as ConfigChunks, the
//! channel map sampled through a [`ChannelBus`], a log of wide records sent as WideTelemetry, and
//! the per-channel fault counters sent as ChannelFaults.
//!
//! The controller takes it as a type parameter, [`ChannelSupport`]: [`NoChannels`] (the
//! default, zero bytes) is a version 1 device, as the firmware is today; a [`ChannelPart`] with
//! its buffer sizes is a device that states Capabilities (17.1) and takes split
//! configurations. The controller talks to it through the object-safe [`ChannelRuntime`], so
//! its own code has one path, whatever the sizes.
//!
//! * **Reassembly** (17.4): chunks go into a [`Reassembler`]; a complete, authentic
//!   configuration is validated as a whole — items (7.6), channel map (17.2, 17.3), roles, and
//!   whether this device has the room — before the controller applies it like a Config. A
//!   half-delivered, mixed or corrupt one is never applied.
//! * **Modes**: the part runs either the factory pool map with Telemetry 0x01 (no split
//!   configuration: what every server of today sees), or the map of the split configuration it
//!   runs, logged as wide records (17.5). A configuration's trial and rollback (section 10.8)
//!   carry the map with them: the part keeps the previous configuration's bytes while a network
//!   change is on trial, and [`ChannelRuntime::sync`] follows the controller's configuration
//!   state (applied, rolled back, trial over).
//! * **The flash record** of the channel part ([`record`] format) holds the running and the
//!   previous assembled configuration, written alternately into two slots of their own by
//!   [`Action::PersistChannels`](crate::Action::PersistChannels); at power-up the host hands both
//!   slots to [`Controller::restore_channels`](crate::Controller::restore_channels).
//!
//! Records of the mode left behind are dropped and counted (Status `log_drops`), never sent in
//! the other mode: wide records may only go to a server that read the device's Capabilities.

use crate::channels::{ChannelBus, Channels, SetError};
use crate::record_log::WideSink;
use crate::wide_log::WideLog;
use crate::Reading;
use heapless::Vec;
use tek_proto::channel::faults::{ChannelFaults, FaultEntry, MAX_ENTRIES};
use tek_proto::channel::roles::Roles;
use tek_proto::channel::split::{
    digest_key, feature, Assembled, Capabilities, ChunkAck, ChunkState, ConfigChunk, Progress,
    Reassembler,
};
use tek_proto::crypto::Key;
use tek_proto::message::config::Config;

/// Records waiting to be sent, as the session's batches see them: the five-channel [`crate::log::Log`]
/// (Telemetry 0x01) or a [`WideLog`] (WideTelemetry 0x07).
pub trait Backlog {
    /// Whether this backlog sends WideTelemetry.
    fn wide(&self) -> bool;
    /// Records waiting.
    fn len(&self) -> usize;
    /// The sequence number of the oldest record held.
    fn oldest(&self) -> u32;
    /// Whether none waits.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The boot of the oldest waiting record when it is an earlier boot's (a log that survives
    /// restarts, PROTOCOL.md 18): such records go first, as Backlog.
    fn earlier_boot(&self) -> Option<u32> {
        None
    }
    /// Writes a telemetry message (type byte and body) of the records of `boot` (`None`: the
    /// current boot; `Some`: an earlier boot's, as a Backlog) from `first` (or the oldest still
    /// held) up to `last` into `out`, sealed at device time `now_s`. Returns the length and the
    /// sequence numbers included.
    fn write(
        &self,
        boot: Option<u32>,
        first: u32,
        last: u32,
        now_s: u32,
        out: &mut [u8],
    ) -> Option<(usize, u32, u32)>;
}

/// What the controller needs of its channel part (see the module docs).
pub trait ChannelRuntime {
    /// Power-up: the factory pool map, no split configuration, empty log, digest key of `key`.
    fn start(&mut self, now: u64, key: &[u8; 16]);
    /// What this device states in Capabilities.
    fn capabilities(&self) -> Capabilities;
    /// The version of the split configuration running, if one is.
    fn split_version(&self) -> Option<u32>;
    /// Advances the sample; `Some` when one completed: the reading its roles name.
    fn sample(&mut self, now: u64, bus: &mut dyn ChannelBus) -> Option<Reading>;
    /// When [`sample`](Self::sample) must run next.
    fn sample_at(&self) -> u64;
    /// The log interval changed (for the interval functions of computed channels).
    fn set_log_interval(&mut self, s: u32);
    /// Takes one ConfigChunk message (type byte and body) while the controller runs
    /// configuration `running`; `None`: malformed or out of range, dropped.
    fn chunk(&mut self, message: &[u8], running: u32) -> Option<Chunked>;
    /// The configuration of a [`Chunked::Ready`] transfer, decoded; `None` if it is invalid
    /// (discarded).
    fn ready_config(&mut self) -> Option<Config>;
    /// The controller applied the ready configuration `version`: it runs from now on.
    fn commit_ready(&mut self, version: u32, now: u64);
    /// The ready configuration was not applied (refused, or already rolled back once).
    fn discard_ready(&mut self);
    /// Follows the controller's configuration state: `version` runs (a single, non-split Config
    /// that replaced a split one; a rollback). Returns whether the flash record changed.
    fn sync(&mut self, version: u32, now: u64) -> bool;
    /// A record is due at device time `time_s` (split mode only): the last sample of every
    /// channel into the wide log. Returns whether one was logged.
    fn log_record(&mut self, time_s: u32) -> bool;
    /// As [`log_record`](Self::log_record), into `sink` (the telemetry log, when it keeps wide
    /// records: a flash log) instead of the part's own log. Returns whether one was logged.
    fn log_record_to(&mut self, time_s: u32, sink: &mut dyn WideSink) -> bool;
    /// The wide log.
    fn wide_log(&self) -> &dyn Backlog;
    /// Frees wide records through `through_seq`; returns how many.
    fn wide_ack(&mut self, through_seq: u32) -> usize;
    /// Wide records dropped (log full, or left behind by a change of mode).
    fn wide_drops(&self) -> u32;
    /// Whether a fault counter changed since the last ChannelFaults; `any`: whether any
    /// counter is above 0.
    fn faults_pending(&self) -> (bool, bool);
    /// Writes a ChannelFaults message (type byte and body) into `out` and marks the counters
    /// reported.
    fn faults_message(&mut self, out: &mut [u8]) -> Option<usize>;
    /// The flash record's pieces (to be written one after the other into slot `.0`).
    fn record(&mut self) -> (u8, [&[u8]; 4]);
    /// Restores from the two flash slots of the channel record, given the controller's running
    /// version. Returns whether a split configuration runs.
    fn restore(&mut self, slots: [&[u8]; 2], version: u32, now: u64) -> bool;
    /// The channels (for the host: values, faults).
    fn channel_count(&self) -> usize;
    /// Channel `ch`'s value in the last complete sample.
    fn value(&self, ch: usize) -> Option<i32>;
}

/// A chunk's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Answer this ChunkAck (receiving, digest mismatch, too large, or already running).
    Ack(ChunkAck),
    /// Complete and authentic: validate with [`ChannelRuntime::ready_config`], then apply.
    /// `received` is the ChunkAck's bit set.
    Ready {
        /// Configuration version.
        version: u32,
        /// Every chunk's bit.
        received: u32,
    },
}

/// How the controller holds its channel part.
pub trait ChannelSupport {
    /// The all-zero placeholder of `Controller::blank`.
    const BLANK: Self;
    /// The part, if this device has one.
    fn runtime(&mut self) -> Option<&mut dyn ChannelRuntime>;
    /// The part, read-only.
    fn runtime_ref(&self) -> Option<&dyn ChannelRuntime>;
}

/// A version 1 device: no channel part, no bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChannels;

impl ChannelSupport for NoChannels {
    const BLANK: Self = NoChannels;
    fn runtime(&mut self) -> Option<&mut dyn ChannelRuntime> {
        None
    }
    fn runtime_ref(&self) -> Option<&dyn ChannelRuntime> {
        None
    }
}

/// The flash record of the channel part.
///
/// ```text
/// 0   magic            "TC"
/// 2   format           u8 = 1
/// 3   flags            u8: bit 0 the running configuration is split (its bytes follow),
///                          bit 1 the configuration before is kept (a trial's fallback, and
///                          what a power cut between this record and the controller's may
///                          leave the controller's record naming),
///                          bit 2 that previous one is split (its bytes follow)
/// 4   sequence         u32, +1 per write (the slot written is sequence % 2)
/// 8   running version  u32
/// 12  running length   u16
/// 14  previous version u32
/// 18  previous length  u16
/// 20  running bytes    the assembled configuration (17.4)
/// ..  previous bytes
/// ..  crc32            IEEE CRC-32 of every byte before it
/// ```
/// Big-endian. A record whose magic, format, lengths or CRC do not check out is ignored.
pub mod record {
    /// Header bytes.
    pub const HEADER: usize = 20;
    pub(crate) const MAGIC: [u8; 2] = *b"TC";
    pub(crate) const FORMAT: u8 = 1;
    pub(crate) const RUNNING_SPLIT: u8 = 1;
    pub(crate) const HAS_PREVIOUS: u8 = 2;
    pub(crate) const PREVIOUS_SPLIT: u8 = 4;

    /// A record's header, checked.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Header {
        /// Flags.
        pub flags: u8,
        /// Sequence number.
        pub seq: u32,
        /// Running version.
        pub running: u32,
        /// Running bytes.
        pub running_len: usize,
        /// Previous version.
        pub previous: u32,
        /// Previous bytes.
        pub previous_len: usize,
    }

    /// Checks a slot's bytes: the header and the CRC over the lengths it states.
    pub fn check(b: &[u8]) -> Option<Header> {
        let h = b.get(..HEADER)?;
        if h[..2] != MAGIC || h[2] != FORMAT {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let header = Header {
            flags: h[3],
            seq: u32_at(4),
            running: u32_at(8),
            running_len: usize::from(u16::from_be_bytes([h[12], h[13]])),
            previous: u32_at(14),
            previous_len: usize::from(u16::from_be_bytes([h[18], h[19]])),
        };
        let end = HEADER + header.running_len + header.previous_len;
        let crc = b.get(end..end + 4)?;
        let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        (crate::persist::crc32(&b[..end]) == crc).then_some(header)
    }

    /// The newer valid record of two slots, with its slot.
    pub fn newest(slots: [&[u8]; 2]) -> Option<(Header, &[u8])> {
        let a = check(slots[0]).map(|h| (h, slots[0]));
        let b = check(slots[1]).map(|h| (h, slots[1]));
        match (a, b) {
            (Some(a), Some(b)) => Some(if (b.0.seq.wrapping_sub(a.0.seq) as i32) > 0 {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }
}

/// A channel part with a map of at most `MAP` bytes and `CH` channels, a wide log of `WIDE`
/// records and assembled configurations of at most `ASM` bytes.
pub struct ChannelPart<const MAP: usize, const CH: usize, const WIDE: usize, const ASM: usize> {
    caps: Capabilities,
    k_cfg: Key,
    reassembler: Reassembler<ASM>,
    /// A complete, authentic configuration waiting to be applied: (version, bytes).
    pending: Option<u32>,
    pending_bytes: Vec<u8, ASM>,
    /// The split configuration running.
    running: Option<u32>,
    running_bytes: Vec<u8, ASM>,
    /// The configuration a trial falls back to: (version, split).
    previous: Option<(u32, bool)>,
    previous_bytes: Vec<u8, ASM>,
    channels: Channels<MAP, CH>,
    wide: WideLog<WIDE, CH>,
    /// Wide records left behind by a change of mode.
    abandoned: u32,
    /// Record header and CRC of the last [`ChannelRuntime::record`].
    header: [u8; record::HEADER],
    crc: [u8; 4],
    seq: u32,
}

impl<const MAP: usize, const CH: usize, const WIDE: usize, const ASM: usize>
    ChannelPart<MAP, CH, WIDE, ASM>
{
    /// A part stating `caps` (its `max_channels`, `max_config` are capped at `CH` and `ASM`,
    /// and the split-configuration and wide-telemetry bits are set), running the pool map.
    /// Boxed or in a `static` on a device: it holds four configuration buffers and the log.
    pub fn new(caps: Capabilities) -> Self {
        ChannelPart {
            caps: Self::stated(caps),
            k_cfg: Key([0; 16]),
            reassembler: Reassembler::new(),
            pending: None,
            pending_bytes: Vec::new(),
            running: None,
            running_bytes: Vec::new(),
            previous: None,
            previous_bytes: Vec::new(),
            channels: Channels::new(0),
            wide: WideLog::new(),
            abandoned: 0,
            header: [0; record::HEADER],
            crc: [0; 4],
            seq: 0,
        }
    }

    /// What [`new`](Self::new) gives, in place: every field set anew, whatever the part held
    /// (a device's part lives in a `static` whose initial bytes are a placeholder, and is far
    /// larger than its stack, so it is never built by value).
    pub fn init(&mut self, caps: Capabilities) {
        self.caps = Self::stated(caps);
        self.k_cfg = Key([0; 16]);
        self.forget_configurations();
        self.channels.reset(0);
        self.header = [0; record::HEADER];
        self.crc = [0; 4];
        self.seq = 0;
    }

    /// No configuration half-received, pending, running or kept, no wide record, nothing
    /// counted as abandoned: what both a new part and a power-up begin with.
    fn forget_configurations(&mut self) {
        self.reassembler.reset();
        self.pending = None;
        self.pending_bytes.clear();
        self.running = None;
        self.running_bytes.clear();
        self.previous = None;
        self.previous_bytes.clear();
        // In place: a device's log is larger than its stack.
        self.wide.clear();
        self.abandoned = 0;
    }

    /// `caps` as the part states them: the split-configuration and wide-telemetry bits set,
    /// `max_channels` and `max_config` capped at `CH` and `ASM`.
    fn stated(caps: Capabilities) -> Capabilities {
        let mut caps = caps;
        caps.features |= feature::SPLIT_CONFIG | feature::WIDE_TELEMETRY;
        caps.max_channels = caps.max_channels.min(CH.min(128) as u8).max(1);
        caps.max_config = caps.max_config.min(ASM.min(usize::from(u16::MAX)) as u16);
        caps
    }

    /// How many times a Modbus read that timed out or failed its CRC is sent again within the
    /// sample (`Channels::modbus_retries`: the host's choice for its line), for every map
    /// from now on.
    pub fn set_modbus_retries(&mut self, retries: u8) {
        self.channels.modbus_retries = retries;
    }

    /// The channels and their state.
    pub fn channels(&self) -> &Channels<MAP, CH> {
        &self.channels
    }

    /// The version and assembled bytes of a [`Chunked::Ready`] transfer not yet committed or
    /// discarded (for checks from outside: tests, the fuzzer).
    pub fn ready_bytes(&self) -> Option<(u32, &[u8])> {
        Some((self.pending?, &self.pending_bytes))
    }

    /// Runs assembled configuration `bytes` (validated before), or the pool map for `None`.
    fn run(
        channels: &mut Channels<MAP, CH>,
        bytes: Option<&[u8]>,
        now: u64,
    ) -> Result<(), SetError> {
        match bytes {
            Some(b) => match Assembled::parse(b) {
                Ok(a) => channels.set_map(a.map.as_bytes(), a.items, now),
                Err(_) => Err(SetError::TooLarge(b.len())),
            },
            None => channels.set_map(&crate::channels::POOL_MAP, &[], now),
        }
    }

    /// Runs the running bytes as configuration `version`; the pool map if they do not run.
    fn run_running(&mut self, version: u32, now: u64) -> bool {
        if Self::run(&mut self.channels, Some(&self.running_bytes), now).is_ok() {
            self.running = Some(version);
            true
        } else {
            self.running = None;
            self.running_bytes.clear();
            let _ = Self::run(&mut self.channels, None, now);
            false
        }
    }

    /// One parsed chunk.
    fn take_chunk(&mut self, chunk: &ConfigChunk<'_>, running: u32) -> Chunked {
        let all = if chunk.count >= 32 {
            u32::MAX
        } else {
            (1u32 << chunk.count) - 1
        };
        if chunk.version == running && self.running == Some(running) {
            // Already running it: accepted, without touching flash (17.4).
            return Chunked::Ack(ChunkAck {
                version: running,
                state: ChunkState::Accepted,
                received: all,
            });
        }
        if usize::from(chunk.total) > usize::from(self.caps.max_config) {
            self.reassembler.reset();
            return Chunked::Ack(ChunkAck {
                version: chunk.version,
                state: ChunkState::TooLarge,
                received: 0,
            });
        }
        match self.reassembler.push(&self.k_cfg, chunk) {
            Progress::Partial(a) | Progress::DigestMismatch(a) | Progress::TooLarge(a) => {
                Chunked::Ack(a)
            }
            Progress::Complete(version, bytes) => {
                self.pending_bytes.clear();
                // Fits: the reassembler's buffer is as large as this one.
                let _ = self.pending_bytes.extend_from_slice(bytes);
                self.pending = Some(version);
                Chunked::Ready {
                    version,
                    received: all,
                }
            }
        }
    }

    /// The running mode changes: wide records waiting are dropped, and counted.
    fn leave_split(&mut self) {
        let n = self.wide.len();
        if n > 0 {
            self.wide.ack_through(u32::MAX);
            self.abandoned = self.abandoned.saturating_add(n as u32);
        }
    }
}

/// The part is the wide backlog: its log, batched over the channels of the running map.
impl<const MAP: usize, const CH: usize, const WIDE: usize, const ASM: usize> Backlog
    for ChannelPart<MAP, CH, WIDE, ASM>
{
    fn wide(&self) -> bool {
        true
    }
    fn len(&self) -> usize {
        self.wide.len()
    }
    fn oldest(&self) -> u32 {
        self.wide.first_seq()
    }
    fn write(
        &self,
        _boot: Option<u32>,
        _first: u32,
        last: u32,
        now_s: u32,
        out: &mut [u8],
    ) -> Option<(usize, u32, u32)> {
        // Always from the oldest held: records only ever leave from the front (acknowledged,
        // or dropped from a full log), so the oldest is the first of the batch in flight or
        // the one after those that were dropped meanwhile.
        let (first, through, n) =
            self.wide
                .batch_through(self.channels.count(), last, now_s, out)?;
        Some((n, first, through))
    }
}

impl<const MAP: usize, const CH: usize, const WIDE: usize, const ASM: usize> ChannelSupport
    for Option<ChannelPart<MAP, CH, WIDE, ASM>>
{
    // `Option`, so that `Controller::blank` has a constant: a part is built by `new` and put in
    // place before boot (`Controller::with_channels`).
    const BLANK: Self = None;
    fn runtime(&mut self) -> Option<&mut dyn ChannelRuntime> {
        self.as_mut().map(|p| p as &mut dyn ChannelRuntime)
    }
    fn runtime_ref(&self) -> Option<&dyn ChannelRuntime> {
        self.as_ref().map(|p| p as &dyn ChannelRuntime)
    }
}

impl<const MAP: usize, const CH: usize, const WIDE: usize, const ASM: usize> ChannelRuntime
    for ChannelPart<MAP, CH, WIDE, ASM>
{
    fn start(&mut self, now: u64, key: &[u8; 16]) {
        self.k_cfg = digest_key(&Key(*key));
        self.forget_configurations();
        let _ = Self::run(&mut self.channels, None, now);
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn split_version(&self) -> Option<u32> {
        self.running
    }

    fn sample(&mut self, now: u64, bus: &mut dyn ChannelBus) -> Option<Reading> {
        self.channels
            .poll(now, bus)
            .then(|| self.channels.reading())
    }

    fn sample_at(&self) -> u64 {
        self.channels.poll_at()
    }

    fn set_log_interval(&mut self, s: u32) {
        self.channels.set_log_interval(s);
    }

    fn chunk(&mut self, message: &[u8], running: u32) -> Option<Chunked> {
        let chunk = &ConfigChunk::parse(message.get(1..)?).ok()?;
        Some(self.take_chunk(chunk, running))
    }

    fn ready_config(&mut self) -> Option<Config> {
        self.pending?;
        let ok = Assembled::parse(&self.pending_bytes).ok().and_then(|a| {
            let count = a.map.channel_count();
            let fits = count <= CH
                && a.map.as_bytes().len() <= MAP
                && Roles::from_items(a.items, count).is_ok()
                && self.caps.can_run(&a);
            fits.then(|| Config::parse_items(a.items).ok()).flatten()
        });
        if ok.is_none() {
            self.discard_ready();
        }
        ok
    }

    fn commit_ready(&mut self, version: u32, now: u64) {
        if self.pending.take() != Some(version) {
            return;
        }
        // What ran so far is the configuration before (a trial's fallback; see `sync`).
        core::mem::swap(&mut self.previous_bytes, &mut self.running_bytes);
        self.previous = self.running.map(|v| (v, true));
        core::mem::swap(&mut self.running_bytes, &mut self.pending_bytes);
        self.pending_bytes.clear();
        // Records of the old map would be read as the new map's channels: they go.
        self.leave_split();
        // Validated by `ready_config`, so it runs; else the pool map rather than none.
        self.run_running(version, now);
    }

    fn discard_ready(&mut self) {
        self.pending = None;
        self.pending_bytes.clear();
    }

    fn sync(&mut self, version: u32, now: u64) -> bool {
        if self.running == Some(version) {
            return false;
        }
        // A rollback to the split configuration before, a single Config replacing the split
        // one, or a rollback from a single Config to the split one before it.
        let back = matches!(self.previous, Some((v, true)) if v == version);
        if !back && self.running.is_none() {
            return false;
        }
        self.leave_split();
        // What ran becomes the configuration before (its bytes, if it was split), kept even
        // when no trial runs: the channel record is written before the controller's record, so
        // after a power cut between the two the controller's record may still name it
        // (`restore` finds it here).
        let before = self.running;
        core::mem::swap(&mut self.running_bytes, &mut self.previous_bytes);
        self.previous = before.map(|v| (v, true));
        if back {
            self.run_running(version, now);
        } else {
            self.running = None;
            self.running_bytes.clear();
            let _ = Self::run(&mut self.channels, None, now);
        }
        true
    }

    fn log_record(&mut self, time_s: u32) -> bool {
        if self.running.is_none() {
            return false;
        }
        let mut values = [None; CH];
        self.channels.record(&mut values);
        self.wide.push(time_s, &values);
        self.channels.close_interval();
        true
    }

    fn log_record_to(&mut self, time_s: u32, sink: &mut dyn WideSink) -> bool {
        if self.running.is_none() {
            return false;
        }
        let mut values = [None; CH];
        self.channels.record(&mut values);
        self.channels.close_interval();
        // The map's channels only: a record's channel count is its batch's channel set.
        let n = self.channels.count().min(CH);
        sink.push_wide(time_s, &values[..n])
    }

    fn wide_log(&self) -> &dyn Backlog {
        self
    }

    fn wide_ack(&mut self, through_seq: u32) -> usize {
        self.wide.ack_through(through_seq)
    }

    fn wide_drops(&self) -> u32 {
        self.wide.drops().saturating_add(self.abandoned)
    }

    fn faults_pending(&self) -> (bool, bool) {
        let mut one = [FaultEntry {
            channel: 0,
            errors: 0,
            last: tek_proto::channel::faults::Fault::Timeout,
        }];
        (
            self.channels.faults_changed(),
            self.channels.faults(&mut one) > 0,
        )
    }

    fn faults_message(&mut self, out: &mut [u8]) -> Option<usize> {
        let mut entries = [FaultEntry {
            channel: 0,
            errors: 0,
            last: tek_proto::channel::faults::Fault::Timeout,
        }; MAX_ENTRIES];
        let n = self.channels.faults(&mut entries);
        let (head, body) = out.split_first_mut()?;
        *head = tek_proto::channel::code::CHANNEL_FAULTS;
        let len = ChannelFaults::emit(&entries[..n], body)?;
        self.channels.faults_reported();
        Some(1 + len)
    }

    fn record(&mut self) -> (u8, [&[u8]; 4]) {
        self.seq = self.seq.wrapping_add(1);
        let (prev_v, prev_split) = self.previous.unwrap_or((0, false));
        let prev_bytes: &[u8] = if prev_split {
            &self.previous_bytes
        } else {
            &[]
        };
        let run_bytes: &[u8] = if self.running.is_some() {
            &self.running_bytes
        } else {
            &[]
        };
        let mut flags = 0;
        if self.running.is_some() {
            flags |= record::RUNNING_SPLIT;
        }
        if self.previous.is_some() {
            flags |= record::HAS_PREVIOUS;
        }
        if prev_split {
            flags |= record::PREVIOUS_SPLIT;
        }
        let h = &mut self.header;
        h[..2].copy_from_slice(&record::MAGIC);
        h[2] = record::FORMAT;
        h[3] = flags;
        h[4..8].copy_from_slice(&self.seq.to_be_bytes());
        h[8..12].copy_from_slice(&self.running.unwrap_or(0).to_be_bytes());
        h[12..14].copy_from_slice(&(run_bytes.len() as u16).to_be_bytes());
        h[14..18].copy_from_slice(&prev_v.to_be_bytes());
        h[18..20].copy_from_slice(&(prev_bytes.len() as u16).to_be_bytes());
        let crc = crate::persist::crc32_parts(&[&self.header, run_bytes, prev_bytes]);
        self.crc = crc.to_be_bytes();
        (
            (self.seq % 2) as u8,
            [&self.header, run_bytes, prev_bytes, &self.crc],
        )
    }

    fn restore(&mut self, slots: [&[u8]; 2], version: u32, now: u64) -> bool {
        let Some((h, b)) = record::newest(slots) else {
            return false;
        };
        self.seq = h.seq;
        let run = &b[record::HEADER..record::HEADER + h.running_len];
        let prev = &b[record::HEADER + h.running_len..][..h.previous_len];
        let take = |dst: &mut Vec<u8, ASM>, src: &[u8]| {
            dst.clear();
            dst.extend_from_slice(src).is_ok()
        };
        let prev_split = h.flags & record::PREVIOUS_SPLIT != 0;
        // The configuration before: a trial's fallback (`previous`), or the one the
        // controller's record may still name after a power cut (see `sync`).
        if h.flags & record::HAS_PREVIOUS != 0
            && (!prev_split || take(&mut self.previous_bytes, prev))
        {
            self.previous = Some((h.previous, prev_split));
        }
        if h.flags & record::RUNNING_SPLIT != 0 && h.running == version {
            if take(&mut self.running_bytes, run) && self.run_running(version, now) {
                return true;
            }
            self.running_bytes.clear();
        } else if h.flags & record::HAS_PREVIOUS != 0 && prev_split && h.previous == version {
            // Power was cut after a rollback to a split configuration was decided but before
            // it was written: the controller runs the previous version.
            if take(&mut self.running_bytes, prev) && self.run_running(version, now) {
                self.previous = None;
                self.previous_bytes.clear();
                return true;
            }
            self.running_bytes.clear();
        }
        false
    }

    fn channel_count(&self) -> usize {
        self.channels.count()
    }

    fn value(&self, ch: usize) -> Option<i32> {
        self.channels.value(ch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Part = ChannelPart<256, 8, 16, 1024>;

    fn caps() -> Capabilities {
        Capabilities {
            features: 0,
            max_channels: 8,
            max_buses: 1,
            max_config: 1024,
            max_program: 32,
        }
    }

    proptest! {
        /// Whatever flash holds (erased, torn, corrupt), restoring never panics, and only a
        /// record whose CRC checks out is used.
        #[test]
        fn restoring_any_bytes_never_panics(
            a in proptest::collection::vec(any::<u8>(), 0..600),
            b in proptest::collection::vec(any::<u8>(), 0..600),
            version in any::<u32>(),
        ) {
            let mut p = std::boxed::Box::new(Part::new(caps()));
            p.start(0, &[7; 16]);
            let runs = p.restore([&a, &b], version, 0);
            prop_assert!(!runs || record::newest([&a, &b]).is_some());
            // Any bytes as a ConfigChunk: dropped or answered, never a panic, never applied.
            if let Some(Chunked::Ready { .. }) = p.chunk(&b, version) {
                prop_assert!(p.ready_config().is_none() || b.len() > 17);
            }
            prop_assert!(p.split_version().is_none() || runs);
        }
    }

    /// Applies the pool map (no items) as split configuration `version`.
    fn apply(p: &mut Part, version: u32) {
        let mut assembled = std::vec![0u8, 0];
        assembled.extend_from_slice(&crate::channels::POOL_MAP);
        let k = digest_key(&Key([7; 16]));
        let c = ConfigChunk::split(&k, version, &assembled, 0).unwrap();
        let m = tek_proto::channel::ChannelMessage::ConfigChunk(c);
        let mut b = std::vec![0u8; m.buffer_len()];
        m.emit(&mut b).unwrap();
        assert!(matches!(p.chunk(&b, 0), Some(Chunked::Ready { .. })));
        assert!(p.ready_config().is_some());
        p.commit_ready(version, 0);
        assert_eq!(p.split_version(), Some(version));
    }

    /// After a rollback the configuration before is the one that failed, under its own
    /// version: the record never names the restored version for the failed bytes.
    #[test]
    fn a_rollback_keeps_the_failed_configuration_under_its_own_version() {
        let mut p = std::boxed::Box::new(Part::new(caps()));
        p.start(0, &[7; 16]);
        apply(&mut p, 7);
        apply(&mut p, 8);
        assert_eq!(p.previous.map(|x| x.0), Some(7));
        assert!(p.sync(7, 0), "rolled back to 7");
        assert_eq!(p.split_version(), Some(7));
        assert_eq!(p.previous, Some((8, true)));
        let (_, pieces) = p.record();
        let h = record::check(&pieces.concat()).unwrap();
        assert_eq!((h.running, h.previous), (7, 8));
        // A single Config then replaces it: 7 is kept as the configuration before.
        assert!(p.sync(20, 0));
        assert_eq!((p.split_version(), p.previous), (None, Some((7, true))));
        assert!(!p.sync(21, 0), "single to single changes nothing");
        // ... and a rollback to 7 runs it again.
        assert!(p.sync(7, 0));
        assert_eq!((p.split_version(), p.previous), (Some(7), None));
    }

    /// `init` over a part that ran a split configuration and logged gives what `new` gives
    /// (a device sets its part up in place), and the part runs configurations again after it.
    #[test]
    fn init_in_place_is_a_new_part() {
        let mut p = std::boxed::Box::new(Part::new(caps()));
        p.start(0, &[7; 16]);
        apply(&mut p, 7);
        p.channels.sample_every_ms = 1;
        assert!(p.log_record(60));
        p.record();
        p.init(caps());
        let mut fresh = std::boxed::Box::new(Part::new(caps()));
        assert_eq!(p.capabilities(), fresh.capabilities());
        assert_eq!((p.split_version(), p.previous), (None, None));
        assert_eq!((p.wide_log().len(), p.wide_drops()), (0, 0));
        assert!(p.ready_bytes().is_none());
        assert_eq!(p.channel_count(), 5, "the pool map");
        assert_eq!(
            p.channels().sample_every_ms,
            crate::channels::SAMPLE_EVERY_MS
        );
        assert_eq!(p.channels().map(), fresh.channels().map());
        assert_eq!(p.record().1.concat(), fresh.record().1.concat());
        p.set_modbus_retries(2);
        p.start(0, &[7; 16]);
        apply(&mut p, 8);
        assert_eq!(p.channels().modbus_retries, 2, "kept across maps");
    }

    #[test]
    fn a_record_round_trips_and_a_flipped_bit_is_refused() {
        let mut p = std::boxed::Box::new(Part::new(caps()));
        p.start(0, &[7; 16]);
        let (slot, pieces) = p.record();
        let bytes: std::vec::Vec<u8> = pieces.concat();
        assert_eq!(slot, 1);
        let h = record::check(&bytes).unwrap();
        assert_eq!((h.seq, h.flags, h.running_len), (1, 0, 0));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(record::check(&bad).is_none(), "bit flipped at {i}");
        }
        // The newer of two valid slots wins, across the sequence number's wrap too.
        let (_, second) = p.record();
        let second: std::vec::Vec<u8> = second.concat();
        assert_eq!(record::newest([&second, &bytes]).unwrap().0.seq, 2);
        assert_eq!(record::newest([&bytes, &second]).unwrap().0.seq, 2);
        assert!(record::newest([&[0xFF; 64], &[]]).is_none());
    }
}
