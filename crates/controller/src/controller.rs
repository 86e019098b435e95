//! The [`Controller`]: every concern of the crate tied into one poll-driven state machine.
//!
//! ## Driving it
//! ```text
//! let mut ctl = Controller::<LOG>::new(setup, now);   // or, in place: blank() + boot(..)
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

use crate::config::ConfigState;
use crate::connect::{self, Attempt, Next, Walk};
use crate::log::{Log, LogRecord, MISSING_TEMP};
use crate::persist::{self, Stored};
use crate::session::{self, InFlight, Probing, Up};
use crate::status;
use crate::thermostat::Relays;
use crate::transport::{self, NetState, Probe, PROBE_EVERY_MS};
use crate::{Action, Endpoint, Entropy, EthernetSetup, Iface, IpInfo, Led, Radio, Reading};
use heapless::{Deque, String, Vec};
use tek_proto::crypto::{DeviceKeys, Key};
use tek_proto::handshake::hello_counter;
use tek_proto::message::config::{
    server_ok, Config, Freeze, Gsm, Thermostat, MAX_SERVERS, MAX_TEXT,
};
use tek_proto::message::status::{Status, Traffic};
use tek_proto::message::{Command, CommandResult, ConfigItems, ConfigResult, Message};
use tek_proto::session::Session;
use tek_proto::wire::data::{HEADER_LEN, MAX_MESSAGE};
use tek_proto::wire::Kind;

/// A sensor reading older than this no longer drives the heater (it is switched off).
pub const SENSOR_STALE_MS: u64 = 300_000;

/// The controller's one datagram/record buffer: a datagram to send, a flash record to write, or
/// (at power-up) a flash slot being read. An action borrows it until the next `poll`, so one
/// buffer serves all three.
const SCRATCH_LEN: usize = if persist::MAX_LEN > tek_proto::MAX_DATAGRAM {
    persist::MAX_LEN
} else {
    tek_proto::MAX_DATAGRAM
};

/// A configuration of zeros (not a valid one): the placeholder in [`Controller::blank`].
const ZERO_CONFIG: Config = Config {
    log_interval_s: 0,
    ethernet: None,
    gsm: Gsm {
        apn: String::new(),
        login: String::new(),
        password: String::new(),
    },
    servers: Vec::new(),
    thermostat: Thermostat {
        setpoint_cc: 0,
        hysteresis_cc: 0,
    },
    keepalive_s: 0,
    batch_s: 0,
    gsm_failover_s: 0,
    rollback_s: 0,
    schedule: None,
    holidays: Vec::new(),
    time_zone: String::new(),
    freeze: Freeze {
        limit_cc: 0,
        hysteresis_cc: 0,
    },
};

/// What the host knows at power-up.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// The device id (non-zero).
    pub device_id: u32,
    /// The device's 128-bit key.
    pub key: [u8; 16],
    /// The server list the controller uses while its configuration names none (`host` or
    /// `host:port`; invalid entries and entries past the eighth are ignored).
    pub factory_servers: &'a [&'a str],
    /// Firmware version, reported in status.
    pub firmware: [u8; 3],
    /// Whether the HALT input was held at power-up.
    pub halt: bool,
    /// Whether a GSM modem is fitted.
    pub has_gsm: bool,
    /// The flash record, from [`persist::load`] (`None` on a blank device). Not used by
    /// [`Controller::boot_from_flash`], which reads flash itself.
    pub stored: Option<Stored>,
}

/// Counters for the host (simulator progress lines, firmware diagnostics). All since power-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Hellos sent.
    pub hellos: u32,
    /// Sessions established.
    pub sessions: u32,
    /// Servers that stopped answering in a session.
    pub dead_servers: u32,
    /// Full passes over the server list without success.
    pub failed_passes: u32,
    /// Switches from Ethernet to GSM.
    pub failovers: u32,
    /// Switches back from GSM to Ethernet.
    pub returns: u32,
    /// Records logged.
    pub records_logged: u32,
    /// Records sent (first transmission of each batch).
    pub records_sent: u32,
    /// Records acknowledged.
    pub records_acked: u32,
    /// Batches sent (first transmissions).
    pub batches: u32,
    /// Batch retransmissions.
    pub batch_retries: u32,
    /// Configurations applied.
    pub configs_applied: u32,
    /// Network changes rolled back.
    pub rollbacks: u32,
    /// Commands carried out.
    pub commands: u32,
    /// Datagrams dropped because they failed a check or were not expected.
    pub ignored: u32,
}

/// `repr(u8)`: an explicit tag, 0 for `Offline`, so a blank controller is all zero bytes (without
/// it the compiler stores `Offline` as a niche value, 2, in `Attempt`'s interface field).
#[derive(Debug, Clone)]
#[repr(u8)]
enum Conn {
    /// Waiting for the interface in use to be ready.
    Offline,
    /// Resolving a server name.
    Resolving {
        server: u8,
        token: u16,
        deadline: u64,
    },
    /// Handshake attempt.
    Hello(Attempt),
    /// Whole list failed; waiting.
    Backoff { until: u64 },
    /// Established session.
    Up(Up),
}

#[derive(Debug, Clone, Copy)]
struct Target {
    literal: Option<[u8; 4]>,
    port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Resolve {
        iface: Iface,
        token: u16,
        server: u8,
    },
    ConfigureEthernet(EthernetSetup),
    ModemUp,
    ModemDown,
    SetRelay {
        relay: u8,
        on: bool,
    },
    Persist,
    Led(Led),
}

/// The controller, with a telemetry log of `LOG` records (16 bytes each).
pub struct Controller<const LOG: usize> {
    device_id: u32,
    keys: DeviceKeys,
    firmware: [u8; 3],
    halt: bool,
    has_gsm: bool,
    factory: Vec<String<MAX_TEXT>, MAX_SERVERS>,
    boot: u32,
    persist_seq: u32,
    attempts: u32,
    cfg: ConfigState,
    eth_in_use: Option<crate::StaticIp>,
    rolled_back_since_boot: bool,
    net: [NetState; 2],
    active: Iface,
    modem_on: bool,
    radio: Radio,
    signal: u8,
    conn: Conn,
    walk: Walk,
    probe: Probe,
    /// Ethernet probe interval while on GSM; 0: [`PROBE_EVERY_MS`] (see
    /// [`Controller::set_probe_interval`]).
    probe_every_ms: u32,
    eth_ok_at: u64,
    dns_token: u16,
    log: Log<LOG>,
    next_log_at: u64,
    reading: Option<Reading>,
    reading_at: u64,
    power_sum: u64,
    power_n: u32,
    relays: Relays,
    relays_applied: u8,
    /// When the schedule is evaluated next (every minute while one is configured).
    next_schedule_at: u64,
    time_offset: Option<i64>,
    traffic: Traffic,
    effects: Deque<Effect, 24>,
    persist_queued: bool,
    led: Option<Led>,
    config_ack: Option<(u32, ConfigResult)>,
    rollback_report: Option<u32>,
    command_acks: Deque<(u32, CommandResult), 4>,
    last_command: Option<(u32, CommandResult)>,
    status_due: bool,
    next_status_at: u64,
    net_restart: bool,
    reset_pending: bool,
    stats: Stats,
    /// See [`SCRATCH_LEN`].
    scratch: [u8; SCRATCH_LEN],
}

