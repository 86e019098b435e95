//! The [`Controller`]: the parts of the crate composed into one poll-driven state machine.
//!
//! ## Driving it
//! ```text
//! let mut ctl = Controller::<crate::log::Log<LOG>>::new(setup, now);   // or, in place: blank() + boot(..)
//! loop {
//!     // feed whatever happened: ctl.receive(..), ctl.dns_answer(..), ctl.sensor(..), ...
//!     while let Some(action) = ctl.poll(now, &mut rng) { carry it out, in order }
//!     open/close UDP sockets to match ctl.ports();
//!     sleep until ctl.poll_at() or the next event
//! }
//! ```
//! `poll` never blocks and never fails; an action the host cannot carry out (a datagram lost,
//! a DNS query without answer) is covered by the protocol's timeouts. Datagrams that fail any
//! check are dropped silently: nothing is sent in reply and nothing changes but the traffic
//! counters and [`Stats::ignored`].
//!
//! ## Building it in place
//! With its telemetry log the controller is most of a small device's RAM (48 kB of 64 kB on the
//! LM3S6965), so it must never pass through the stack. [`Controller::blank`] is a `const`
//! placeholder whose bytes are all zero — a `static` of it sits in `.bss` and costs no flash —
//! and [`Controller::boot`] (or [`Controller::boot_from_flash`], which also reads the flash slots
//! itself, one at a time, into the controller's own buffer) powers it up in place, field by field;
//! the log is cleared by resetting its indices. [`Controller::new`] is `blank` + `boot` on a
//! value, so there is one power-up path, and booting again in place is a clean reset.
//!
//! ## Its parts
//! Each part owns its state and has a small poll of its own (time in, effects out); the
//! controller hands each the few facts it needs from the others and carries the results across
//! (docs/ARCHITECTURE.md, "The controller's parts", names where each behaviour is done):
//! * `connect::Connection` and `Hellos` — the server walk, the session it found, the Hellos;
//! * `session::Up` and `Outbox` — the session's traffic and what waits to be said;
//! * `transport::Transport` — the interfaces, Ethernet→GSM failover and the way back;
//! * `config::ConfigState` — the configuration, its trial and rollback, HALT, the flash record;
//! * `logging::Logging` — readings into the telemetry log;
//! * `plant::Plant` — the relays (thermostat, schedule, interlocks) and the server's clock;
//! * `effects::Effects` — the actions they ask for, handed out by [`Controller::poll`].
//!
//! What stays here reads several parts at once: the LED, the status report, a received
//! message's dispatch, the order of the polls.

use crate::channel_part::{Backlog, ChannelSupport, NoChannels};
use crate::channels::ChannelBus;
use crate::config::ConfigState;
use crate::connect::{Conn, Connection, Hellos, Servers};
use crate::effects::{Effect, Effects};
use crate::logging::Logging;
use crate::persist;
use crate::plant::Plant;
use crate::record_log::RecordLog;
use crate::session::{Context, Outbox};
use crate::status;
use crate::transport::{self, Probe, Transport};
use crate::{Action, Endpoint, Entropy, Iface, IpInfo, Led, Radio, Reading};
use heapless::{String, Vec};
use tek_proto::channel::split::Capabilities;
use tek_proto::message::config::{server_ok, MAX_SERVERS, MAX_TEXT};
use tek_proto::message::status::Status;
use tek_proto::session::Session;
use tek_proto::wire::data::{HEADER_LEN, MAX_MESSAGE};

pub use crate::logging::SENSOR_STALE_MS;
pub use crate::{Setup, Stats};

/// The controller's one datagram/record buffer: a datagram to send, a flash record to write, or
/// (at power-up) a flash slot being read. An action borrows it until the next `poll`, so one
/// buffer serves all three.
const SCRATCH_LEN: usize = if persist::MAX_LEN > tek_proto::MAX_DATAGRAM {
    persist::MAX_LEN
} else {
    tek_proto::MAX_DATAGRAM
};

