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

/// The newest configuration saved for a device.
pub(crate) struct Desired {
    pub version: u32,
    /// Its item list as Config 0x82 carries it, encoded once when the version is loaded: a
    /// configured fleet holds one per device for as long as it runs, and the encoding is ~150
    /// bytes where the decoded `Config` is ~750 (heapless strings at their maximum length).
    /// `None` if it does not encode (saved configurations are validated; such a one is never
    /// sent).
    pub items: Option<Box<[u8]>>,
    /// Its keepalive interval: every datagram's online test reads it.
    pub keepalive_s: u16,
    pub state: ConfigState,
    /// The assembled configuration (items and channel map) when the version has a channel map
    /// other than the factory one: it goes out only as ConfigChunks (`udp/split.rs`).
    pub assembled: Option<Box<[u8]>>,
    /// Chunks the device holds, from its latest ChunkAck in this session (bit i: chunk i).
    pub chunks_held: u32,
    /// Chunks sent in this transfer (so re-sends are counted as such).
    pub chunks_sent: u32,
}

impl Desired {
    /// Version `version` of a device's configuration in state `state`, with its assembled form
    /// if it has a channel map (`udp/split.rs`).
    pub fn new(
        version: u32,
        config: &Config,
        state: ConfigState,
        assembled: Option<Vec<u8>>,
    ) -> Box<Desired> {
        let mut buf = [0u8; tek_proto::MAX_DATAGRAM];
        let items = ConfigItems::encode(config, &mut buf)
            .map(|i| Box::from(i.as_bytes()))
            .ok();
        Box::new(Desired {
            version,
            items,
            keepalive_s: config.keepalive_s,
            state,
            assembled: assembled.map(Vec::into_boxed_slice),
            chunks_held: 0,
            chunks_sent: 0,
        })
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
    /// Boxed: a configuration is ~750 bytes inline (heapless strings), most devices have none
    /// loaded or never change it, and the table holds 100,000 links (`tek bench fleet`).
    pub desired: Option<Box<Desired>>,
    /// Configuration version the device last reported running (this session).
    pub reported_version: Option<u32>,
    pub config_retry: Option<Retry>,
    pub commands: Vec<PendingCommand>,
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

/// How many acknowledged command ids a link remembers.
pub(crate) const DONE_COMMANDS: usize = 64;

impl Link {
    /// Keepalive interval the device runs with (from its newest configuration).
    pub fn keepalive(&self) -> Duration {
        let s = self
            .desired
            .as_ref()
            .map_or(Config::default().keepalive_s, |d| d.keepalive_s);
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

/// The sharded table.
pub(crate) struct LinkTable {
    shards: Vec<Mutex<HashMap<u32, Link>>>,
    live: AtomicUsize,
}

impl LinkTable {
    pub fn new(shards: usize) -> LinkTable {
        LinkTable {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            live: AtomicUsize::new(0),
        }
    }

    fn shard(&self, id: u32) -> MutexGuard<'_, HashMap<u32, Link>> {
        let i = (id as usize) % self.shards.len();
        // A panic while holding a shard lock is a bug; the data is still consistent enough to
        // go on serving the other devices of the shard.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the device's link (if loaded) under its shard lock. `f` must not block.
    pub fn with<R>(&self, id: u32, f: impl FnOnce(Option<&mut Link>) -> R) -> R {
        let mut shard = self.shard(id);
        let before = shard.get(&id).is_some_and(|l| l.live.is_some());
        let r = f(shard.get_mut(&id));
        let after = shard.get(&id).is_some_and(|l| l.live.is_some());
        self.account(before, after);
        r
    }

    /// Inserts a link unless one is there already.
    pub fn insert_if_absent(&self, id: u32, link: Link) {
        self.shard(id).entry(id).or_insert(link);
    }

    /// Visits every link, shard by shard.
    pub fn for_each(&self, mut f: impl FnMut(u32, &mut Link)) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (id, link) in shard.iter_mut() {
                let before = link.live.is_some();
                f(*id, link);
                self.account(before, link.live.is_some());
            }
        }
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

    /// Every device with a session costs one `Link` (plus the hash table's slack): keep it small
    /// so that 100,000 devices fit in well under 1 KiB each (`tek bench fleet`).
    #[test]
    fn a_link_stays_small() {
        let size = std::mem::size_of::<Link>();
        eprintln!("Link: {size} bytes");
        // 304 since the re-send schedule and the done command ids shrank (was 344).
        assert!(size <= 304, "Link is {size} bytes");
    }

    /// A configured device keeps its desired version for as long as the server runs: held as
    /// the items it is sent as, it costs a few hundred bytes, not the decoded `Config`'s ~750.
    #[test]
    fn a_desired_configuration_is_held_encoded_and_small() {
        let mut config = Config::default();
        for i in 1..=8 {
            let name = heapless::String::try_from(format!("ems{i}.pools.example.net").as_str());
            config.servers.push(name.unwrap()).unwrap();
        }
        config.gsm.apn = heapless::String::try_from("internet.provider.example").unwrap();
        config.keepalive_s = 120;
        let d = Desired::new(4, &config, ConfigState::Applied, None);
        let items = d.items.as_deref().expect("a valid configuration encodes");
        let held = std::mem::size_of::<Desired>() + items.len();
        eprintln!("Desired: {held} bytes ({} of items)", items.len());
        assert!(held <= 320, "a desired configuration holds {held} bytes");
        assert!(std::mem::size_of::<Config>() > 2 * held);
        assert_eq!(ConfigItems::parse(items).unwrap().to_config(), config);
        assert_eq!((d.version, d.keepalive_s), (4, 120));
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
        let d = Desired::new(2, &config, ConfigState::Pending, None);
        assert!(d.items.is_none());
    }
}