impl<const LOG: usize> core::fmt::Debug for Controller<LOG> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Controller")
            .field("device_id", &self.device_id)
            .field("boot", &self.boot)
            .field("active", &self.active)
            .field("conn", &self.conn)
            .field("config_version", &self.cfg.version)
            .field("log_len", &self.log.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Checks and decrypts a session datagram in place. Out of line: the cipher's working state
/// is on the stack only while this runs, not while the message is handled (a configuration
/// decoded then would add to it; a device's stack is the budget).
#[inline(never)]
fn open<'d>(session: &mut Session, datagram: &'d mut [u8]) -> Option<Message<'d>> {
    session.open_message(datagram).ok()
}

fn seal(session: &mut Session, msg: &Message<'_>, tx: &mut [u8]) -> Option<usize> {
    session.seal_message(msg, tx).ok()
}

impl<const LOG: usize> Controller<LOG> {
    /// Powers up: [`blank`](Self::blank) + [`boot`](Self::boot) on a value. The first actions
    /// [`poll`](Self::poll) returns persist the incremented boot counter and configure Ethernet
    /// (DHCP unless fixed settings are stored and HALT is not held).
    pub fn new(setup: Setup<'_>, now: u64) -> Self {
        let mut ctl = Self::blank();
        ctl.boot(setup, now);
        ctl
    }

    /// A controller that has not booted, for a `static` initialiser: every byte of it is zero,
    /// so the static lands in `.bss` and costs no flash (the firmware's size check verifies
    /// that its controller static is in `.bss`). Its field values are placeholders chosen for
    /// that — no key, no server, no configuration — and mean nothing: call
    /// [`boot`](Self::boot) or [`boot_from_flash`](Self::boot_from_flash) before anything else.
    pub const fn blank() -> Self {
        Controller {
            device_id: 0,
            keys: DeviceKeys::PLACEHOLDER,
            firmware: [0; 3],
            halt: false,
            has_gsm: false,
            factory: Vec::new(),
            boot: 0,
            persist_seq: 0,
            attempts: 0,
            // `Some`, not `None`, in the placeholders below: their `None` is a non-zero niche
            // value (2 in a bool or an `Option` tag, 4 after `Led`'s variants), which would move
            // the whole static into `.data`, i.e. into flash.
            cfg: ConfigState {
                version: 0,
                running: ZERO_CONFIG,
                previous: Some((0, ZERO_CONFIG)),
                trial_deadline: None,
                rolled_back: None,
                eth_boot: None,
            },
            eth_in_use: None,
            rolled_back_since_boot: false,
            net: [NetState {
                link: false,
                ip: Some(IpInfo {
                    ip: [0; 4],
                    netmask: [0; 4],
                    gateway: [0; 4],
                    dns: [0; 4],
                    dhcp: false,
                }),
            }; 2],
            active: Iface::Ethernet,
            modem_on: false,
            radio: Radio::Off,
            signal: 0,
            conn: Conn::Offline,
            walk: Walk {
                index: 0,
                tried: 0,
                pass: 0,
            },
            probe: Probe::Off,
            probe_every_ms: 0,
            eth_ok_at: 0,
            dns_token: 0,
            log: Log::new(),
            next_log_at: 0,
            reading: Some(Reading {
                power_w: 0,
                energy_wh: 0,
                water_cc: None,
                air_cc: None,
            }),
            reading_at: 0,
            power_sum: 0,
            power_n: 0,
            relays: Relays::BLANK,
            relays_applied: 0,
            next_schedule_at: 0,
            time_offset: None,
            traffic: Traffic {
                eth_tx: 0,
                eth_rx: 0,
                gsm_tx: 0,
                gsm_rx: 0,
            },
            effects: Deque::new(),
            persist_queued: false,
            led: Some(Led::Halt),
            config_ack: Some((0, ConfigResult::Applied)),
            rollback_report: None,
            command_acks: Deque::new(),
            last_command: Some((0, CommandResult::Done)),
            status_due: false,
            next_status_at: 0,
            net_restart: false,
            reset_pending: false,
            stats: Stats {
                hellos: 0,
                sessions: 0,
                dead_servers: 0,
                failed_passes: 0,
                failovers: 0,
                returns: 0,
                records_logged: 0,
                records_sent: 0,
                records_acked: 0,
                batches: 0,
                batch_retries: 0,
                configs_applied: 0,
                rollbacks: 0,
                commands: 0,
                ignored: 0,
            },
            scratch: [0; SCRATCH_LEN],
        }
    }

    /// Powers up in place, with the flash record in `setup.stored`: every field is set anew
    /// (whatever the controller held before — a blank or a running controller alike, so this is
    /// also a reset) and the log is emptied by resetting its indices. Nothing of the size of the
    /// controller or its log passes through the stack.
    pub fn boot(&mut self, mut setup: Setup<'_>, now: u64) {
        let found = setup.stored.take().map(|s| {
            self.cfg.version = s.version;
            self.cfg.running = s.config;
            self.cfg.previous = s.previous;
            self.cfg.rolled_back = s.rolled_back;
            (s.seq, s.boot)
        });
        self.start(&setup, found, now);
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
        let header = self.restore(read);
        if let Some(h) = header {
            self.cfg.version = h.version;
            self.cfg.rolled_back = h.rolled_back;
        }
        self.start(&setup, header.map(|h| (h.seq, h.boot)), now);
        header
    }

    /// Reads both slots and decodes the newest valid record into `self.cfg`.
    fn restore(&mut self, read: &mut dyn FnMut(u8, &mut [u8]) -> bool) -> Option<persist::Header> {
        let buf = &mut self.scratch[..persist::MAX_LEN];
        let mut headers = [None, None];
        for (slot, h) in headers.iter_mut().enumerate() {
            if read(slot as u8, buf) {
                *h = persist::check(buf);
            }
        }
        // Slot 1 is in the buffer now. Newer first; on equal sequence numbers slot 0, as `load`.
        let mut in_buf = 1;
        let order = match headers {
            [Some(a), Some(b)] if !b.newer_than(&a) => [0, 1],
            _ => [1, 0],
        };
        for slot in order {
            if headers[slot].is_none() {
                continue;
            }
            if slot != in_buf {
                if !read(slot as u8, buf) {
                    continue;
                }
                in_buf = slot;
            }
            let h = persist::decode_into(buf, &mut self.cfg.running, &mut self.cfg.previous);
            if h.is_some() {
                return h;
            }
        }
        None
    }