/// The controller, with a telemetry log of `LOG` records (16 bytes each) and the channel part
/// `X` ([`NoChannels`]: a version 1 device; see [`crate::channel_part`]).
pub struct Controller<L: RecordLog, X: ChannelSupport = NoChannels> {
    firmware: [u8; 3],
    factory: Vec<String<MAX_TEXT>, MAX_SERVERS>,
    hellos: Hellos,
    cfg: ConfigState,
    transport: Transport,
    link: Connection,
    outbox: Outbox,
    logging: Logging<L>,
    plant: Plant,
    effects: Effects,
    led: Option<Led>,
    reset_pending: bool,
    stats: Stats,
    /// The channel part.
    channels: X,
    /// See [`SCRATCH_LEN`].
    scratch: [u8; SCRATCH_LEN],
}

impl<L: RecordLog, X: ChannelSupport> core::fmt::Debug for Controller<L, X> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Controller")
            .field("device_id", &self.hellos.device_id)
            .field("boot", &self.hellos.boot)
            .field("active", &self.transport.active)
            .field("conn", &self.link.conn)
            .field("config_version", &self.cfg.version)
            .field("log_len", &self.logging.log.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What power-up takes from a [`Setup`] besides the flash record.
struct PowerUp<'a> {
    device_id: u32,
    key: [u8; 16],
    factory_servers: &'a [&'a str],
    firmware: [u8; 3],
    halt: bool,
    has_gsm: bool,
}

impl<'a> PowerUp<'a> {
    fn of(s: &Setup<'a>) -> Self {
        PowerUp {
            device_id: s.device_id,
            key: s.key,
            factory_servers: s.factory_servers,
            firmware: s.firmware,
            halt: s.halt,
            has_gsm: s.has_gsm,
        }
    }
}

/// The records the session sends: the telemetry log while it holds any (records of before a
/// split configuration), else, while one runs, the channel part's wide log — or always the
/// telemetry log when it keeps the wide records too (a flash log: one queue of both kinds).
fn backlog<'a, L: RecordLog, X: ChannelSupport>(log: &'a L, channels: &'a X) -> &'a dyn Backlog {
    if log.holds_wide() {
        return log;
    }
    match channels.runtime_ref() {
        Some(p) if p.split_version().is_some() && log.is_empty() => p.wide_log(),
        _ => log,
    }
}

impl<L: RecordLog, X: ChannelSupport> Controller<L, X> {
    /// Powers up: [`blank`](Self::blank) + [`boot`](Self::boot) on a value. The first actions
    /// [`poll`](Self::poll) returns persist the incremented boot counter and configure Ethernet
    /// (DHCP unless fixed settings are stored and HALT is not held).
    pub fn new(setup: Setup<'_>, now: u64) -> Self {
        let mut ctl = Self::blank();
        ctl.boot(setup, now);
        ctl
    }

    /// As [`new`](Self::new), with the channel part `channels` (e.g.
    /// `Some(ChannelPart::new(caps))`; a device builds it in place instead, like the rest).
    pub fn new_with_channels(setup: Setup<'_>, channels: X, now: u64) -> Self {
        let mut ctl = Self::blank();
        ctl.channels = channels;
        ctl.boot(setup, now);
        ctl
    }

    /// As [`new_with_channels`](Self::new_with_channels), with the telemetry log `log` (e.g. a
    /// flash log recovered from flash; a device puts it in place with
    /// [`set_log`](Self::set_log) before [`boot`](Self::boot) instead).
    pub fn new_with_log(setup: Setup<'_>, channels: X, log: L, now: u64) -> Self {
        let mut ctl = Self::blank();
        ctl.channels = channels;
        ctl.logging.log = log;
        ctl.boot(setup, now);
        ctl
    }

    /// Takes the telemetry log out, leaving `log` in its place (a test's power cut: the flash
    /// outlives the controller).
    pub fn replace_log(&mut self, log: L) -> L {
        core::mem::replace(&mut self.logging.log, log)
    }

    /// Puts the telemetry log in place (before [`boot`](Self::boot): a log that survives
    /// restarts, recovered from flash, whose earlier boots' records then drain first).
    pub fn set_log(&mut self, log: L) {
        self.logging.log = log;
    }

    /// Puts the channel part in place (before [`boot`](Self::boot), which starts it): a device
    /// builds its part in a `static` of its own and hands it over here.
    pub fn set_channels(&mut self, channels: X) {
        self.channels = channels;
    }

