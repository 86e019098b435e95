//! The fleet: one tokio task per simulated controller, each with its own UDP sockets.
//!
//! Each controller is a real `tek_controller::Controller` driven by the host loop its firmware
//! would run: feed events (datagrams, DNS answers, DHCP lease, modem up, sensor readings from
//! its [`Plant`]), carry out the actions, sleep until `poll_at`. Addresses:
//!
//! * Ethernet: 127.10.x.y (one loopback address per controller, so 10,000 controllers each get
//!   the whole 28672..=32767 source-port range and the server sees distinct peers);
//! * GSM: 127.130.x.y — a second transport that reaches the same servers from another address.
//!
//! Simulated time runs `speed` times faster than real time. Fault injection: Ethernet stops
//! carrying traffic (link still up, as when an ISP line dies) from a simulated time on, and may
//! come back later; a percentage of datagrams is dropped both ways; controllers are power-cycled
//! at an interval (flash kept, RAM lost).

use crate::channels::{PlantBus, SimChannels, CAPS, CAPS_METERS};
use crate::fleet::Device;
use crate::meters::{MeterBus, MeterPlan};
use crate::plant::Plant;
use crate::SIM_LOG;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tek_controller::persist;
use tek_controller::{
    Action, Controller, Endpoint, Entropy, Iface, IpInfo, Setup, Stats, XorShift,
};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often each controller takes a sensor reading, simulated milliseconds.
const SENSOR_EVERY_MS: u64 = 10_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The controllers.
    pub devices: Vec<Device>,
    /// Server list entries, `host:port`, in order (at most 8).
    pub servers: Vec<String>,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Ethernet stops carrying traffic at this simulated time (seconds since start).
    pub eth_fail_after_s: Option<f64>,
    /// Ethernet works again at this simulated time (seconds since start).
    pub eth_restore_after_s: Option<f64>,
    /// Percentage of datagrams dropped, each direction.
    pub drop_percent: f64,
    /// Each controller is power-cycled this often (simulated seconds, staggered).
    pub restart_every_s: Option<f64>,
    /// Whether the controllers have a GSM modem.
    pub gsm: bool,
    /// Real seconds over which the controllers power up (spreads the first handshakes).
    pub ramp_s: f64,
    /// The controllers have a channel part (`crate::channels`): they state Capabilities, sample
    /// the plant through their channel map and take split configurations.
    pub channels: bool,
    /// What is on the serial bus of some controllers, by device id (`crate::meters`): those
    /// have a channel part whatever `channels` says, stating one Modbus bus.
    pub meters: BTreeMap<u32, MeterPlan>,
}

impl Options {
    /// Defaults for `devices` against `servers`.
    pub fn new(devices: Vec<Device>, servers: Vec<String>) -> Options {
        let ramp_s = (devices.len() as f64 / 2000.0).clamp(0.0, 10.0);
        Options {
            devices,
            servers,
            speed: 1.0,
            eth_fail_after_s: None,
            eth_restore_after_s: None,
            drop_percent: 0.0,
            restart_every_s: None,
            gsm: true,
            ramp_s,
            channels: false,
            meters: BTreeMap::new(),
        }
    }
}