    /// The one power-up path. `self.cfg` holds the version, configurations and rolled-back
    /// version of the flash record when `found` (its sequence number and boot counter) is
    /// `Some`; without a record the factory configuration is used.
    fn start(&mut self, setup: &Setup<'_>, found: Option<(u32, u32)>, now: u64) {
        let (seq, boot_before) = match found {
            Some(f) => f,
            None => {
                self.cfg.version = 0;
                self.cfg.running = Config::DEFAULT;
                self.cfg.previous = None;
                self.cfg.rolled_back = None;
                (0, 0)
            }
        };
        self.cfg.start(setup.halt, now);
        let log_ms = u64::from(self.cfg.running.log_interval_s) * 1000;
        let eth_boot = self.cfg.eth_boot;
        // Every field by name, without `..`: a field added later cannot be forgotten here.
        let Controller {
            device_id,
            keys,
            firmware,
            halt,
            has_gsm,
            factory,
            boot,
            persist_seq,
            attempts,
            cfg: _, // restored above
            eth_in_use,
            rolled_back_since_boot,
            net,
            active,
            modem_on,
            radio,
            signal,
            conn,
            walk,
            probe,
            // Kept across a restart: the host sets it once (a property of the board).
            probe_every_ms: _,
            eth_ok_at,
            dns_token,
            log,
            next_log_at,
            reading,
            reading_at,
            power_sum,
            power_n,
            relays,
            relays_applied,
            next_schedule_at,
            time_offset,
            traffic,
            effects,
            persist_queued,
            led,
            config_ack,
            rollback_report,
            command_acks,
            last_command,
            status_due,
            next_status_at,
            net_restart,
            reset_pending,
            stats,
            scratch: _, // written before every use (an action's bytes, a slot read)
        } = self;
        *device_id = setup.device_id;
        *keys = DeviceKeys::new(Key(setup.key));
        *firmware = setup.firmware;
        *halt = setup.halt;
        *has_gsm = setup.has_gsm;
        factory.clear();
        for s in setup.factory_servers {
            if server_ok(s) {
                if let Ok(s) = String::try_from(*s) {
                    let _ = factory.push(s);
                }
            }
        }
        *boot = boot_before.saturating_add(1);
        *persist_seq = seq;
        *attempts = 0;
        *eth_in_use = eth_boot;
        *rolled_back_since_boot = false;
        *net = [NetState::default(); 2];
        *active = Iface::Ethernet;
        *modem_on = false;
        *radio = Radio::Off;
        *signal = 99;
        *conn = Conn::Offline;
        *walk = Walk::default();
        *probe = Probe::Off;
        *eth_ok_at = now;
        *dns_token = 0;
        log.clear();
        *next_log_at = now + log_ms;
        *reading = None;
        *reading_at = now;
        *power_sum = 0;
        *power_n = 0;
        *relays = Relays::new();
        *relays_applied = 0;
        *next_schedule_at = 0;
        *time_offset = None;
        *traffic = Traffic::default();
        effects.clear();
        *persist_queued = false;
        *led = None;
        *config_ack = None;
        *rollback_report = None;
        command_acks.clear();
        *last_command = None;
        *status_due = true;
        *next_status_at = now;
        *net_restart = false;
        *reset_pending = false;
        *stats = Stats::default();
        // The boot counter is written before anything is sent.
        self.queue_persist();
        self.push(Effect::ConfigureEthernet(match eth_boot {
            Some(s) => EthernetSetup::Static(s),
            None => EthernetSetup::Dhcp,
        }));
        self.update_relays(now, None, None);
    }

    // ----- events -------------------------------------------------------------------------

    /// An interface's link went up or down (Ethernet carrier; GSM data connection).
    pub fn link(&mut self, _now: u64, iface: Iface, up: bool) {
        let st = &mut self.net[iface.index()];
        if st.link == up {
            return;
        }
        st.link = up;
        if !up {
            self.lost(iface);
        }
    }

    /// An interface got (or changed) its IP settings: a DHCP lease, fixed settings applied, or
    /// the modem's PPP link. Implies the link is up.
    pub fn ip_configured(&mut self, _now: u64, iface: Iface, info: IpInfo) {
        let st = &mut self.net[iface.index()];
        st.link = true;
        if st.ip != Some(info) {
            st.ip = Some(info);
            if iface == self.active {
                self.status_due = true;
            }
        }
    }

    /// An interface lost its IP settings (lease expired, PPP down).
    pub fn ip_lost(&mut self, _now: u64, iface: Iface) {
        self.net[iface.index()].ip = None;
        self.lost(iface);
    }

    fn lost(&mut self, iface: Iface) {
        let on_iface = match &self.conn {
            Conn::Up(up) => (up.iface == iface).then_some(up.server),
            Conn::Hello(a) => (a.iface == iface).then_some(a.server),
            Conn::Resolving { server, .. } => (iface == self.active).then_some(*server),
            _ => None,
        };
        if let Some(server) = on_iface {
            self.walk = Walk::from(server);
            self.conn = Conn::Offline;
        }
        if iface == Iface::Ethernet && !matches!(self.probe, Probe::Off) {
            self.probe = Probe::Idle {
                next_at: self.eth_ok_at.saturating_add(self.probe_every()),
            };
        }
    }

    /// How often Ethernet is probed while on GSM (default [`PROBE_EVERY_MS`], 10 minutes); a
    /// test bench shortens it to see the way back within minutes. 0 restores the default.
    pub fn set_probe_interval(&mut self, ms: u32) {
        self.probe_every_ms = ms;
    }

    fn probe_every(&self) -> u64 {
        if self.probe_every_ms == 0 {
            PROBE_EVERY_MS
        } else {
            u64::from(self.probe_every_ms)
        }
    }

    /// The modem's radio state and signal quality (0..=31, 99 unknown), for status and LEDs.
    pub fn modem_state(&mut self, _now: u64, radio: Radio, signal: u8) {
        self.radio = radio;
        self.signal = signal;
    }