    /// A controller that has not booted, for a `static` initialiser: every byte of it is zero,
    /// so the static lands in `.bss` and costs no flash (the firmware's size check verifies
    /// that its controller static is in `.bss`). Its field values are placeholders chosen for
    /// that — no key, no server, no configuration — and mean nothing: call
    /// [`boot`](Self::boot) or [`boot_from_flash`](Self::boot_from_flash) before anything else.
    pub const fn blank() -> Self {
        Controller {
            firmware: [0; 3],
            factory: Vec::new(),
            hellos: Hellos::BLANK,
            cfg: ConfigState::BLANK,
            transport: Transport::BLANK,
            link: Connection::BLANK,
            outbox: Outbox::BLANK,
            logging: Logging::BLANK,
            plant: Plant::BLANK,
            effects: Effects::BLANK,
            // `Some`: `None` is a non-zero niche value (4, after `Led`'s variants), which would
            // move the whole static into `.data`, i.e. into flash.
            led: Some(Led::Halt),
            reset_pending: false,
            stats: Stats::BLANK,
            channels: X::BLANK,
            scratch: [0; SCRATCH_LEN],
        }
    }

    /// Powers up in place, with the flash record in `setup.stored`: every field is set anew
    /// (whatever the controller held before — a blank or a running controller alike, so this is
    /// also a reset) and the log is emptied by resetting its indices. Nothing of the size of the
    /// controller or its log passes through the stack.
    pub fn boot(&mut self, mut setup: Setup<'_>, now: u64) {
        let found = setup.stored.take().map(|s| self.cfg.load(s));
        self.start(PowerUp::of(&setup), found, now);
    }

    /// Powers up in place like [`boot`](Self::boot), reading the flash record itself:
    /// `read(slot, buf)` must fill `buf` with the start of flash slot `slot` (0 or 1; erased
    /// bytes read as 0xFF) and return whether it could. The slots are read one at a time into the
    /// controller's own buffer, the newer valid one is picked by header and CRC
    /// ([`persist::check`]), and only that one is decoded, straight into place (the older one
    /// if the newer does not decode) — the same choice as [`persist::load`], without a decoded
    /// copy on the stack. `setup.stored` is not used. Returns the header of the record found
    /// (`None`: blank flash).
    pub fn boot_from_flash(
        &mut self,
        setup: Setup<'_>,
        read: &mut dyn FnMut(u8, &mut [u8]) -> bool,
        now: u64,
    ) -> Option<persist::Header> {
        // Only what power-up needs, so the setup (with room for a decoded record) is not kept
        // on a device's stack while flash is read.
        let power_up = PowerUp::of(&setup);
        drop(setup);
        let header = self
            .cfg
            .restore(read, &mut self.scratch[..persist::MAX_LEN]);
        self.start(power_up, header.map(|h| (h.seq, h.boot)), now);
        header
    }

    /// The one power-up path. `self.cfg` holds the version, configurations and rolled-back
    /// version of the flash record when `found` (its sequence number and boot counter) is
    /// `Some`; without a record the factory configuration is used.
    fn start(&mut self, setup: PowerUp<'_>, found: Option<(u32, u32)>, now: u64) {
        // Every field by name, without `..`: a field added later cannot be forgotten here.
        let Controller {
            firmware,
            factory,
            hellos,
            cfg,
            transport,
            link,
            outbox,
            logging,
            plant,
            effects,
            led,
            reset_pending,
            stats,
            channels,
            scratch: _, // written before every use (an action's bytes, a slot read)
        } = self;
        cfg.power_up(found.map(|f| f.0), setup.halt, now);
        let boot = found.map_or(0, |f| f.1).saturating_add(1);
        hellos.start(setup.device_id, setup.key, boot);
        *firmware = setup.firmware;
        factory.clear();
        for s in setup.factory_servers {
            if server_ok(s) {
                if let Ok(s) = String::try_from(*s) {
                    let _ = factory.push(s);
                }
            }
        }
        effects.start();
        // The boot counter is written before anything is sent.
        effects.persist();
        transport.start(now, cfg.eth_boot, setup.has_gsm, effects);
        link.start();
        outbox.start(now);
        logging.start(now, cfg.running.log_interval_s, boot);
        *led = None;
        *reset_pending = false;
        *stats = Stats::default();
        plant.start(now, &cfg.running);
        if let Some(part) = channels.runtime() {
            part.start(now, &setup.key);
            part.set_log_interval(u32::from(cfg.running.log_interval_s));
            // A device with a channel part takes ConfigChunks itself: it states so.
            outbox.capabilities = Some(part.capabilities());
        }
        // A log that survives restarts states so too, to have earlier boots' records taken
        // (PROTOCOL.md 18.1); without a channel part, with a map of the five pool channels.
        let features = logging.log.features();
        if features != 0 {
            let mut caps = outbox.capabilities.unwrap_or(Capabilities {
                features: 0,
                max_channels: 5,
                max_buses: 0,
                max_config: 0,
                max_program: 0,
            });
            caps.features |= features;
            outbox.capabilities = Some(caps);
        }
    }

