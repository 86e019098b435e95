//! The session table: per device this server has heard from, its keys, its live session (if
//! any), its endpoint, and what is waiting to be delivered to it. Everything the hot path needs,
//! in memory, behind one mutex per shard (devices are spread over shards by id), so data
//! datagrams of different devices rarely contend and never touch the database.

use super::ratelimit::TokenBucket;
use crate::storage::ConfigState;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tek_proto::crypto::DeviceKeys;
use tek_proto::message::{Command, Config, ConfigItems};
use tek_proto::session::Session;

/// An established session.
pub(crate) struct Live {
    pub session: Session,
    /// Boot number (hello counter >> 32), part of every telemetry record's key.
    pub boot: u32,
    /// Source address and port of the last authenticated datagram.
    pub endpoint: SocketAddr,
    /// When the last authenticated datagram arrived.
    pub last_auth: Instant,
    /// What the device stated it can run in this session (PROTOCOL.md 17.1; `udp/channels.rs`).
    pub capabilities: Option<tek_proto::channel::split::Capabilities>,
}

/// A re-send schedule: next time, the interval after that, and how often it was sent in this
/// session. 24 bytes (the interval in milliseconds, not a 16-byte `Duration`): every link holds
/// one for its configuration, and the table holds 100,000 links (`tek bench fleet`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub next_at: Instant,
    interval_ms: u32,
    pub sends: u32,
}

/// A configuration or command is sent at most this often per session (PROTOCOL.md 11.3): a device
/// that never answers must not cost its owner more than a few kilobytes of cellular data.
pub(crate) const MAX_SENDS_PER_SESSION: u32 = 10;

impl Retry {
    /// A schedule whose next send is `interval` after `now` (an interval beyond `u32::MAX`
    /// milliseconds, ~49 days, is held as that).
    pub fn new(now: Instant, interval: Duration, sends: u32) -> Retry {
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        Retry {
            next_at: now + Duration::from_millis(u64::from(interval_ms)),
            interval_ms,
            sends,
        }
    }

    /// The interval that led to `next_at`.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_ms))
    }

    /// Whether another send is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_at <= now && self.sends < MAX_SENDS_PER_SESSION
    }
}

/// The newest configuration saved for a device, in one heap block: a configured fleet holds
/// one per device for as long as it runs (`tek bench fleet`: 100,000), so its fields, its item
/// list and its assembled form share one boxed byte slice (layout in [`field`]) instead of a
/// boxed struct plus a box per byte string, which cost two or three allocations' headers and
/// rounding per device. The item list is kept as Config 0x82 carries it, encoded once when the
/// version is loaded: ~150-250 bytes where the decoded `Config` is ~750 (heapless strings at
/// their maximum length).
pub(crate) struct Desired(Box<[u8]>);

/// Byte layout of a [`Desired`] block: a fixed header, then the encoded items (`ITEMS_LEN`
/// bytes, absent if they did not encode), then the assembled configuration (the rest, absent
/// unless the version has a channel map). All integers little-endian.
mod field {
    use core::ops::Range;
    pub const VERSION: Range<usize> = 0..4;
    /// Chunks the device holds, from its latest ChunkAck in this session (bit i: chunk i).
    pub const CHUNKS_HELD: Range<usize> = 4..8;
    /// Chunks sent in this transfer (so re-sends are counted as such).
    pub const CHUNKS_SENT: Range<usize> = 8..12;
    pub const KEEPALIVE_S: Range<usize> = 12..14;
    pub const STATE: usize = 14;
    pub const FLAGS: usize = 15;
    pub const ITEMS_LEN: Range<usize> = 16..18;
    pub const HEADER_LEN: usize = 18;
    /// `FLAGS`: the items encoded (sendable as Config 0x82).
    pub const HAS_ITEMS: u8 = 1;
    /// `FLAGS`: the version has an assembled form (sent only as ConfigChunks).
    pub const HAS_ASSEMBLED: u8 = 2;
}