    /// The answer to a [`Action::Resolve`]: the address, or `None` if the name did not resolve.
    pub fn dns_answer(&mut self, now: u64, token: u16, addr: Option<[u8; 4]>) {
        let addr = addr.filter(|a| *a != [0; 4]);
        if let Conn::Resolving {
            server,
            token: t,
            deadline,
        } = &mut self.conn
        {
            if *t == token {
                let server = *server;
                match addr {
                    Some(addr) => {
                        let port = self.server_port(server);
                        self.conn = Conn::Hello(Attempt::new(
                            self.active,
                            server,
                            Endpoint { addr, port },
                            now,
                        ));
                    }
                    // Counted as down at the next poll (which has the randomness for back-off).
                    None => *deadline = now,
                }
                return;
            }
        }
        if let Probe::Resolving { token: t, .. } = self.probe {
            if t == token {
                self.probe = match addr {
                    Some(addr) => Probe::Hello(Attempt::new(
                        Iface::Ethernet,
                        0,
                        Endpoint {
                            addr,
                            port: self.server_port(0),
                        },
                        now,
                    )),
                    None => Probe::Idle {
                        next_at: now + self.probe_every(),
                    },
                };
            }
        }
    }

    /// A sensor reading. The thermostat acts on it at once; the log takes the latest reading
    /// (and the mean power since the last record) at every logging interval.
    pub fn sensor(&mut self, now: u64, reading: Reading) {
        self.reading = Some(reading);
        self.reading_at = now;
        self.power_sum += u64::from(reading.power_w);
        self.power_n = self.power_n.saturating_add(1);
        self.update_relays(now, reading.water_cc, reading.air_cc);
    }

    /// A datagram arrived on `iface`, from `from`, to local port `local_port`. The buffer is
    /// decrypted in place. Anything unexpected or failing a check is dropped silently.
    pub fn receive(
        &mut self,
        now: u64,
        iface: Iface,
        from: Endpoint,
        local_port: u16,
        datagram: &mut [u8],
    ) {
        transport::count(&mut self.traffic, iface, false, datagram.len());
        if !tek_proto::length_ok(datagram.len()) || datagram[0] != tek_proto::VERSION {
            self.stats.ignored += 1;
            return;
        }
        let handled = match Kind::from(datagram[1]) {
            Kind::Welcome => self.on_welcome(now, iface, from, local_port, datagram),
            Kind::Data => self.on_data(now, iface, from, local_port, datagram),
            _ => false,
        };
        if !handled {
            self.stats.ignored += 1;
        }
    }

    /// Out of line, like [`open`]: a handshake's working state (an attempt's copy, the new
    /// session) is on the stack only while a Welcome is checked, not under every datagram.
    #[inline(never)]
    fn on_welcome(
        &mut self,
        now: u64,
        iface: Iface,
        from: Endpoint,
        port: u16,
        datagram: &[u8],
    ) -> bool {
        let matches = |a: &Attempt| a.iface == iface && a.port == port && a.to == from;
        match &mut self.conn {
            Conn::Hello(a) if matches(a) => {
                if let Some((session, time, counter)) = a.finish(&self.keys, datagram, 0) {
                    let a = a.clone();
                    self.established(now, a, session, time, counter);
                    return true;
                }
            }
            Conn::Up(up) if matches(&up.attempt) => {
                // A Welcome to a later Hello of the same attempt: the server replaced the
                // session we took with this one.
                if let Some((session, time, counter)) =
                    up.attempt.finish(&self.keys, datagram, up.counter)
                {
                    up.session = session;
                    up.counter = counter;
                    up.heard(now);
                    if let Some(b) = &mut up.batch {
                        b.next_at = now;
                    }
                    self.sync_time(now, time);
                    return true;
                }
            }
            _ => {}
        }
        if let Probe::Hello(a) = &self.probe {
            if matches(a) {
                if let Some((session, time, counter)) = a.finish(&self.keys, datagram, 0) {
                    let a = a.clone();
                    self.probe = Probe::Off;
                    self.return_to_ethernet(now);
                    self.established(now, a, session, time, counter);
                    return true;
                }
            }
        }
        false
    }

    fn on_data(
        &mut self,
        now: u64,
        iface: Iface,
        from: Endpoint,
        port: u16,
        datagram: &mut [u8],
    ) -> bool {
        let Conn::Up(up) = &mut self.conn else {
            return false;
        };
        if up.iface != iface || up.port != port || up.to != from {
            return false;
        }
        let Some(msg) = open(&mut up.session, datagram) else {
            return false;
        };
        up.heard(now);
        if iface == Iface::Ethernet {
            self.eth_ok_at = now;
        }
        self.handle(now, msg);
        true
    }

    fn handle(&mut self, now: u64, msg: Message<'_>) {
        match msg {
            Message::Ack {
                through_seq,
                server_time,
            } => {
                self.sync_time(now, server_time);
                if let Some(n) = self.log.ack_through(through_seq) {
                    self.stats.records_acked += n as u32;
                    if let Conn::Up(up) = &mut self.conn {
                        if let Some(b) = up.batch {
                            if (through_seq.wrapping_sub(b.last) as i32) >= 0 {
                                up.batch = None;
                            }
                        }
                    }
                }
            }
            Message::Pong { server_time } => self.sync_time(now, server_time),
            Message::Config { version, config } => self.config_message(now, version, config),
            Message::Command { id, command } => self.command(now, id, command),
            // Device -> server messages and unknown codes: authentic, but nothing to do.
            _ => {}
        }
    }

    /// Out of line: the decoded configuration (~800 bytes) then lives in a frame of its own, on
    /// the stack only after the datagram's decryption has returned, instead of in the frame of
    /// `receive`, where it would add to the decryption's (a device's stack is the budget).
    #[inline(never)]
    fn config_message(&mut self, now: u64, version: u32, items: ConfigItems<'_>) {
        let mut new = items.to_config();
        self.apply_config(now, version, &mut new);
    }

    fn sync_time(&mut self, now: u64, server_time: u32) {
        self.time_offset = Some(i64::from(server_time) - (now / 1000) as i64);
        // The schedule may say something else now that the time is known (or corrected).
        self.next_schedule_at = now;
    }

    /// Evaluates the relays: the schedule's demand at `now`, the thermostat with the setpoint it
    /// selects, manual overrides, then the interlocks ([`crate::thermostat`]).
    fn update_relays(&mut self, now: u64, water_cc: Option<i16>, air_cc: Option<i16>) {
        let cfg = &self.cfg.running;
        let demand = crate::schedule::demand(cfg, self.unix_time(now));
        let mut thermostat = cfg.thermostat;
        if let (false, Some(s)) = (demand.occupied, &cfg.schedule) {
            thermostat.setpoint_cc = s.unoccupied_cc;
        }
        self.relays.evaluate(&crate::thermostat::Inputs {
            thermostat,
            water_cc,
            air_cc,
            pump_scheduled: demand.pump,
            freeze: cfg.freeze,
        });
    }

    /// [`update_relays`](Self::update_relays) with the latest reading, if it is fresh.
    fn update_relays_fresh(&mut self, now: u64) {
        let fresh = now.saturating_sub(self.reading_at) < SENSOR_STALE_MS;
        let r = self.reading.filter(|_| fresh);
        self.update_relays(now, r.and_then(|r| r.water_cc), r.and_then(|r| r.air_cc));
    }