/// Live counters of the whole fleet.
#[derive(Debug, Default)]
pub struct Counters {
    /// Controllers in the fleet.
    pub devices: AtomicU64,
    /// Controllers with a session now.
    pub connected: AtomicU64,
    /// Controllers that had a session at least once.
    pub ever_connected: AtomicU64,
    /// Controllers using GSM now.
    pub on_gsm: AtomicU64,
    /// Sessions established.
    pub sessions: AtomicU64,
    /// Hellos sent.
    pub hellos: AtomicU64,
    /// Records logged.
    pub records_logged: AtomicU64,
    /// Records sent (first transmissions).
    pub records_sent: AtomicU64,
    /// Records acknowledged.
    pub records_acked: AtomicU64,
    /// Switches to GSM.
    pub failovers: AtomicU64,
    /// Switches back to Ethernet.
    pub returns: AtomicU64,
    /// Configurations applied.
    pub configs: AtomicU64,
    /// Power cycles.
    pub restarts: AtomicU64,
    /// Datagrams sent.
    pub datagrams_tx: AtomicU64,
    /// Datagrams received.
    pub datagrams_rx: AtomicU64,
    /// Datagrams dropped by fault injection.
    pub fault_drops: AtomicU64,
    /// Sockets that could not be bound.
    pub bind_errors: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// See [`Counters`].
    pub devices: u64,
    /// See [`Counters`].
    pub connected: u64,
    /// See [`Counters`].
    pub ever_connected: u64,
    /// See [`Counters`].
    pub on_gsm: u64,
    /// See [`Counters`].
    pub sessions: u64,
    /// See [`Counters`].
    pub hellos: u64,
    /// See [`Counters`].
    pub records_logged: u64,
    /// See [`Counters`].
    pub records_sent: u64,
    /// See [`Counters`].
    pub records_acked: u64,
    /// See [`Counters`].
    pub failovers: u64,
    /// See [`Counters`].
    pub returns: u64,
    /// See [`Counters`].
    pub configs: u64,
    /// See [`Counters`].
    pub restarts: u64,
    /// See [`Counters`].
    pub datagrams_tx: u64,
    /// See [`Counters`].
    pub datagrams_rx: u64,
    /// See [`Counters`].
    pub fault_drops: u64,
    /// See [`Counters`].
    pub bind_errors: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            devices: g(&self.devices),
            connected: g(&self.connected),
            ever_connected: g(&self.ever_connected),
            on_gsm: g(&self.on_gsm),
            sessions: g(&self.sessions),
            hellos: g(&self.hellos),
            records_logged: g(&self.records_logged),
            records_sent: g(&self.records_sent),
            records_acked: g(&self.records_acked),
            failovers: g(&self.failovers),
            returns: g(&self.returns),
            configs: g(&self.configs),
            restarts: g(&self.restarts),
            datagrams_tx: g(&self.datagrams_tx),
            datagrams_rx: g(&self.datagrams_rx),
            fault_drops: g(&self.fault_drops),
            bind_errors: g(&self.bind_errors),
        }
    }

    fn add_stats(&self, new: &Stats, old: &Stats) {
        let add = |a: &AtomicU64, n: u32, o: u32| {
            let d = n.wrapping_sub(o);
            if d != 0 {
                a.fetch_add(u64::from(d), Ordering::Relaxed);
            }
        };
        add(&self.sessions, new.sessions, old.sessions);
        add(&self.hellos, new.hellos, old.hellos);
        add(&self.records_logged, new.records_logged, old.records_logged);
        add(&self.records_sent, new.records_sent, old.records_sent);
        add(&self.records_acked, new.records_acked, old.records_acked);
        add(&self.failovers, new.failovers, old.failovers);
        add(&self.returns, new.returns, old.returns);
        add(&self.configs, new.configs_applied, old.configs_applied);
    }
}

/// What one boot of a controller saw acknowledged: every record of this boot with a sequence
/// number below `first_unacked_seq` was either acknowledged by a server (an Ack freed it) or,
/// when `dropped > 0`, dropped from the full log; with `dropped == 0` the acknowledged set is
/// exactly `0..first_unacked_seq`. Test hook for checking a server's storage against what the
/// devices were told (e.g. "every acknowledged record is stored exactly once").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedBoot {
    /// The boot counter (the hello counter's high half, the `boot` of stored records).
    pub boot: u32,
    /// The oldest sequence number not acknowledged yet (records start at 0 in each boot).
    pub first_unacked_seq: u32,
    /// Records dropped because the log was full, in this boot.
    pub dropped: u32,
}

/// The acknowledgement ledger of one controller: one entry per boot, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckLedger {
    /// Device id.
    pub device_id: u32,
    /// Index in the server list of the server holding its session now (`None`: no session).
    pub server_index: Option<u8>,
    /// Boots since the fleet started.
    pub boots: Vec<AckedBoot>,
}

struct Shared {
    start: Instant,
    speed: f64,
    counters: Arc<Counters>,
    /// Per controller (by index): its acknowledgement ledger.
    ledgers: Vec<std::sync::Mutex<AckLedger>>,
    servers: Vec<String>,
    /// Names of the server list, resolved once at start (the simulator's DNS).
    dns: Vec<(String, Ipv4Addr)>,
    eth_fail_ms: Option<u64>,
    eth_restore_ms: Option<u64>,
    drop_per_million: u32,
    restart_every_ms: Option<u64>,
    gsm: bool,
    channels: bool,
    ramp_ms: u64,
}