impl Desired {
    /// Version `version` of a device's configuration in state `state`, with its assembled form
    /// if it has a channel map (`udp/split.rs`).
    pub fn new(
        version: u32,
        config: &Config,
        state: ConfigState,
        assembled: Option<Vec<u8>>,
    ) -> Desired {
        let mut buf = [0u8; tek_proto::MAX_DATAGRAM];
        // Saved configurations were validated; one that does not encode is held without items
        // and never sent. Items longer than the length field can say cannot occur (a datagram
        // is far smaller) but are treated the same way rather than truncated.
        let items = ConfigItems::encode(config, &mut buf)
            .ok()
            .map(|i| i.as_bytes())
            .filter(|i| u16::try_from(i.len()).is_ok());
        let items_len = items.map_or(0, <[u8]>::len);
        let assembled_len = assembled.as_ref().map_or(0, Vec::len);
        let mut block = Vec::with_capacity(field::HEADER_LEN + items_len + assembled_len);
        block.extend_from_slice(&version.to_le_bytes());
        block.extend_from_slice(&0u32.to_le_bytes()); // chunks held
        block.extend_from_slice(&0u32.to_le_bytes()); // chunks sent
        block.extend_from_slice(&config.keepalive_s.to_le_bytes());
        block.push(state_code(state));
        let flags = if items.is_some() { field::HAS_ITEMS } else { 0 }
            | if assembled.is_some() {
                field::HAS_ASSEMBLED
            } else {
                0
            };
        block.push(flags);
        block.extend_from_slice(&(items_len as u16).to_le_bytes());
        block.extend_from_slice(items.unwrap_or_default());
        block.extend_from_slice(assembled.as_deref().unwrap_or_default());
        // Exact capacity, so this does not reallocate.
        Desired(block.into_boxed_slice())
    }

    fn u32_at(&self, at: core::ops::Range<usize>) -> u32 {
        self.0
            .get(at)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    }

    fn set_u32_at(&mut self, at: core::ops::Range<usize>, v: u32) {
        if let Some(b) = self.0.get_mut(at) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn flag(&self, f: u8) -> bool {
        self.0.get(field::FLAGS).is_some_and(|flags| flags & f != 0)
    }

    /// Its version number.
    pub fn version(&self) -> u32 {
        self.u32_at(field::VERSION)
    }

    /// Its keepalive interval: every datagram's online test reads it.
    pub fn keepalive_s(&self) -> u16 {
        self.0
            .get(field::KEEPALIVE_S)
            .and_then(|b| b.try_into().ok())
            .map_or(Config::default().keepalive_s, u16::from_le_bytes)
    }

    /// What became of it so far.
    pub fn state(&self) -> ConfigState {
        state_from_code(self.0.get(field::STATE).copied().unwrap_or(0))
    }

    /// Records what became of it (a ConfigAck, a ChunkAck refusal, a commit undone).
    pub fn set_state(&mut self, state: ConfigState) {
        if let Some(b) = self.0.get_mut(field::STATE) {
            *b = state_code(state);
        }
    }

    /// Chunks the device holds, from its latest ChunkAck in this session (bit i: chunk i).
    pub fn chunks_held(&self) -> u32 {
        self.u32_at(field::CHUNKS_HELD)
    }

    /// Records the chunks the device's latest ChunkAck says it holds.
    pub fn set_chunks_held(&mut self, bits: u32) {
        self.set_u32_at(field::CHUNKS_HELD, bits);
    }

    /// Chunks sent in this transfer (so re-sends are counted as such).
    pub fn chunks_sent(&self) -> u32 {
        self.u32_at(field::CHUNKS_SENT)
    }

    /// Records the chunks sent so far in this transfer.
    pub fn set_chunks_sent(&mut self, bits: u32) {
        self.set_u32_at(field::CHUNKS_SENT, bits);
    }

    /// Its item list as Config 0x82 carries it; `None` if it did not encode (never sent).
    pub fn items(&self) -> Option<&[u8]> {
        if !self.flag(field::HAS_ITEMS) {
            return None;
        }
        let len = self
            .0
            .get(field::ITEMS_LEN)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)?;
        self.0
            .get(field::HEADER_LEN..field::HEADER_LEN + usize::from(len))
    }