    /// Re-evaluates the schedule once a minute (on the minute of the UTC clock, which is also
    /// the minute of every local time whose offset is whole minutes).
    fn schedule_tick(&mut self, now: u64) {
        if self.cfg.running.schedule.is_none() || now < self.next_schedule_at {
            return;
        }
        let Some(t) = self.unix_time(now) else {
            return;
        };
        self.update_relays_fresh(now);
        let to_minute = 60 - t.rem_euclid(60) as u64;
        self.next_schedule_at = (now / 1000 + to_minute) * 1000;
    }

    fn apply_config(&mut self, now: u64, version: u32, new: &mut Config) {
        let log_s = self.cfg.running.log_interval_s;
        let Some(a) = self.cfg.apply(version, new, now) else {
            return;
        };
        self.config_ack = Some((version, a.result));
        if !a.changed {
            return;
        }
        self.stats.configs_applied += 1;
        self.log_interval_changed(log_s, now);
        self.queue_persist();
        self.status_due = true;
        self.update_relays_fresh(now);
        if a.gsm_changed && self.modem_on {
            self.redial();
        }
        if a.servers_changed {
            // After the ConfigAck went out on the old session.
            self.net_restart = true;
        }
    }

    fn redial(&mut self) {
        self.push(Effect::ModemDown);
        self.push(Effect::ModemUp);
        self.net[Iface::Gsm.index()] = NetState::default();
        if self.active == Iface::Gsm {
            self.conn = Conn::Offline;
        }
    }

    fn command(&mut self, now: u64, id: u32, command: Command) {
        let result = match self.last_command {
            Some((last, result)) if last == id => result,
            _ => {
                let result = match command {
                    Command::SetRelay { relay, mode } => {
                        if self.relays.set_mode(relay, mode) {
                            self.update_relays_fresh(now);
                            CommandResult::Done
                        } else {
                            CommandResult::Refused
                        }
                    }
                    Command::Reboot => {
                        self.reset_pending = true;
                        CommandResult::Done
                    }
                    Command::SendStatus => {
                        self.status_due = true;
                        CommandResult::Done
                    }
                };
                self.stats.commands += 1;
                self.last_command = Some((id, result));
                result
            }
        };
        if self.command_acks.is_full() {
            self.command_acks.pop_front();
        }
        let _ = self.command_acks.push_back((id, result));
    }

    // ----- poll ---------------------------------------------------------------------------

    /// Advances timers to `now` and returns the next action, or `None` when there is nothing to
    /// do before [`poll_at`](Self::poll_at). Call it until it returns `None`.
    pub fn poll(&mut self, now: u64, rng: &mut dyn Entropy) -> Option<Action<'_>> {
        self.advance(now, rng);
        if let Some(e) = self.effects.pop_front() {
            return Some(self.effect_action(e));
        }
        if let Some((iface, from_port, to, n)) = self.next_send(now, rng) {
            transport::count(&mut self.traffic, iface, true, n);
            return Some(Action::Send {
                iface,
                from_port,
                to,
                bytes: &self.scratch[..n],
            });
        }
        if self.net_restart {
            self.net_restart = false;
            self.walk = Walk::from(0);
            self.conn = Conn::Offline;
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
        let now_ish = 0;
        if !self.effects.is_empty() || self.net_restart || self.reset_pending {
            return now_ish;
        }
        let mut at = self.next_log_at;
        let mut upd = |t: u64| at = at.min(t);
        if self.reading.is_some() {
            upd(self.reading_at + SENSOR_STALE_MS);
        }
        if let Some(d) = self.cfg.trial_deadline {
            upd(d);
        }
        if self.cfg.running.schedule.is_some() && self.time_offset.is_some() {
            upd(self.next_schedule_at);
        }
        if let Some(t) = self.failover_at() {
            upd(t);
        }
        match &self.probe {
            Probe::Off => {}
            Probe::Idle { next_at } => upd(*next_at),
            Probe::Resolving { deadline, .. } => upd(*deadline),
            Probe::Hello(a) => upd(a.next_at),
        }
        match &self.conn {
            Conn::Offline => {}
            Conn::Resolving { deadline, .. } => upd(*deadline),
            Conn::Hello(a) => upd(a.next_at),
            Conn::Backoff { until } => upd(*until),
            Conn::Up(up) => {
                if self.config_ack.is_some()
                    || self.rollback_report.is_some()
                    || !self.command_acks.is_empty()
                    || self.status_due
                {
                    return now_ish;
                }
                upd(self.next_status_at);
                upd(up.started + session::REKEY_AFTER_MS);
                match up.batch {
                    Some(b) => upd(b.next_at),
                    None if self.log.len() >= session::FULL_BATCH => return now_ish,
                    None if !self.log.is_empty() => upd(up.next_batch_at),
                    None => {}
                }
                if let Some(p) = up.probing {
                    upd(p.next_at);
                }
                upd(up.last_tx + self.keepalive_ms());
            }
        }
        at
    }

    /// The local UDP ports the controller expects datagrams on (at most two: the session or
    /// attempt on the interface in use, and the Ethernet probe while on GSM). Datagrams to other
    /// ports would be dropped anyway.
    pub fn ports(&self) -> [Option<(Iface, u16)>; 2] {
        let main = match &self.conn {
            Conn::Hello(a) if a.port != 0 => Some((a.iface, a.port)),
            Conn::Up(up) => Some((up.iface, up.port)),
            _ => None,
        };
        let probe = match &self.probe {
            Probe::Hello(a) if a.port != 0 => Some((a.iface, a.port)),
            _ => None,
        };
        [main, probe]
    }

    fn keepalive_ms(&self) -> u64 {
        u64::from(self.cfg.running.keepalive_s) * 1000
    }

    fn failover_at(&self) -> Option<u64> {
        (self.has_gsm && self.active == Iface::Ethernet && !matches!(self.conn, Conn::Up(_)))
            .then(|| self.eth_ok_at + u64::from(self.cfg.running.gsm_failover_s) * 1000)
    }

    fn push(&mut self, e: Effect) {
        // Bounded by construction (coalesced persist/LED, at most eight relays, a handful of
        // network effects between polls); dropping one if it were ever full is safer than a
        // panic, and the next state change re-issues it.
        let _ = self.effects.push_back(e);
    }