impl Shared {
    fn sim_now(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }

    fn real_at(&self, sim_ms: u64) -> tokio::time::Instant {
        let secs = sim_ms as f64 / 1000.0 / self.speed;
        // Far-future deadlines are capped (an idle controller still wakes now and then).
        tokio::time::Instant::from_std(self.start + Duration::from_secs_f64(secs.min(1.0e6)))
    }

    fn eth_cut(&self, t: u64) -> bool {
        self.eth_fail_ms.is_some_and(|f| t >= f) && self.eth_restore_ms.is_none_or(|r| t < r)
    }
}

/// A running fleet.
pub struct Fleet {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// The Ethernet and GSM addresses of controller `index`.
pub fn addresses(index: usize) -> (Ipv4Addr, Ipv4Addr) {
    let hi = (index / 62_500) as u8;
    let mid = ((index / 250) % 250) as u8;
    let lo = (index % 250) as u8 + 1;
    (
        Ipv4Addr::new(127, 10 + hi, mid, lo),
        Ipv4Addr::new(127, 130 + hi, mid, lo),
    )
}

impl Fleet {
    /// Checks the options, resolves the server names, raises the open-file limit and starts
    /// every controller. Must be called inside a tokio runtime.
    pub async fn start(opts: Options) -> anyhow::Result<Fleet> {
        if opts.servers.is_empty() || opts.servers.len() > 8 {
            bail!("give 1 to 8 servers (got {})", opts.servers.len());
        }
        if !(opts.speed > 0.0 && opts.speed <= 100_000.0) {
            bail!("speed must be in (0, 100000]");
        }
        if !(0.0..=100.0).contains(&opts.drop_percent) {
            bail!("drop percentage must be within 0..=100");
        }
        if opts.devices.len() > 62_500 * 100 {
            bail!("too many devices for the loopback address plan");
        }
        let mut dns = Vec::new();
        for s in &opts.servers {
            if !tek_proto::message::config::server_ok(s) {
                bail!(
                    "server {s:?} is not host:port (letters, digits, '-', '.', at most 63 bytes)"
                );
            }
            let (host, port) = s.rsplit_once(':').unwrap_or((s, "8844"));
            if host.parse::<Ipv4Addr>().is_err() {
                let addr = tokio::net::lookup_host((host, port.parse::<u16>().unwrap_or(8844)))
                    .await
                    .with_context(|| format!("cannot resolve server {host}"))?
                    .find_map(|a| match a {
                        SocketAddr::V4(v4) => Some(*v4.ip()),
                        SocketAddr::V6(_) => None,
                    })
                    .with_context(|| format!("server {host} has no IPv4 address"))?;
                dns.push((host.to_string(), addr));
            }
        }
        // 10,000 controllers need 10,000+ sockets.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let counters = Arc::new(Counters::default());
        counters
            .devices
            .store(opts.devices.len() as u64, Ordering::Relaxed);
        let sim = |s: f64| (s * 1000.0) as u64;
        let ledgers = opts
            .devices
            .iter()
            .map(|d| {
                std::sync::Mutex::new(AckLedger {
                    device_id: d.id,
                    server_index: None,
                    boots: Vec::new(),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            start: Instant::now(),
            speed: opts.speed,
            counters,
            ledgers,
            servers: opts.servers.clone(),
            dns,
            eth_fail_ms: opts.eth_fail_after_s.map(sim),
            eth_restore_ms: opts.eth_restore_after_s.map(sim),
            drop_per_million: (opts.drop_percent * 10_000.0) as u32,
            restart_every_ms: opts.restart_every_s.map(sim).filter(|&r| r > 0),
            gsm: opts.gsm,
            channels: opts.channels,
            ramp_ms: sim(opts.ramp_s * opts.speed),
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut plans = opts.meters;
        for (index, dev) in opts.devices.into_iter().enumerate() {
            let shared = shared.clone();
            let stopped = stopped.clone();
            let meters = plans.remove(&dev.id).map(|p| MeterBus::new(&p, dev.id));
            tasks.spawn(async move { run_device(index, dev, meters, shared, stopped).await });
        }
        Ok(Fleet {
            shared,
            stop,
            tasks,
        })
    }

    /// The live counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.shared.counters
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.counters.snapshot()
    }

    /// What each controller saw acknowledged so far, in fleet order (see [`AckedBoot`]).
    pub fn ack_ledgers(&self) -> Vec<AckLedger> {
        self.shared
            .ledgers
            .iter()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Simulated time since start.
    pub fn sim_elapsed(&self) -> Duration {
        Duration::from_millis(self.shared.sim_now())
    }

    /// Stops every controller, waits for them, and returns the final counters.
    pub async fn stop(mut self) -> Snapshot {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.shared.counters.snapshot()
    }
}

struct Sock {
    iface: Iface,
    port: u16,
    sock: UdpSocket,
}

fn bind(addr: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(SocketAddrV4::new(addr, port))?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

async fn recv_opt(s: Option<&Sock>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.sock.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

struct OsEntropy(XorShift);

impl Entropy for OsEntropy {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
}

fn os_seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Everything one simulated controller owns besides its logic.
struct Host {
    index: usize,
    dev: Device,
    eth_addr: Ipv4Addr,
    gsm_addr: Ipv4Addr,
    flash: [Vec<u8>; 2],
    /// The channel part's two flash slots (what was last written to each).
    channel_flash: [Vec<u8>; 2],
    plant: Plant,
    /// The meters on its serial bus, if it has any.
    meters: Option<MeterBus>,
    socks: Vec<Sock>,
    boot_at: u64,
    next_sensor: u64,
    eth_ip_at: Option<u64>,
    gsm_ip_at: Option<u64>,
    last: Stats,
    connected: bool,
    ever: bool,
    on_gsm: bool,
    reset: bool,
    rng: OsEntropy,
}

impl Host {
    fn new_controller(
        &self,
        shared: &Shared,
    ) -> Controller<tek_controller::log::Log<SIM_LOG>, SimChannels> {
        let list: Vec<&str> = shared.servers.iter().map(|s| s.as_str()).collect();
        let mut ctl = Controller::new_with_channels(
            Setup {
                device_id: self.dev.id,
                key: self.dev.key,
                factory_servers: &list,
                firmware: [0, 1, 0],
                halt: false,
                has_gsm: shared.gsm,
                stored: persist::load(&self.flash[0], &self.flash[1]),
            },
            match (&self.meters, shared.channels) {
                (Some(_), _) => SimChannels::stating(CAPS_METERS),
                (None, true) => SimChannels::stating(CAPS),
                (None, false) => SimChannels::default(),
            },
            0,
        );
        ctl.restore_channels(&self.channel_flash[0], &self.channel_flash[1], 0);
        ctl
    }

    fn drop_it(&mut self, shared: &Shared) -> bool {
        shared.drop_per_million > 0 && self.rng.next_u32() % 1_000_000 < shared.drop_per_million
    }

    fn info(addr: Ipv4Addr, dhcp: bool) -> IpInfo {
        IpInfo {
            ip: addr.octets(),
            netmask: [255, 0, 0, 0],
            gateway: [127, 0, 0, 1],
            dns: [127, 0, 0, 53],
            dhcp,
        }
    }

    /// Carries out one action.
    fn act(
        &mut self,
        shared: &Shared,
        t: u64,
        action: Action<'_>,
    ) -> Option<(u16, Option<[u8; 4]>)> {
        let c = &shared.counters;
        match action {
            Action::Send {
                iface,
                from_port,
                to,
                bytes,
            } => {
                if (iface == Iface::Ethernet && shared.eth_cut(t)) || self.drop_it(shared) {
                    c.fault_drops.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                if !self
                    .socks
                    .iter()
                    .any(|s| s.iface == iface && s.port == from_port)
                {
                    let addr = match iface {
                        Iface::Ethernet => self.eth_addr,
                        Iface::Gsm => self.gsm_addr,
                    };
                    match bind(addr, from_port) {
                        Ok(sock) => self.socks.push(Sock {
                            iface,
                            port: from_port,
                            sock,
                        }),
                        Err(_) => {
                            c.bind_errors.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                    }
                }
                let s = self
                    .socks
                    .iter()
                    .find(|s| s.iface == iface && s.port == from_port)?;
                let dest = SocketAddrV4::new(Ipv4Addr::from(to.addr), to.port);
                if s.sock.try_send_to(bytes, dest.into()).is_ok() {
                    c.datagrams_tx.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            Action::Resolve { token, name, .. } => {
                let addr = shared
                    .dns
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, a)| a.octets());
                Some((token, addr))
            }
            Action::ConfigureEthernet(_) => {
                // A DHCP lease (or fixed settings) in 300 ms.
                self.eth_ip_at = Some(t + 300);
                None
            }
            Action::ModemUp { .. } => {
                // Registration and PPP take a few seconds.
                self.gsm_ip_at = Some(t + 3_000);
                None
            }
            Action::ModemDown => {
                self.gsm_ip_at = None;
                None
            }
            Action::SetRelay { relay, on } => {
                self.plant.advance(t);
                self.plant.set_relay(relay, on);
                None
            }
            Action::Persist { slot, record } => {
                let f = &mut self.flash[usize::from(slot & 1)];
                f.fill(0xFF);
                f[..record.len()].copy_from_slice(record);
                None
            }
            Action::PersistChannels { slot, record } => {
                let f = &mut self.channel_flash[usize::from(slot & 1)];
                f.clear();
                for piece in record {
                    f.extend_from_slice(piece);
                }
                None
            }
            Action::Led(_) => None,
            Action::Reset => {
                self.reset = true;
                None
            }
        }
    }

    fn gauge(c: &AtomicU64, state: &mut bool, now: bool) {
        if *state != now {
            *state = now;
            if now {
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Updates controller `index`'s acknowledgement ledger from its log.
fn record_acked(
    shared: &Shared,
    index: usize,
    ctl: &Controller<tek_controller::log::Log<SIM_LOG>, SimChannels>,
) {
    let Some(ledger) = shared.ledgers.get(index) else {
        return;
    };
    let now = AckedBoot {
        boot: ctl.boot_counter(),
        first_unacked_seq: ctl.log().first_seq(),
        dropped: ctl.log().drops(),
    };
    let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
    l.server_index = ctl.server_index();
    match l.boots.last_mut() {
        Some(last) if last.boot == now.boot => *last = now,
        _ => l.boots.push(now),
    }
}

async fn run_device(
    index: usize,
    dev: Device,
    meters: Option<MeterBus>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let (eth_addr, gsm_addr) = addresses(index);
    let seed = os_seed();
    let mut host = Host {
        index,
        eth_addr,
        gsm_addr,
        flash: [vec![0xFF; persist::MAX_LEN], vec![0xFF; persist::MAX_LEN]],
        channel_flash: [Vec::new(), Vec::new()],
        plant: Plant::new(dev.id, 0),
        meters,
        dev,
        socks: Vec::new(),
        boot_at: 0,
        next_sensor: 0,
        eth_ip_at: None,
        gsm_ip_at: None,
        last: Stats::default(),
        connected: false,
        ever: false,
        on_gsm: false,
        reset: false,
        rng: OsEntropy(XorShift::new(seed)),
    };
    // Power-up spread over the ramp.
    let boot = if shared.ramp_ms > 0 {
        u64::from(host.rng.next_u32()) % shared.ramp_ms
    } else {
        0
    };
    tokio::select! {
        _ = tokio::time::sleep_until(shared.real_at(boot)) => {}
        _ = stop.changed() => return,
    }
    host.boot_at = shared.sim_now();
    host.plant = Plant::new(host.dev.id, host.boot_at);
    let mut ctl = Box::new(host.new_controller(&shared));
    let mut next_restart = shared
        .restart_every_ms
        .map(|r| host.boot_at + r / 2 + u64::from(host.rng.next_u32()) % r.max(1));
    let mut buf0 = vec![0u8; 1500];
    let mut buf1 = vec![0u8; 1500];
    let c = shared.counters.clone();
    let _ = host.index;
    loop {
        let t = shared.sim_now();
        if host.reset || next_restart.is_some_and(|r| t >= r) {
            c.add_stats(ctl.stats(), &host.last);
            host.last = Stats::default();
            host.reset = false;
            host.socks.clear();
            host.eth_ip_at = None;
            host.gsm_ip_at = None;
            host.boot_at = t;
            *ctl = host.new_controller(&shared);
            c.restarts.fetch_add(1, Ordering::Relaxed);
            next_restart = shared.restart_every_ms.map(|r| t + r);
        }
        let now = t - host.boot_at;
        if host.eth_ip_at.is_some_and(|at| t >= at) {
            host.eth_ip_at = None;
            ctl.ip_configured(now, Iface::Ethernet, Host::info(host.eth_addr, true));
        }
        if host.gsm_ip_at.is_some_and(|at| t >= at) {
            host.gsm_ip_at = None;
            ctl.ip_configured(now, Iface::Gsm, Host::info(host.gsm_addr, false));
        }
        if shared.channels || host.meters.is_some() {
            // The controller samples its channel map when it is due, or when a Modbus answer it
            // waits for has arrived (as the firmware polls when bytes come in).
            if let Some(m) = host.meters.as_mut() {
                m.at(t);
            }
            let answered = host
                .meters
                .as_ref()
                .and_then(MeterBus::answer_at)
                .is_some_and(|at| t >= at);
            if now >= ctl.sample_at() || answered {
                host.plant.advance(t);
                let mut board = PlantBus {
                    plant: &host.plant,
                    meters: host.meters.as_mut(),
                };
                ctl.sample(now, &mut board);
            }
            if let Some(m) = host.meters.as_mut() {
                m.drop_unread();
            }
            host.next_sensor = host.boot_at.saturating_add(ctl.sample_at());
            if let Some(at) = host.meters.as_ref().and_then(MeterBus::answer_at) {
                host.next_sensor = host.next_sensor.min(at);
            }
        } else if t >= host.next_sensor {
            host.plant.advance(t);
            ctl.sensor(now, host.plant.reading());
            host.next_sensor = t + SENSOR_EVERY_MS;
        }
        let mut answers: Vec<(u16, Option<[u8; 4]>)> = Vec::new();
        loop {
            while let Some(action) = ctl.poll(now, &mut host.rng) {
                if let Some(a) = host.act(&shared, t, action) {
                    answers.push(a);
                }
            }
            if answers.is_empty() {
                break;
            }
            for (token, addr) in answers.drain(..) {
                ctl.dns_answer(now, token, addr);
            }
        }
        // Close the sockets the controller no longer listens on.
        let ports = ctl.ports();
        host.socks.retain(|s| {
            ports
                .iter()
                .flatten()
                .any(|p| p.0 == s.iface && p.1 == s.port)
        });
        c.add_stats(ctl.stats(), &host.last);
        host.last = *ctl.stats();
        record_acked(&shared, index, &ctl);
        Host::gauge(&c.connected, &mut host.connected, ctl.is_connected());
        Host::gauge(&c.on_gsm, &mut host.on_gsm, ctl.transport() == Iface::Gsm);
        if ctl.is_connected() && !host.ever {
            host.ever = true;
            c.ever_connected.fetch_add(1, Ordering::Relaxed);
        }
        let mut wake = host.boot_at + ctl.poll_at();
        wake = wake.min(host.next_sensor);
        for at in [host.eth_ip_at, host.gsm_ip_at, next_restart]
            .into_iter()
            .flatten()
        {
            wake = wake.min(at);
        }
        let wake = wake.max(t + 1);
        let (r, which) = tokio::select! {
            r = recv_opt(host.socks.first(), &mut buf0) => (Some(r), 0),
            r = recv_opt(host.socks.get(1), &mut buf1) => (Some(r), 1),
            _ = tokio::time::sleep_until(shared.real_at(wake)) => (None, 0),
            _ = stop.changed() => break,
        };
        let Some(Ok((n, SocketAddr::V4(from)))) = r else {
            continue;
        };
        let Some(sock) = host.socks.get(which) else {
            continue;
        };
        let (iface, port) = (sock.iface, sock.port);
        c.datagrams_rx.fetch_add(1, Ordering::Relaxed);
        let t = shared.sim_now();
        if (iface == Iface::Ethernet && shared.eth_cut(t)) || host.drop_it(&shared) {
            c.fault_drops.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let buf = if which == 0 { &mut buf0 } else { &mut buf1 };
        ctl.receive(
            t - host.boot_at,
            iface,
            Endpoint {
                addr: from.ip().octets(),
                port: from.port(),
            },
            port,
            &mut buf[..n],
        );
    }
    c.add_stats(ctl.stats(), &host.last);
    if let Some(l) = shared.ledgers.get(index) {
        l.lock().unwrap_or_else(|p| p.into_inner()).server_index = None;
    }
    Host::gauge(&c.connected, &mut host.connected, false);
    Host::gauge(&c.on_gsm, &mut host.on_gsm, false);
}