    /// The assembled configuration (items and channel map) when the version has a channel map
    /// other than the factory one: it goes out only as ConfigChunks (`udp/split.rs`).
    pub fn assembled(&self) -> Option<&[u8]> {
        if !self.flag(field::HAS_ASSEMBLED) {
            return None;
        }
        let items_len = self.items().map_or(0, <[u8]>::len);
        self.0.get(field::HEADER_LEN + items_len..)
    }

    /// Bytes it holds on the heap (one block).
    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.0.len()
    }
}

fn state_code(state: ConfigState) -> u8 {
    match state {
        ConfigState::Pending => 0,
        ConfigState::Applied => 1,
        ConfigState::AppliedAtReset => 2,
        ConfigState::RolledBack => 3,
    }
}

fn state_from_code(code: u8) -> ConfigState {
    match code {
        1 => ConfigState::Applied,
        2 => ConfigState::AppliedAtReset,
        3 => ConfigState::RolledBack,
        _ => ConfigState::Pending,
    }
}

/// A command waiting for its CommandAck.
pub(crate) struct PendingCommand {
    pub id: u32,
    pub command: Command,
    /// When it was queued (Unix seconds): it is dropped, never sent again, once
    /// `storage::commands::EXPIRE_AFTER_S` old.
    pub queued_at: i64,
    /// `None` until first sent in the current session.
    pub retry: Option<Retry>,
    /// Boot number of the session it was last sent in: a *reboot* counts as done once a Hello
    /// with a higher boot number arrives (PROTOCOL.md 11.3), so it is not sent again.
    pub sent_boot: Option<u32>,
}

/// Everything about one device on this server.
pub(crate) struct Link {
    pub keys: DeviceKeys,
    /// Highest hello counter accepted (or known to be accepted elsewhere).
    pub last_hello: Option<u64>,
    pub hello_bucket: TokenBucket,
    pub live: Option<Live>,
    /// One heap block ([`Desired`]), absent for a device without a saved configuration.
    pub desired: Option<Desired>,
    /// Configuration version the device last reported running (this session).
    pub reported_version: Option<u32>,
    pub config_retry: Option<Retry>,
    /// Commands waiting for their CommandAck (boxed, absent while there are none).
    pub commands: Commands,
    /// Ids of the latest commands the device acknowledged, so that the change feed, which may
    /// have read a command before its CommandAck was committed, does not queue it again.
    pub done_commands: DoneCommands,
}

/// The latest acknowledged command ids of a link (at most [`DONE_COMMANDS`]). Boxed, and absent
/// until the first: most devices never get a command, and an empty `VecDeque` inline would cost
/// every link 32 bytes where this costs 8.
// The box is the point: an absent `Option<Box<_>>` is 8 bytes, an empty `VecDeque` 32.
#[allow(clippy::box_collection)]
#[derive(Default)]
pub(crate) struct DoneCommands(Option<Box<VecDeque<u32>>>);

impl DoneCommands {
    /// Whether command `id` is among the remembered ones.
    pub fn contains(&self, id: &u32) -> bool {
        self.0.as_ref().is_some_and(|d| d.contains(id))
    }

    fn remember(&mut self, id: u32) {
        let done = self.0.get_or_insert_with(Default::default);
        if done.len() >= DONE_COMMANDS {
            done.pop_front();
        }
        done.push_back(id);
    }
}

/// The commands of a link waiting for their CommandAck. Boxed, and absent while there are none:
/// most devices have none most of the time, and an empty `Vec` inline would cost every link 24
/// bytes where this costs 8 (100,000 links in `tek bench fleet`). Reads and in-place updates go
/// through the slice it derefs to.
// The box is the point, as for `DoneCommands`.
#[allow(clippy::box_collection)]
#[derive(Default)]
pub(crate) struct Commands(Option<Box<Vec<PendingCommand>>>);