    fn servers(&self) -> Servers<'_> {
        Servers::pick(&self.cfg.running.servers, &self.factory)
    }

    // ----- events -------------------------------------------------------------------------

    /// An interface's link went up or down (Ethernet carrier; GSM data connection).
    pub fn link(&mut self, _now: u64, iface: Iface, up: bool) {
        if self.transport.link(iface, up) {
            self.lost(iface);
        }
    }

    /// An interface got (or changed) its IP settings: a DHCP lease, fixed settings applied, or
    /// the modem's PPP link. Implies the link is up.
    pub fn ip_configured(&mut self, _now: u64, iface: Iface, info: IpInfo) {
        if self.transport.ip_configured(iface, info) {
            self.outbox.status_due = true;
        }
    }

    /// An interface lost its IP settings (lease expired, PPP down).
    pub fn ip_lost(&mut self, _now: u64, iface: Iface) {
        self.transport.net[iface.index()].ip = None;
        self.lost(iface);
    }

    fn lost(&mut self, iface: Iface) {
        self.link.lost(iface, self.transport.active);
        self.transport.lost(iface);
    }

    /// How often Ethernet is probed while on GSM (default [`transport::PROBE_EVERY_MS`], 10
    /// minutes); a test bench shortens it to see the way back within minutes. 0 restores the
    /// default.
    pub fn set_probe_interval(&mut self, ms: u32) {
        self.transport.probe_every_ms = ms;
    }

    /// What the device states it can run (PROTOCOL.md 17.1), sent as Capabilities at the start
    /// of every session before its first Status; `None` (the default after power-up): nothing
    /// is stated and the device is a version 1 device to every server, which then only ever
    /// sends it Config 0x82. The host states only what it carries out: bit 0 (split
    /// configurations) only once it takes ConfigChunks.
    pub fn set_capabilities(&mut self, caps: Option<tek_proto::channel::split::Capabilities>) {
        self.outbox.capabilities = caps;
    }

    /// Advances the channel part's sample through `bus` (a device with a channel part calls
    /// this instead of [`sensor`](Self::sensor), whenever [`sample_at`](Self::sample_at) passes
    /// or a bus received bytes, then polls): a completed sample is the reading the thermostat, the schedule
    /// and the interlocks act on, from the channels the roles name. Without a channel part it
    /// does nothing.
    pub fn sample(&mut self, now: u64, bus: &mut dyn ChannelBus) {
        let reading = self.channels.runtime().and_then(|p| p.sample(now, bus));
        if let Some(r) = reading {
            self.sensor(now, r);
        }
    }

    /// When [`sample`](Self::sample) must run next (`u64::MAX` without a channel part); a
    /// host waits for the earlier of this and [`poll_at`](Self::poll_at).
    pub fn sample_at(&self) -> u64 {
        self.channels
            .runtime_ref()
            .map_or(u64::MAX, |p| p.sample_at())
    }

    /// Restores the channel part from its two flash slots ([`Action::PersistChannels`]; erased
    /// bytes read as 0xFF), right after [`boot`](Self::boot) or
    /// [`boot_from_flash`](Self::boot_from_flash): the split configuration the controller's
    /// record says runs (and a trial's fallback) is running again. Returns whether a split
    /// configuration runs.
    pub fn restore_channels(&mut self, slot0: &[u8], slot1: &[u8], now: u64) -> bool {
        let version = self.cfg.version;
        self.channels
            .runtime()
            .is_some_and(|p| p.restore([slot0, slot1], version, now))
    }

    /// The channel part (values, faults, the split configuration running), if there is one.
    pub fn channel_part(&self) -> Option<&dyn crate::channel_part::ChannelRuntime> {
        self.channels.runtime_ref()
    }

    /// The modem's radio state and signal quality (0..=31, 99 unknown), for status and LEDs.
    pub fn modem_state(&mut self, _now: u64, radio: Radio, signal: u8) {
        self.transport.radio = radio;
        self.transport.signal = signal;
    }

    /// The answer to a [`Action::Resolve`]: the address, or `None` if the name did not resolve.
    pub fn dns_answer(&mut self, now: u64, token: u16, addr: Option<[u8; 4]>) {
        let addr = addr.filter(|a| *a != [0; 4]);
        let servers = Servers::pick(&self.cfg.running.servers, &self.factory);
        let active = self.transport.active;
        if !self.link.dns_answer(now, token, addr, active, servers) {
            self.transport.dns_answer(now, token, addr, servers);
        }
    }

    /// A sensor reading. The thermostat acts on it at once; the log takes the latest reading
    /// (and the mean power since the last record) at every logging interval.
    pub fn sensor(&mut self, now: u64, reading: Reading) {
        self.logging.sensor(now, reading);
        self.plant
            .update(now, &self.cfg.running, reading.water_cc, reading.air_cc);
    }

    // ----- poll ---------------------------------------------------------------------------

    /// Advances timers to `now` and returns the next action, or `None` when there is nothing to
    /// do before [`poll_at`](Self::poll_at). Call it until it returns `None`.
    pub fn poll(&mut self, now: u64, rng: &mut dyn Entropy) -> Option<Action<'_>> {
        self.advance(now, rng);
        if let Some(e) = self.effects.pop() {
            return Some(self.effect_action(e));
        }
        if let Some((iface, from_port, to, n)) = self.next_send(now, rng) {
            transport::count(&mut self.transport.traffic, iface, true, n);
            return Some(Action::Send {
                iface,
                from_port,
                to,
                bytes: &self.scratch[..n],
            });
        }
        if self.link.restart_pending {
            self.link.restart_pending = false;
            self.link.restart_at(0);
            return self.poll(now, rng);
        }
        if self.reset_pending {
            self.reset_pending = false;
            return Some(Action::Reset);
        }
        None
    }

    /// When [`poll`](Self::poll) must be called next at the latest (milliseconds since
    /// power-up); it may be now or in the past. Events (datagrams, DNS answers, link changes)
    /// call for a poll as well.
    pub fn poll_at(&self) -> u64 {
        if !self.effects.is_empty() || self.link.restart_pending || self.reset_pending {
            return 0;
        }
        let mut at = self
            .logging
            .poll_at()
            .min(self.cfg.poll_at())
            .min(self.transport.poll_at())
            .min(self.link.poll_at());
        at = at.min(self.plant.poll_at(&self.cfg.running));
        if let Some(t) = self.failover_at() {
            at = at.min(t);
        }
        if let Conn::Up(up) = &self.link.conn {
            let cx = Context::new(self.backlog(), self.cfg.version, &self.cfg.running);
            at = at
                .min(up.poll_at(self.outbox.pending(), &cx))
                .min(self.outbox.next_status_at);
        }
        at
    }

    /// See [`backlog`].
    fn backlog(&self) -> &dyn Backlog {
        backlog(&self.logging.log, &self.channels)
    }

    /// The local UDP ports the controller expects datagrams on (at most two: the session or
    /// attempt on the interface in use, and the Ethernet probe while on GSM). Datagrams to other
    /// ports would be dropped anyway.
    pub fn ports(&self) -> [Option<(Iface, u16)>; 2] {
        let probe = match &self.transport.probe {
            Probe::Hello(a) if a.port != 0 => Some((a.iface, a.port)),
            _ => None,
        };
        [self.link.port(), probe]
    }

    fn failover_at(&self) -> Option<u64> {
        self.transport
            .failover_at(self.link.is_up(), self.cfg.running.gsm_failover_s)
    }

    fn effect_action(&mut self, e: Effect) -> Action<'_> {
        match e {
            Effect::Resolve {
                iface,
                token,
                server,
            } => Action::Resolve {
                iface,
                token,
                name: self.servers().target(server).map_or("", |s| s.host),
            },
            Effect::ConfigureEthernet(s) => Action::ConfigureEthernet(s),
            Effect::ModemUp => Action::ModemUp {
                apn: &self.cfg.running.gsm.apn,
                login: &self.cfg.running.gsm.login,
                password: &self.cfg.running.gsm.password,
            },
            Effect::ModemDown => Action::ModemDown,
            Effect::SetRelay { relay, on } => Action::SetRelay { relay, on },
            Effect::Led(l) => Action::Led(l),
            Effect::Persist => {
                let (slot, n) = self.cfg.record(self.hellos.boot, &mut self.scratch);
                Action::Persist {
                    slot,
                    record: &self.scratch[..n],
                }
            }
            Effect::PersistChannels => match self.channels.runtime() {
                Some(part) => {
                    let (slot, record) = part.record();
                    Action::PersistChannels { slot, record }
                }
                // Queued only with a channel part.
                None => Action::Led(self.led.unwrap_or(Led::Connecting)),
            },
        }
    }

    /// Every part's poll, in order: logging, schedule, relays, the configuration's trial,
    /// transport (failover, probe), the server walk, status, the LED.
    fn advance(&mut self, now: u64, rng: &mut dyn Entropy) {
        let log_s = self.cfg.running.log_interval_s;
        let relays = self.plant.relays.state();
        let split = self.split();
        if !split && self.logging.log.holds_wide() && self.logging.log.wide() {
            // Wide records of a map no longer running wait at the head of the log (a restart
            // that restored no split configuration): they go, counted, never sent in this mode.
            self.logging.log.abandon_wide();
        }
        if self
            .logging
            .poll(now, log_s, relays, !split, &mut self.stats)
            && split
        {
            if let Some(part) = self.channels.runtime() {
                let time_s = (now / 1000) as u32;
                // Into the telemetry log when it keeps wide records (flash), else the part's.
                let logged = match self.logging.log.wide_sink() {
                    Some(sink) => part.log_record_to(time_s, sink),
                    None => part.log_record(time_s),
                };
                if logged {
                    self.stats.records_logged += 1;
                }
            }
        }
        let fresh = self.logging.fresh(now);
        self.plant.poll(now, &self.cfg.running, fresh);
        if self.logging.went_stale(now) {
            // No fresh reading: the heater must not run blind.
            self.plant.update(now, &self.cfg.running, None, None);
        }
        if self.plant.switch(&mut self.effects) {
            self.outbox.status_due = true;
        }
        let eth_before = self.cfg.eth_boot;
        if let Some(failed) = self.cfg.poll(now) {
            self.rolled_back(failed, eth_before);
            self.sync_channels(now);
            self.log_interval_changed(log_s, now);
        }
        let failover_at = self.failover_at();
        let servers = Servers::pick(&self.cfg.running.servers, &self.factory);
        let t = &mut self.transport;
        if t.poll(
            now,
            failover_at,
            servers,
            &mut self.effects,
            &mut self.stats,
        ) {
            self.link.restart_at(0);
            self.outbox.status_due = true;
        }
        let active = self.transport.active;
        let ready = self.transport.ready(active);
        self.link.poll(
            now,
            active,
            ready,
            servers,
            &mut self.effects,
            &mut self.stats,
            rng,
        );
        if self.link.is_up() && now >= self.outbox.next_status_at {
            self.outbox.status_due = true;
        }
        let led = if self.cfg.halt {
            Led::Halt
        } else if !ready {
            Led::NoNetwork
        } else if self.link.is_up() {
            Led::Online
        } else {
            Led::Connecting
        };
        if self.led != Some(led) {
            self.led = Some(led);
            self.effects.push(Effect::Led(led));
        }
    }

    /// A trial failed ([`ConfigState::poll`]): report it, persist the restored configuration,
    /// use its Ethernet settings at once if they differ from `eth_before` (those in effect),
    /// and its GSM settings, and walk its server list from the top.
    fn rolled_back(&mut self, failed: u32, eth_before: Option<crate::StaticIp>) {
        self.stats.rollbacks += 1;
        self.outbox.rollback_report = Some(failed);
        self.effects.persist();
        self.outbox.status_due = true;
        if self.cfg.eth_boot != eth_before {
            self.transport
                .reconfigure_ethernet(self.cfg.eth_boot, &mut self.effects);
        }
        if self.transport.modem_on {
            self.redial();
        }
        self.link.restart_at(0);
    }

    fn established(&mut self, now: u64, a: crate::attempt::Attempt, s: Session, time: u32, c: u64) {
        self.transport.heard(now, a.iface);
        self.link.established(now, a, s, c, &mut self.stats);
        self.sync_time(now, time);
        self.outbox.status_due = true;
        self.outbox.capabilities_due = self.outbox.capabilities.is_some();
        if self.cfg.session_accepted() {
            self.effects.persist();
        }
    }

    fn status_report(&self, now: u64) -> Status {
        let t = &self.transport;
        status::build(&status::Inputs {
            iface: t.active,
            ip: t.net[t.active.index()].ip,
            halt: self.cfg.halt,
            rolled_back: self.cfg.rolled_back_since_boot,
            time_synced: self.plant.time_offset.is_some(),
            uptime_s: (now / 1000) as u32,
            firmware: self.firmware,
            config_version: self.cfg.version,
            log_drops: self
                .logging
                .log
                .drops()
                .saturating_add(self.channels.runtime_ref().map_or(0, |p| p.wide_drops())),
            log_backlog: self.logging.log.len()
                + self
                    .channels
                    .runtime_ref()
                    .map_or(0, |p| p.wide_log().len()),
            traffic: t.traffic,
            gsm_signal: t.signal,
            radio: t.radio,
            relays: self.plant.relays.state(),
            server_index: self.link.server_index(),
        })
    }

    /// Produces the next datagram, if one is due: (interface, source port, destination, length
    /// in `self.scratch`). Handshakes first (the walk's attempt, then the Ethernet probe's),
    /// then the session's traffic ([`crate::session::Up::send`]).
    fn next_send(
        &mut self,
        now: u64,
        rng: &mut dyn Entropy,
    ) -> Option<(Iface, u16, Endpoint, usize)> {
        let tx = &mut self.scratch[..tek_proto::MAX_DATAGRAM];
        let hello = match self.link.hello_due(now) {
            Some(a) => Some(a),
            None => self.transport.probe_hello_due(now),
        };
        if let Some(a) = hello {
            return self.hellos.send(a, now, rng, &mut self.stats, tx);
        }
        if !self.link.is_up() {
            return None;
        }
        if self.outbox.faults_due {
            // Right after the Status they follow (PROTOCOL.md 17.8).
            self.outbox.faults_due = false;
            let tx = &mut self.scratch[..tek_proto::MAX_DATAGRAM];
            let part = self.channels.runtime()?;
            let body = tx.get_mut(HEADER_LEN..HEADER_LEN + MAX_MESSAGE)?;
            if let Some(len) = part.faults_message(body) {
                return self.link.up()?.send_written(now, tx, len);
            }
        }
        let refused = self
            .link
            .up()
            .is_some_and(|up| up.backlog_gate == crate::session::BacklogGate::Refused);
        if refused && self.logging.log.earlier_boot().is_some() {
            // The server does not take earlier boots' records (PROTOCOL.md 18.1).
            self.logging.log.drop_earlier_boots();
            self.outbox.status_due = true;
        }
        let status = if self.outbox.status_due {
            Some(self.status_report(now))
        } else {
            None
        };
        let faults = self
            .channels
            .runtime_ref()
            .filter(|p| p.split_version().is_some())
            .map(|p| p.faults_pending());
        // The fields, not `self.backlog()`: the session and the outbox are borrowed beside it.
        let cx = Context::new(
            backlog(&self.logging.log, &self.channels),
            self.cfg.version,
            &self.cfg.running,
        );
        let Conn::Up(up) = &mut self.link.conn else {
            return None;
        };
        let tx = &mut self.scratch[..tek_proto::MAX_DATAGRAM];
        up.send(
            now,
            &mut self.outbox,
            status,
            &cx,
            faults,
            &mut self.stats,
            tx,
        )
    }
}

mod inbound;
mod queries;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod schedule_tests;

#[cfg(test)]
mod capabilities_tests;

#[cfg(test)]
mod split_tests;