    fn queue_persist(&mut self) {
        if !self.persist_queued {
            self.persist_queued = true;
            self.push(Effect::Persist);
        }
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
                name: self
                    .server_entry(server)
                    .map_or("", |s| connect::parse_server(s).host),
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
                self.persist_queued = false;
                self.persist_seq = self.persist_seq.wrapping_add(1);
                let cfg = &self.cfg;
                let n = persist::encode(
                    &mut self.scratch,
                    self.persist_seq,
                    self.boot,
                    cfg.version,
                    &cfg.running,
                    cfg.previous.as_ref().map(|(v, c)| (*v, c)),
                    cfg.rolled_back,
                )
                .unwrap_or(0);
                Action::Persist {
                    slot: (self.persist_seq % 2) as u8,
                    record: &self.scratch[..n],
                }
            }
        }
    }

    fn servers(&self) -> &[String<MAX_TEXT>] {
        if self.cfg.running.servers.is_empty() {
            &self.factory
        } else {
            &self.cfg.running.servers
        }
    }

    fn server_entry(&self, i: u8) -> Option<&str> {
        self.servers().get(usize::from(i)).map(|s| s.as_str())
    }

    /// The literal address (if any) and port of server `i`, owned.
    fn server_target(&self, i: u8) -> Option<Target> {
        self.server_entry(i).map(|s| {
            let r = connect::parse_server(s);
            Target {
                literal: r.literal,
                port: r.port,
            }
        })
    }

    fn server_port(&self, i: u8) -> u16 {
        self.server_entry(i)
            .map_or(tek_proto::SERVER_PORT, |s| connect::parse_server(s).port)
    }

    fn advance(&mut self, now: u64, rng: &mut dyn Entropy) {
        self.sample(now);
        self.schedule_tick(now);
        if self.reading.is_some() && now.saturating_sub(self.reading_at) >= SENSOR_STALE_MS {
            // No fresh reading: the heater must not run blind.
            self.update_relays(now, None, None);
            self.reading_at = now;
            self.reading = self.reading.map(|r| Reading {
                water_cc: None,
                air_cc: None,
                ..r
            });
        }
        let relays = self.relays.state();
        if relays != self.relays_applied {
            // Everything that switches off (highest relay first) before anything that switches
            // on (lowest first), so the interlock holds between two actions too: the heater
            // (1) stops before the pump (0), and the pump starts before the heater.
            for on in [false, true] {
                for n in 0..8u8 {
                    let i = if on { n } else { 7 - n };
                    let bit = 1 << i;
                    if (relays ^ self.relays_applied) & bit != 0 && (relays & bit != 0) == on {
                        self.push(Effect::SetRelay { relay: i, on });
                    }
                }
            }
            self.relays_applied = relays;
            self.status_due = true;
        }
        let log_s = self.cfg.running.log_interval_s;
        if let Some(failed) = self.cfg.check_rollback(now) {
            self.rollback(failed);
            self.log_interval_changed(log_s, now);
        }
        if let Some(t) = self.failover_at() {
            if now >= t {
                self.failover(now);
            }
        }
        self.advance_probe(now);
        self.advance_conn(now, rng);
        if let Conn::Up(_) = self.conn {
            if now >= self.next_status_at {
                self.status_due = true;
            }
        }
        let led = if self.halt {
            Led::Halt
        } else if !self.net[self.active.index()].ready() {
            Led::NoNetwork
        } else if matches!(self.conn, Conn::Up(_)) {
            Led::Online
        } else {
            Led::Connecting
        };
        if self.led != Some(led) {
            self.led = Some(led);
            self.push(Effect::Led(led));
        }
    }

    /// The running configuration changed from one logging every `old_s`: the next record is due
    /// one new interval after the last record (or power-up) — at once if that is past — rather
    /// than at the time the old interval set.
    fn log_interval_changed(&mut self, old_s: u16, now: u64) {
        let new_s = self.cfg.running.log_interval_s;
        if new_s == old_s {
            return;
        }
        let last = self.next_log_at.saturating_sub(u64::from(old_s) * 1000);
        self.next_log_at = (last + u64::from(new_s) * 1000).max(now);
    }

    fn sample(&mut self, now: u64) {
        if now < self.next_log_at {
            return;
        }
        let interval = u64::from(self.cfg.running.log_interval_s) * 1000;
        self.next_log_at += interval;
        if self.next_log_at <= now {
            self.next_log_at = now + interval;
        }
        let Some(r) = self.reading else {
            return; // nothing measured yet: no record rather than a made-up one
        };
        let power = if self.power_n > 0 {
            self.power_sum / u64::from(self.power_n)
        } else {
            u64::from(r.power_w)
        };
        self.power_sum = 0;
        self.power_n = 0;
        self.log.push(LogRecord {
            time_s: (now / 1000) as u32,
            energy_wh: r.energy_wh,
            power_w: power.min(u64::from(u16::MAX)) as u16,
            water_cc: r.water_cc.unwrap_or(MISSING_TEMP),
            air_cc: r.air_cc.unwrap_or(MISSING_TEMP),
            relays: self.relays.state(),
        });
        self.stats.records_logged += 1;
    }

    fn rollback(&mut self, failed: u32) {
        self.stats.rollbacks += 1;
        self.rolled_back_since_boot = true;
        self.rollback_report = Some(failed);
        self.queue_persist();
        self.status_due = true;
        // The restored Ethernet settings take effect now: the failed ones did not work.
        let eth = if self.halt {
            None
        } else {
            self.cfg.running.ethernet
        };
        self.cfg.eth_boot = eth;
        if eth != self.eth_in_use {
            self.eth_in_use = eth;
            self.net[Iface::Ethernet.index()].ip = None;
            self.push(Effect::ConfigureEthernet(match eth {
                Some(s) => EthernetSetup::Static(s),
                None => EthernetSetup::Dhcp,
            }));
        }
        if self.modem_on {
            self.redial();
        }
        self.walk = Walk::from(0);
        self.conn = Conn::Offline;
    }

    fn failover(&mut self, now: u64) {
        self.stats.failovers += 1;
        self.active = Iface::Gsm;
        self.modem_on = true;
        self.net[Iface::Gsm.index()] = NetState::default();
        self.push(Effect::ModemUp);
        self.walk = Walk::from(0);
        self.conn = Conn::Offline;
        self.probe = Probe::Idle {
            next_at: now + self.probe_every(),
        };
        self.status_due = true;
    }

    fn return_to_ethernet(&mut self, now: u64) {
        self.stats.returns += 1;
        self.active = Iface::Ethernet;
        self.eth_ok_at = now;
        if self.modem_on {
            self.modem_on = false;
            self.push(Effect::ModemDown);
        }
        self.net[Iface::Gsm.index()] = NetState::default();
        self.radio = Radio::Off;
    }

    fn next_token(&mut self) -> u16 {
        self.dns_token = self.dns_token.wrapping_add(1);
        self.dns_token
    }

    fn advance_probe(&mut self, now: u64) {
        match &self.probe {
            Probe::Idle { next_at } if now >= *next_at => {
                let first = self.server_target(0);
                self.probe = match first {
                    Some(s) if self.net[Iface::Ethernet.index()].ready() => match s.literal {
                        Some(addr) => Probe::Hello(Attempt::new(
                            Iface::Ethernet,
                            0,
                            Endpoint { addr, port: s.port },
                            now,
                        )),
                        None => {
                            let token = self.next_token();
                            self.push(Effect::Resolve {
                                iface: Iface::Ethernet,
                                token,
                                server: 0,
                            });
                            Probe::Resolving {
                                token,
                                deadline: now + connect::DNS_TIMEOUT_MS,
                            }
                        }
                    },
                    _ => Probe::Idle {
                        next_at: now + self.probe_every(),
                    },
                };
            }
            Probe::Resolving { deadline, .. } if now >= *deadline => {
                self.probe = Probe::Idle {
                    next_at: now + self.probe_every(),
                };
            }
            Probe::Hello(a) if a.failed(now) => {
                self.probe = Probe::Idle {
                    next_at: now + self.probe_every(),
                };
            }
            _ => {}
        }
    }

    fn start_attempt(&mut self, server: u8, now: u64) {
        let Some(s) = self.server_target(server) else {
            // No server configured at all: nothing to walk; look again later.
            self.conn = Conn::Backoff {
                until: now + connect::BACKOFF_MAX_MS,
            };
            return;
        };
        self.walk.index = server;
        self.conn = match s.literal {
            Some(addr) => Conn::Hello(Attempt::new(
                self.active,
                server,
                Endpoint { addr, port: s.port },
                now,
            )),
            None => {
                let token = self.next_token();
                self.push(Effect::Resolve {
                    iface: self.active,
                    token,
                    server,
                });
                Conn::Resolving {
                    server,
                    token,
                    deadline: now + connect::DNS_TIMEOUT_MS,
                }
            }
        };
    }

    fn server_down(&mut self, now: u64, rng: &mut dyn Entropy) {
        match self.walk.server_down(self.servers().len(), now, rng) {
            Next::Server(i) => self.start_attempt(i, now),
            Next::BackoffUntil(until) => {
                self.stats.failed_passes += 1;
                self.conn = Conn::Backoff { until };
            }
        }
    }

    fn advance_conn(&mut self, now: u64, rng: &mut dyn Entropy) {
        let ready = self.net[self.active.index()].ready();
        if !ready {
            if !matches!(self.conn, Conn::Offline | Conn::Backoff { .. }) {
                self.lost(self.active);
            }
            return;
        }
        match &self.conn {
            Conn::Offline => self.start_attempt(self.walk.index, now),
            Conn::Resolving { deadline, .. } if now >= *deadline => self.server_down(now, rng),
            Conn::Hello(a) if a.failed(now) => self.server_down(now, rng),
            Conn::Backoff { until } if now >= *until => {
                self.walk.tried = 0;
                self.start_attempt(0, now);
            }
            Conn::Up(up) if up.dead(now) => {
                self.stats.dead_servers += 1;
                self.walk = Walk::from(up.server);
                self.server_down(now, rng);
            }
            Conn::Up(up) if up.rekey_due(now) => {
                let server = up.server;
                self.walk = Walk::from(server);
                self.start_attempt(server, now);
            }
            _ => {}
        }
    }

    fn established(&mut self, now: u64, a: Attempt, session: Session, time: u32, counter: u64) {
        self.stats.sessions += 1;
        self.walk.connected();
        self.walk.index = a.server;
        if a.iface == Iface::Ethernet {
            self.eth_ok_at = now;
        }
        self.conn = Conn::Up(Up::new(a, session, counter, now));
        self.sync_time(now, time);
        self.status_due = true;
        if self.cfg.session_accepted() {
            self.queue_persist();
        }
    }

    fn next_counter(&mut self) -> u64 {
        let c = hello_counter(self.boot, self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        c
    }

    fn status_report(&self, now: u64) -> Status {
        let server_index = match &self.conn {
            Conn::Up(up) => up.server,
            _ => self.walk.index,
        };
        status::build(&status::Inputs {
            iface: self.active,
            ip: self.net[self.active.index()].ip,
            halt: self.halt,
            rolled_back: self.rolled_back_since_boot,
            time_synced: self.time_offset.is_some(),
            uptime_s: (now / 1000) as u32,
            firmware: self.firmware,
            config_version: self.cfg.version,
            log_drops: self.log.drops(),
            log_backlog: self.log.len(),
            traffic: self.traffic,
            gsm_signal: self.signal,
            radio: self.radio,
            relays: self.relays.state(),
            server_index,
        })
    }

    /// Produces the next datagram, if one is due: (interface, source port, destination, length
    /// in `self.scratch`).
    fn next_send(
        &mut self,
        now: u64,
        rng: &mut dyn Entropy,
    ) -> Option<(Iface, u16, Endpoint, usize)> {
        // Handshakes first: main attempt, then the Ethernet probe.
        if matches!(&self.conn, Conn::Hello(a) if a.hello_due(now)) {
            let counter = self.next_counter();
            if let Conn::Hello(a) = &mut self.conn {
                let n = a.hello(
                    &self.keys,
                    self.device_id,
                    counter,
                    now,
                    rng,
                    &mut self.scratch[..tek_proto::MAX_DATAGRAM],
                )?;
                self.stats.hellos += 1;
                return Some((a.iface, a.port, a.to, n));
            }
        }
        if matches!(&self.probe, Probe::Hello(a) if a.hello_due(now))
            && self.net[Iface::Ethernet.index()].ready()
        {
            let counter = self.next_counter();
            if let Probe::Hello(a) = &mut self.probe {
                let n = a.hello(
                    &self.keys,
                    self.device_id,
                    counter,
                    now,
                    rng,
                    &mut self.scratch[..tek_proto::MAX_DATAGRAM],
                )?;
                self.stats.hellos += 1;
                return Some((a.iface, a.port, a.to, n));
            }
        }
        if !matches!(self.conn, Conn::Up(_)) {
            return None;
        }
        let status = if self.status_due {
            Some(self.status_report(now))
        } else {
            None
        };
        let version = self.cfg.version;
        let ka_ms = self.keepalive_ms();
        let batch_ms = u64::from(self.cfg.running.batch_s) * 1000;
        let Conn::Up(up) = &mut self.conn else {
            return None;
        };
        let n = if let Some((v, result)) = self.config_ack.take() {
            seal(
                &mut up.session,
                &Message::ConfigAck { version: v, result },
                &mut self.scratch[..tek_proto::MAX_DATAGRAM],
            )
        } else if let Some(v) = self.rollback_report.take() {
            seal(
                &mut up.session,
                &Message::ConfigAck {
                    version: v,
                    result: ConfigResult::RolledBack,
                },
                &mut self.scratch[..tek_proto::MAX_DATAGRAM],
            )
        } else if let Some((id, result)) = self.command_acks.pop_front() {
            seal(
                &mut up.session,
                &Message::CommandAck { id, result },
                &mut self.scratch[..tek_proto::MAX_DATAGRAM],
            )
        } else if let Some(s) = status {
            self.status_due = false;
            self.next_status_at = now + session::STATUS_EVERY_MS;
            seal(
                &mut up.session,
                &Message::Status(s),
                &mut self.scratch[..tek_proto::MAX_DATAGRAM],
            )
        } else if let Some(n) = Self::batch(
            up,
            &self.log,
            &mut self.stats,
            now,
            batch_ms,
            &mut self.scratch[..tek_proto::MAX_DATAGRAM],
        ) {
            Some(n)
        } else if let Some(p) = up
            .probing
            .filter(|p| now >= p.next_at && p.tries < session::TRIES)
        {
            up.probing = Some(Probing {
                tries: p.tries + 1,
                next_at: now + session::retry_timeout(p.tries + 1),
            });
            seal(
                &mut up.session,
                &Message::Keepalive {
                    reply_wanted: true,
                    config_version: version,
                },
                &mut self.scratch[..tek_proto::MAX_DATAGRAM],
            )
        } else if up.probing.is_none() && now >= up.last_tx + ka_ms {
            let reply_wanted =
                now.saturating_sub(up.last_rx) > session::reply_after_ms(ka_ms, batch_ms);
            if reply_wanted {
                up.probing = Some(Probing {
                    tries: 1,
                    next_at: now + session::retry_timeout(1),
                });
            }
            seal(
                &mut up.session,
                &Message::Keepalive {
                    reply_wanted,
                    config_version: version,
                },
                &mut self.scratch[..tek_proto::MAX_DATAGRAM],
            )
        } else {
            None
        }?;
        up.last_tx = now;
        Some((up.iface, up.port, up.to, n))
    }

    fn batch(
        up: &mut Up,
        log: &Log<LOG>,
        stats: &mut Stats,
        now: u64,
        batch_ms: u64,
        tx: &mut [u8],
    ) -> Option<usize> {
        let now_s = (now / 1000) as u32;
        let body = tx.get_mut(HEADER_LEN..HEADER_LEN + MAX_MESSAGE)?;
        match up.batch {
            Some(b) if now >= b.next_at && b.tries < session::TRIES => {
                match session::write_batch(log, b.first, b.last, now_s, body) {
                    Some((len, first, _)) => {
                        stats.batch_retries += 1;
                        up.batch = Some(InFlight {
                            first,
                            last: b.last,
                            tries: b.tries + 1,
                            next_at: now + session::retry_timeout(b.tries + 1),
                        });
                        up.session.seal_in_place(tx, len).ok()
                    }
                    None => {
                        // Every record of the batch was dropped from a full log meanwhile.
                        up.batch = None;
                        None
                    }
                }
            }
            None if !log.is_empty()
                && (now >= up.next_batch_at || log.len() >= session::FULL_BATCH) =>
            {
                let (len, first, last) =
                    session::write_batch(log, log.first_seq(), u32::MAX, now_s, body)?;
                stats.batches += 1;
                stats.records_sent += last.wrapping_sub(first) + 1;
                up.batch = Some(InFlight {
                    first,
                    last,
                    tries: 1,
                    next_at: now + session::retry_timeout(1),
                });
                up.next_batch_at = now + batch_ms;
                up.session.seal_in_place(tx, len).ok()
            }
            _ => None,
        }
    }

    // ----- queries ------------------------------------------------------------------------

    /// Counters since power-up.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The boot counter of this boot (the hello counter's high half).
    pub fn boot_counter(&self) -> u32 {
        self.boot
    }

    /// Whether a session is established.
    pub fn is_connected(&self) -> bool {
        matches!(self.conn, Conn::Up(_))
    }

    /// The index of the server of the current session.
    pub fn server_index(&self) -> Option<u8> {
        match &self.conn {
            Conn::Up(up) => Some(up.server),
            _ => None,
        }
    }

    /// The interface in use.
    pub fn transport(&self) -> Iface {
        self.active
    }

    /// The running configuration and its version.
    pub fn config(&self) -> (u32, &Config) {
        (self.cfg.version, &self.cfg.running)
    }

    /// Whether a network change is on trial.
    pub fn on_trial(&self) -> bool {
        self.cfg.previous.is_some()
    }

    /// The Ethernet fixed settings in effect (`None`: DHCP).
    pub fn ethernet_in_use(&self) -> Option<crate::StaticIp> {
        self.eth_in_use
    }

    /// The relay bitmap.
    pub fn relays(&self) -> u8 {
        self.relays.state()
    }

    /// The telemetry log.
    pub fn log(&self) -> &Log<LOG> {
        &self.log
    }

    /// Bytes per transport since power-up.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Unix time at `now`, once a server has told the time.
    pub fn unix_time(&self, now: u64) -> Option<i64> {
        self.time_offset.map(|o| o + (now / 1000) as i64)
    }

    /// Everything observable except traffic counters and `Stats::ignored`, for tests that
    /// check that a datagram changed nothing.
    #[cfg(test)]
    pub(crate) fn fingerprint(&self) -> std::string::String {
        let conn = match &self.conn {
            Conn::Up(up) => std::format!(
                "up {} {} {:?} {:?} {} {} {:?} {} {:?} {}",
                up.server,
                up.port,
                up.session.send_counter(),
                up.session.highest_received(),
                up.session.session_id(),
                up.counter,
                up.batch,
                up.last_rx,
                up.probing,
                up.next_batch_at
            ),
            other => std::format!("{other:?}"),
        };
        let stats = Stats {
            ignored: 0,
            ..self.stats
        };
        std::format!(
            "{conn} | {:?} {:?} | log {} {} {} | cfg {} {:?} {:?} | relays {} | t {:?} | {:?} | \
             {:?} {:?} {:?} {} {} {} | {:?} {:?} {:?}",
            self.walk,
            self.probe,
            self.log.first_seq(),
            self.log.len(),
            self.log.drops(),
            self.cfg.version,
            self.cfg.previous.as_ref().map(|p| p.0),
            self.cfg.rolled_back,
            self.relays.state(),
            self.time_offset,
            stats,
            self.config_ack,
            self.rollback_report,
            self.command_acks,
            self.status_due,
            self.effects.len(),
            self.attempts,
            self.active,
            self.net,
            self.last_command
        )
    }

    /// The status report as it would be sent at `now`.
    pub fn status(&self, now: u64) -> Status {
        self.status_report(now)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod schedule_tests;