impl Commands {
    /// Queues one more.
    pub fn push(&mut self, c: PendingCommand) {
        self.0.get_or_insert_with(Default::default).push(c);
    }

    /// Keeps those for which `keep` is true; the box goes once none is left.
    pub fn retain(&mut self, keep: impl FnMut(&PendingCommand) -> bool) {
        if let Some(v) = self.0.as_mut() {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl std::ops::Deref for Commands {
    type Target = [PendingCommand];
    fn deref(&self) -> &[PendingCommand] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl std::ops::DerefMut for Commands {
    fn deref_mut(&mut self) -> &mut [PendingCommand] {
        self.0.as_deref_mut().map_or(&mut [], Vec::as_mut_slice)
    }
}

impl FromIterator<PendingCommand> for Commands {
    fn from_iter<I: IntoIterator<Item = PendingCommand>>(iter: I) -> Commands {
        let v: Vec<PendingCommand> = iter.into_iter().collect();
        Commands((!v.is_empty()).then(|| Box::new(v)))
    }
}

impl<'a> IntoIterator for &'a mut Commands {
    type Item = &'a mut PendingCommand;
    type IntoIter = std::slice::IterMut<'a, PendingCommand>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// How many acknowledged command ids a link remembers.
pub(crate) const DONE_COMMANDS: usize = 64;

impl Link {
    /// Keepalive interval the device runs with (from its newest configuration).
    pub fn keepalive(&self) -> Duration {
        let s = self
            .desired
            .as_ref()
            .map_or(Config::default().keepalive_s, Desired::keepalive_s);
        Duration::from_secs(u64::from(s))
    }

    /// Remembers that command `id` is finished, so the change feed does not queue it again.
    pub fn remember_done(&mut self, id: u32) {
        self.done_commands.remember(id);
    }

    /// Online: an authenticated datagram within 3 keepalive intervals.
    pub fn online(&self, now: Instant) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| now.saturating_duration_since(l.last_auth) <= 3 * self.keepalive())
    }
}

/// The sharded table. Each shard keeps its links side by side in one `Vec` and maps a device
/// id to an index into it. Why not a map holding the links: a hash table keeps spare buckets
/// (at most 7/8 full, and it doubles), and with the ~300-byte `Link` inline every spare bucket
/// cost as much as a device, ~70 bytes per device at 100,000 devices (`tek bench fleet`). Why
/// not a map of boxed links: 100,000 small long-lived blocks allocated during a burst of
/// handshakes pin the holes its transient allocations leave between them. Here a spare bucket
/// costs 8 bytes; the vector's spare capacity, once past glibc's mmap threshold, is address
/// space never touched, so not resident. Links are never removed, so indices stay valid. A
/// lookup is a hash probe and an index, under the same shard lock as before.
pub(crate) struct LinkTable {
    shards: Vec<Mutex<Shard>>,
    live: AtomicUsize,
}

struct Shard {
    /// Device id → index in `links`.
    index: HashMap<u32, u32>,
    links: Vec<Link>,
}

/// Links a shard reserves room for when it is made: just past glibc's mmap threshold (1 MiB,
/// fixed by `http/ratelimit.rs` `give_large_blocks_back`), so that the vector is its own
/// mapping from the first link on and grows by `mremap`. Grown from empty it would pass through
/// the heap (4, 8, ... 2,048 links: ~1.3 MB per shard freed on the way, 16 shards) in the
/// middle of a burst of handshakes, and those freed blocks get split up among short-lived and
/// long-lived small blocks. Room not yet used is address space, not resident memory.
pub(crate) const LINKS_RESERVED: usize = (1 << 20) / std::mem::size_of::<Link>() + 1;

impl Default for Shard {
    fn default() -> Shard {
        Shard {
            index: HashMap::new(),
            links: Vec::with_capacity(LINKS_RESERVED),
        }
    }
}

impl Shard {
    fn get_mut(&mut self, id: u32) -> Option<&mut Link> {
        let i = *self.index.get(&id)?;
        self.links.get_mut(i as usize)
    }

    fn is_live(&self, id: u32) -> bool {
        let i = self.index.get(&id);
        i.and_then(|&i| self.links.get(i as usize))
            .is_some_and(|l| l.live.is_some())
    }
}

impl LinkTable {
    pub fn new(shards: usize) -> LinkTable {
        LinkTable {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            live: AtomicUsize::new(0),
        }
    }

    fn shard(&self, id: u32) -> MutexGuard<'_, Shard> {
        let i = (id as usize) % self.shards.len();
        // A panic while holding a shard lock is a bug; the data is still consistent enough to
        // go on serving the other devices of the shard.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the device's link (if loaded) under its shard lock. `f` must not block.
    pub fn with<R>(&self, id: u32, f: impl FnOnce(Option<&mut Link>) -> R) -> R {
        let mut shard = self.shard(id);
        let before = shard.is_live(id);
        let r = f(shard.get_mut(id));
        let after = shard.is_live(id);
        self.account(before, after);
        r
    }

    /// Inserts a link unless one is there already.
    pub fn insert_if_absent(&self, id: u32, link: Link) {
        let mut shard = self.shard(id);
        if shard.index.contains_key(&id) {
            return;
        }
        // More than 2^32 links in one shard cannot be (device ids are 32 bits).
        let Ok(i) = u32::try_from(shard.links.len()) else {
            return;
        };
        shard.links.push(link);
        shard.index.insert(id, i);
    }

    /// Visits every link, shard by shard.
    pub fn for_each(&self, mut f: impl FnMut(u32, &mut Link)) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let Shard { index, links } = &mut *shard;
            for (&id, &i) in index.iter() {
                let Some(link) = links.get_mut(i as usize) else {
                    continue;
                };
                let before = link.live.is_some();
                f(id, link);
                self.account(before, link.live.is_some());
            }
        }
    }

    /// Bytes the table holds for its links and buckets that a process touches (the links'
    /// spare capacity is not counted: past the mmap threshold it is never made resident).
    #[cfg(test)]
    fn touched_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.index.capacity() * 8 / 7 * (std::mem::size_of::<(u32, u32)>() + 1)
                    + s.links.len() * std::mem::size_of::<Link>()
            })
            .sum()
    }

    fn account(&self, before: bool, after: bool) {
        match (before, after) {
            (false, true) => {
                self.live.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Sessions held.
    pub fn live_count(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every device with a session costs one `Link` in its own block plus a 16-byte bucket of
    /// the table (with its slack): keep both small so that 100,000 devices fit in well under
    /// 1 KiB each (`tek bench fleet`).
    #[test]
    fn a_link_stays_small() {
        let size = std::mem::size_of::<Link>();
        eprintln!("Link: {size} bytes");
        // 304 since the re-send schedule and the done command ids shrank (was 344); 312 since
        // the desired configuration is one boxed slice (a fat pointer) instead of a thin box to
        // a struct and its boxed slices; 296 since the pending commands are boxed and absent
        // while there are none (an empty `Vec` was 24 bytes).
        assert!(size <= 296, "Link is {size} bytes");
        assert_eq!(std::mem::size_of::<Commands>(), 8);
        // A shard's links are their own mapping from the first one on (see LINKS_RESERVED).
        assert!(LINKS_RESERVED * size > 1 << 20);
        assert!(Shard::default().links.capacity() >= LINKS_RESERVED);
        let table = LinkTable::new(1);
        table.insert_if_absent(7, link(Some(8)));
        table.insert_if_absent(7, link(None)); // already there: kept
        assert!(table.with(7, |l| l.is_some_and(|l| l.desired.is_some())));
        let mut seen = Vec::new();
        table.for_each(|id, l| seen.push((id, l.desired.as_ref().map(Desired::version))));
        assert_eq!(seen, [(7, Some(8))]);
    }

    /// A shard's links sit side by side and its buckets hold an index: at the fleet bench's
    /// 6,250 links per shard, the table costs a link's size plus a few bytes of buckets per
    /// device, not a link's size per spare bucket (~410 bytes per device with the links in the
    /// buckets, 342 with boxed links).
    #[test]
    fn the_table_costs_a_link_and_a_few_bytes_per_device() {
        let table = LinkTable::new(1);
        let n = 6_250;
        for id in 0..n {
            table.insert_if_absent(id, link(None));
        }
        table.insert_if_absent(3, link(Some(1))); // already there: kept
        assert!(table.with(3, |l| l.is_some_and(|l| l.desired.is_none())));
        assert!(table.with(n, |l| l.is_none()));
        let mut ids = Vec::new();
        table.for_each(|id, l| {
            l.reported_version = Some(id);
            ids.push(id);
        });
        ids.sort_unstable();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        assert!(table.with(4, |l| l.is_some_and(|l| l.reported_version == Some(4))));
        let per_device = table.touched_bytes() / n as usize;
        eprintln!("table: {per_device} bytes per device");
        assert!(per_device <= 296 + 16, "{per_device} bytes per device");
    }

    fn link(version: Option<u32>) -> Link {
        let now = Instant::now();
        Link {
            keys: DeviceKeys::new(tek_proto::crypto::Key([1; 16])),
            last_hello: None,
            hello_bucket: TokenBucket::new(4, now),
            live: None,
            desired: version
                .map(|v| Desired::new(v, &Config::default(), ConfigState::Pending, None)),
            reported_version: None,
            config_retry: None,
            commands: Commands::default(),
            done_commands: DoneCommands::default(),
        }
    }

    fn fleet_config() -> Config {
        let mut config = Config::default();
        for i in 1..=8 {
            let name = heapless::String::try_from(format!("ems{i}.pools.example.net").as_str());
            config.servers.push(name.unwrap()).unwrap();
        }
        config.gsm.apn = heapless::String::try_from("internet.provider.example").unwrap();
        config.keepalive_s = 120;
        config
    }

    /// A configured device keeps its desired version for as long as the server runs: held as
    /// the items it is sent as, in one heap block with its few fields, it costs a little more
    /// than its items, not the decoded `Config`'s ~750 bytes nor a struct and a slice in two
    /// blocks (48 + 245 bytes in 64 + 256-byte blocks before).
    #[test]
    fn a_desired_configuration_is_held_encoded_and_small() {
        let config = fleet_config();
        let d = Desired::new(4, &config, ConfigState::Applied, None);
        // One allocation: the type is exactly one boxed slice, nothing else on the heap.
        assert_eq!(
            std::mem::size_of::<Desired>(),
            std::mem::size_of::<Box<[u8]>>()
        );
        assert_eq!(std::mem::size_of::<Option<Desired>>(), 16);
        let items = d.items().expect("a valid configuration encodes");
        eprintln!("Desired: {} bytes ({} of items)", d.heap_len(), items.len());
        assert!(d.heap_len() <= items.len() + 18, "{} bytes", d.heap_len());
        assert!(
            d.heap_len() <= 270,
            "a desired configuration holds {} bytes",
            d.heap_len()
        );
        assert!(std::mem::size_of::<Config>() > 2 * d.heap_len());
        assert_eq!(ConfigItems::parse(items).unwrap().to_config(), config);
        assert_eq!(
            (d.version(), d.keepalive_s(), d.state()),
            (4, 120, ConfigState::Applied)
        );
        assert_eq!(d.assembled(), None);
    }

    /// The fields that change (state, the chunks of a transfer) are written in place and read
    /// back; the items and the assembled form are not disturbed.
    #[test]
    fn a_desired_configuration_keeps_its_fields_in_its_block() {
        let config = fleet_config();
        let assembled = vec![0xa5; 300];
        let mut d = Desired::new(
            u32::MAX,
            &config,
            ConfigState::Pending,
            Some(assembled.clone()),
        );
        assert_eq!(
            d.heap_len(),
            18 + d.items().unwrap().len() + 300,
            "one block"
        );
        for state in [
            ConfigState::Applied,
            ConfigState::AppliedAtReset,
            ConfigState::RolledBack,
            ConfigState::Pending,
        ] {
            d.set_state(state);
            assert_eq!(d.state(), state);
        }
        d.set_chunks_held(0x8000_0001);
        d.set_chunks_sent(0x7);
        assert_eq!((d.chunks_held(), d.chunks_sent()), (0x8000_0001, 0x7));
        assert_eq!((d.version(), d.keepalive_s()), (u32::MAX, 120));
        assert_eq!(d.assembled(), Some(&assembled[..]));
        assert_eq!(
            ConfigItems::parse(d.items().unwrap()).unwrap().to_config(),
            config
        );
        // An empty assembled form is still one (a flag, not a length, says so).
        let e = Desired::new(1, &config, ConfigState::Pending, Some(Vec::new()));
        assert_eq!(e.assembled(), Some(&[][..]));
    }

    /// Pending commands live in a box that exists only while there are some.
    #[test]
    fn commands_are_boxed_only_while_there_are_some() {
        let command = |id| PendingCommand {
            id,
            command: Command::SendStatus,
            queued_at: 0,
            retry: None,
            sent_boot: None,
        };
        let mut c: Commands = Vec::new().into_iter().collect();
        assert!(c.0.is_none() && c.is_empty());
        c.push(command(1));
        c.push(command(2));
        for p in &mut c {
            p.sent_boot = Some(p.id);
        }
        c[1].queued_at = 9;
        assert_eq!(
            c.iter()
                .map(|p| (p.id, p.sent_boot, p.queued_at))
                .collect::<Vec<_>>(),
            [(1, Some(1), 0), (2, Some(2), 9)]
        );
        c.retain(|p| p.id != 1);
        assert_eq!(c.len(), 1);
        assert!(c.0.is_some());
        c.retain(|_| false);
        assert!(c.0.is_none(), "the box goes with the last command");
        let c: Commands = (5..7).map(command).collect();
        assert_eq!(c.iter().map(|p| p.id).collect::<Vec<_>>(), [5, 6]);
    }

    #[test]
    fn done_commands_keep_the_latest_ids() {
        let mut done = DoneCommands::default();
        assert!(!done.contains(&1));
        for id in 1..=(DONE_COMMANDS as u32 + 1) {
            done.remember(id);
        }
        assert!(!done.contains(&1), "the oldest is forgotten");
        assert!(done.contains(&2) && done.contains(&(DONE_COMMANDS as u32 + 1)));
    }

    #[test]
    fn a_retry_keeps_its_interval_in_milliseconds() {
        let now = Instant::now();
        let r = Retry::new(now, Duration::from_millis(5_000), 1);
        assert_eq!(
            (r.next_at, r.interval(), r.sends),
            (now + Duration::from_secs(5), Duration::from_secs(5), 1)
        );
        assert!(!r.due(now) && r.due(now + Duration::from_secs(5)));
        assert_eq!(std::mem::size_of::<Option<Retry>>(), 24);
    }

    #[test]
    fn a_configuration_that_does_not_encode_is_held_as_none() {
        let config = Config {
            keepalive_s: 0, // out of range: never sent
            ..Config::default()
        };
        let d = Desired::new(2, &config, ConfigState::Pending, Some(vec![1, 2, 3]));
        assert!(d.items().is_none());
        // The assembled form follows the header directly then.
        assert_eq!(d.assembled(), Some(&[1, 2, 3][..]));
        assert_eq!((d.version(), d.state()), (2, ConfigState::Pending));
    }
}
