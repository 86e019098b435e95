//! Test harness: a fake clock, a fake network and in-process servers built from tek-proto's
//! `handshake::respond` and `Session`, driving one [`Controller`] deterministically.
//!
//! Time only moves when the harness moves it: it jumps to the controller's `poll_at()` (or the
//! next sensor reading), delivers datagrams with zero latency, and checks the poll contract on
//! the way: after `poll` returned `None`, `poll_at()` must lie in the future.

use crate::channel_part::{ChannelSupport, NoChannels};
use crate::channels::ChannelBus;
use crate::persist::{self, Stored};
use crate::record_log::RecordLog;
use crate::{
    Action, Controller, Endpoint, EthernetSetup, Iface, IpInfo, Led, Reading, Setup, XorShift,
};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::string::{String, ToString};
use std::vec::Vec;
use tek_proto::backlog::{accepts, BacklogMessage, Records};
use tek_proto::channel::faults::FaultEntry;
use tek_proto::channel::split::{feature, ChunkAck};
use tek_proto::channel::ChannelMessage;
use tek_proto::crypto::DeviceKeys;
use tek_proto::handshake;
use tek_proto::message::config::Config;
use tek_proto::message::status::Status;
use tek_proto::message::{Command, CommandResult, ConfigItems, ConfigResult, Message};
use tek_proto::session::Session;

pub const KEY: [u8; 16] = [0x42; 16];
pub const ID: u32 = 1234;
pub const ETH_IP: [u8; 4] = [10, 0, 2, 15];
pub const GSM_IP: [u8; 4] = [100, 64, 7, 9];

/// An in-process server for one device.
pub struct Server {
    pub ep: Endpoint,
    pub alive: bool,
    /// Answer Hellos but never acknowledge telemetry.
    pub withhold_acks: bool,
    keys: DeviceKeys,
    accepted: Rc<Cell<u64>>,
    session: Option<Session>,
    pub device_ep: Option<Endpoint>,
    next_session_id: u32,
    pub hellos: Vec<(Endpoint, u64)>,
    pub records: BTreeMap<(u32, u32), tek_proto::message::Record>,
    pub config_acks: Vec<(u32, ConfigResult)>,
    pub command_acks: Vec<(u32, CommandResult)>,
    pub statuses: Vec<Status>,
    pub keepalives: Vec<bool>,
    pub batches: u32,
    /// The type code of every message of a session, in arrival order.
    pub kinds: Vec<u8>,
    /// Messages of types version 1 does not know (the channel extension), whole.
    pub extension: Vec<Vec<u8>>,
    /// Wide records stored: (boot, seq) -> the value of every channel of the batch.
    pub wide: BTreeMap<(u32, u32), Vec<Option<i32>>>,
    /// ChunkAcks received.
    pub chunk_acks: Vec<ChunkAck>,
    /// ChannelFaults received.
    pub faults: Vec<Vec<FaultEntry>>,
    /// A server from before PROTOCOL.md 18: never answers Capabilities, drops Backlog.
    pub old: bool,
    /// The server time of every five-channel record stored: (boot, seq) -> time.
    pub times: BTreeMap<(u32, u32), u32>,
    /// Backlogs received: (boot, first seq, last seq, estimated).
    pub backlogs: Vec<(u32, u32, u32, bool)>,
    /// Backlogs in WideTelemetry's layout received (their records go into `wide`).
    pub wide_backlogs: usize,
    /// Accepts sent.
    pub accepts_sent: u32,
    boot: u32,
    pub time: u32,
}

impl Server {
    pub fn new(ep: Endpoint, accepted: Rc<Cell<u64>>) -> Server {
        Server {
            ep,
            alive: true,
            withhold_acks: false,
            keys: handshake::device_keys(KEY),
            accepted,
            session: None,
            device_ep: None,
            next_session_id: ep.addr[3] as u32 * 1000 + 1,
            hellos: Vec::new(),
            records: BTreeMap::new(),
            config_acks: Vec::new(),
            command_acks: Vec::new(),
            statuses: Vec::new(),
            keepalives: Vec::new(),
            batches: 0,
            kinds: Vec::new(),
            extension: Vec::new(),
            wide: BTreeMap::new(),
            chunk_acks: Vec::new(),
            faults: Vec::new(),
            old: false,
            times: BTreeMap::new(),
            backlogs: Vec::new(),
            wide_backlogs: 0,
            accepts_sent: 0,
            boot: 0,
            time: 1_750_000_000,
        }
    }

    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// Handles one datagram from the device; returns the replies.
    pub fn handle(&mut self, from: Endpoint, dg: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if !self.alive {
            return out;
        }
        if let Ok(h) = handshake::verify_hello(&self.keys, dg) {
            self.hellos.push((from, h.counter));
            if h.device_id != ID || h.counter <= self.accepted.get() {
                return out;
            }
            self.accepted.set(h.counter);
            self.boot = (h.counter >> 32) as u32;
            let mut buf = [0u8; 64];
            self.next_session_id += 1;
            let (s, n) = handshake::respond(
                &self.keys,
                &h,
                self.next_session_id,
                [self.next_session_id as u8; 16],
                self.time,
                &mut buf,
            )
            .unwrap();
            self.session = Some(s);
            self.device_ep = Some(from);
            out.push(buf[..n].to_vec());
            return out;
        }
        let Some(s) = &mut self.session else {
            return out;
        };
        let mut copy = dg.to_vec();
        let Ok(bytes) = s.open(&mut copy) else {
            return out;
        };
        self.kinds.push(bytes.first().copied().unwrap_or(0));
        let Ok(msg) = Message::parse(bytes) else {
            return out;
        };
        self.device_ep = Some(from);
        let mut reply = None;
        let mut raw_reply: Option<Vec<u8>> = None;
        if let Message::Unknown(_) = msg {
            self.extension.push(bytes.to_vec());
            if let (false, Ok(Some(BacklogMessage::Backlog(b)))) =
                (self.old, BacklogMessage::parse(bytes))
            {
                if b.boot < self.boot {
                    self.batches += 1;
                    let (first_seq, last_seq) = match b.records {
                        Records::Telemetry(t) => {
                            for r in t.records() {
                                self.records.insert((b.boot, r.seq), r);
                                self.times.insert((b.boot, r.seq), self.time - r.age_s);
                            }
                            (t.first_seq(), t.last_seq())
                        }
                        Records::Wide(t) => {
                            self.wide_backlogs += 1;
                            for r in t.records() {
                                let values = (0..t.channels().len()).map(|c| r.get(c)).collect();
                                self.wide.insert((b.boot, r.seq), values);
                                self.times.insert((b.boot, r.seq), self.time - r.age_s);
                            }
                            (t.first_seq(), t.last_seq())
                        }
                    };
                    self.backlogs
                        .push((b.boot, first_seq, last_seq, b.estimated));
                    if !self.withhold_acks {
                        let ack = BacklogMessage::BacklogAck {
                            boot: b.boot,
                            through_seq: last_seq,
                        };
                        let mut m = [0u8; 9];
                        let n = ack.emit(&mut m).unwrap();
                        raw_reply = Some(m[..n].to_vec());
                    }
                }
            }
            match ChannelMessage::parse(bytes) {
                Ok(Some(ChannelMessage::Capabilities(c)))
                    if !self.old && c.features & feature::BACKLOG != 0 =>
                {
                    self.accepts_sent += 1;
                    let mut m = [0u8; 5];
                    let n = BacklogMessage::Accepts(accepts::BACKLOG)
                        .emit(&mut m)
                        .unwrap();
                    raw_reply = Some(m[..n].to_vec());
                }
                Ok(Some(ChannelMessage::WideTelemetry(t))) => {
                    self.batches += 1;
                    let mut last = t.first_seq();
                    for r in t.records() {
                        let values = (0..t.channels().len()).map(|c| r.get(c)).collect();
                        self.wide.insert((self.boot, r.seq), values);
                        last = r.seq;
                    }
                    reply = (!self.withhold_acks).then_some(Message::Ack {
                        through_seq: last,
                        server_time: self.time,
                    });
                }
                Ok(Some(ChannelMessage::ChunkAck(a))) => self.chunk_acks.push(a),
                Ok(Some(ChannelMessage::ChannelFaults(f))) => {
                    self.faults.push(f.entries().collect())
                }
                _ => {}
            }
        }
        let reply = reply.or(match msg {
            Message::Telemetry(t) => {
                self.batches += 1;
                for r in t.records() {
                    self.records.insert((self.boot, r.seq), r);
                    self.times.insert((self.boot, r.seq), self.time - r.age_s);
                }
                (!self.withhold_acks).then_some(Message::Ack {
                    through_seq: t.last_seq(),
                    server_time: self.time,
                })
            }
            Message::Keepalive { reply_wanted, .. } => {
                self.keepalives.push(reply_wanted);
                reply_wanted.then_some(Message::Pong {
                    server_time: self.time,
                })
            }
            Message::Status(st) => {
                self.statuses.push(st);
                None
            }
            Message::ConfigAck { version, result } => {
                self.config_acks.push((version, result));
                None
            }
            Message::CommandAck { id, result } => {
                self.command_acks.push((id, result));
                None
            }
            _ => None,
        });
        if let Some(m) = reply {
            let mut buf = [0u8; 1024];
            let n = s.seal_message(&m, &mut buf).unwrap();
            out.push(buf[..n].to_vec());
        }
        if let Some(m) = raw_reply {
            let mut buf = [0u8; 1024];
            buf[tek_proto::wire::data::HEADER_LEN..][..m.len()].copy_from_slice(&m);
            let n = s.seal_in_place(&mut buf, m.len()).unwrap();
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// Seals a server-initiated message given as bytes (type and body) for the device.
    pub fn seal_bytes(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let s = self.session.as_mut()?;
        let mut buf = [0u8; 1024];
        buf[tek_proto::wire::data::HEADER_LEN..][..msg.len()].copy_from_slice(msg);
        let n = s.seal_in_place(&mut buf, msg.len()).ok()?;
        Some(buf[..n].to_vec())
    }

    /// Seals a server-initiated message for the device.
    pub fn seal(&mut self, msg: &Message<'_>) -> Option<Vec<u8>> {
        let s = self.session.as_mut()?;
        let mut buf = [0u8; 1024];
        let n = s.seal_message(msg, &mut buf).ok()?;
        Some(buf[..n].to_vec())
    }
}

/// An owned copy of an action, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Did {
    Send {
        iface: Iface,
        from_port: u16,
        to: Endpoint,
        len: usize,
        kind: u8,
    },
    Resolve(String),
    Configure(EthernetSetup),
    ModemUp(String),
    ModemDown,
    Relay(u8, bool),
    Persist(u8),
    PersistChannels(u8),
    Led(Led),
    Reset,
}

pub struct Net<const N: usize, X: ChannelSupport = NoChannels, L: RecordLog = crate::log::Log<N>> {
    pub ctl: Controller<L, X>,
    /// The channel part's two flash slots.
    pub channel_flash: [Vec<u8>; 2],
    /// The channel sources: with one, the harness samples through it instead of feeding
    /// readings.
    pub bus: Option<std::boxed::Box<dyn ChannelBus>>,
    pub now: u64,
    pub rng: XorShift,
    pub servers: Vec<Server>,
    pub dns: BTreeMap<String, [u8; 4]>,
    pub eth_plugged: bool,
    pub eth_path: bool,
    pub gsm_path: bool,
    pub has_gsm: bool,
    pub flash: [Vec<u8>; 2],
    pub did: Vec<(u64, Did)>,
    /// Every datagram a server sent to the device: (iface, from, to port, bytes).
    pub captured: Vec<(Iface, Endpoint, u16, Vec<u8>)>,
    pub water_cc: i16,
    pub next_reading: u64,
    pub factory: Vec<String>,
    pub halt: bool,
    pub energy_wh: u32,
    /// Air temperature of the readings, 0.01 °C.
    pub air_cc: i16,
    /// With `Some(epoch)`, the servers' clocks run: epoch + wall time in seconds (else they
    /// stand still).
    pub server_clock: Option<u32>,
    /// Wall time before the current boot, ms (`now` restarts at every reboot).
    pub wall_ms: u64,
}

pub fn ep(last: u8, port: u16) -> Endpoint {
    Endpoint {
        addr: [192, 0, 2, last],
        port,
    }
}

impl<const N: usize> Net<N> {
    /// A controller with servers at 192.0.2.1.., listed by IP (`"192.0.2.1:8844"`), blank flash.
    pub fn new(servers: usize) -> Net<N> {
        Self::with_channels(servers, NoChannels)
    }

    pub fn with_list(factory: Vec<String>, servers: usize) -> Net<N> {
        Self::with_list_and_channels(factory, servers, NoChannels)
    }
}

impl<const N: usize, X: ChannelSupport> Net<N, X> {
    /// As [`Net::new`], with the channel part `channels`.
    pub fn with_channels(servers: usize, channels: X) -> Net<N, X> {
        let list: Vec<String> = (1..=servers)
            .map(|i| std::format!("192.0.2.{i}:8844"))
            .collect();
        Self::with_list_and_channels(list, servers, channels)
    }

    pub fn with_list_and_channels(factory: Vec<String>, servers: usize, channels: X) -> Net<N, X> {
        Net::with_log(factory, servers, channels, crate::log::Log::new())
    }
}

impl<const N: usize, X: ChannelSupport, L: RecordLog> Net<N, X, L> {
    /// As [`Net::with_list_and_channels`], with the telemetry log `log`.
    pub fn with_log(factory: Vec<String>, servers: usize, channels: X, log: L) -> Net<N, X, L> {
        let accepted = Rc::new(Cell::new(0));
        let srv = (1..=servers)
            .map(|i| Server::new(ep(i as u8, 8844), accepted.clone()))
            .collect();
        let flash = [
            std::vec![0xFF; persist::MAX_LEN],
            std::vec![0xFF; persist::MAX_LEN],
        ];
        let ctl = Self::boot_ctl(&factory, &flash, false, true, channels, log, 0);
        Net {
            ctl,
            channel_flash: [std::vec![0xFF; 8192], std::vec![0xFF; 8192]],
            bus: None,
            now: 0,
            rng: XorShift::new(99),
            servers: srv,
            dns: BTreeMap::new(),
            eth_plugged: true,
            eth_path: true,
            gsm_path: true,
            has_gsm: true,
            flash,
            did: Vec::new(),
            captured: Vec::new(),
            water_cc: 2600,
            next_reading: 0,
            factory,
            halt: false,
            energy_wh: 1000,
            air_cc: 1800,
            server_clock: None,
            wall_ms: 0,
        }
    }

    fn boot_ctl(
        factory: &[String],
        flash: &[Vec<u8>; 2],
        halt: bool,
        gsm: bool,
        channels: X,
        log: L,
        now: u64,
    ) -> Controller<L, X> {
        let list: Vec<&str> = factory.iter().map(|s| s.as_str()).collect();
        let stored: Option<Stored> = persist::load(&flash[0], &flash[1]);
        Controller::new_with_log(
            Setup {
                device_id: ID,
                key: KEY,
                factory_servers: &list,
                firmware: [0, 1, 0],
                halt,
                has_gsm: gsm,
                stored,
            },
            channels,
            log,
            now,
        )
    }

    /// Power-cycles the controller (RAM lost, flash kept). Time restarts at 0. The first
    /// controller of a test is built by `Controller::new` from `persist::load`; every reboot
    /// re-boots that one in place, reading the flash slots like the firmware does
    /// (`boot_from_flash`), so both power-up paths run through every test that reboots.
    pub fn reboot(&mut self, halt: bool) {
        self.halt = halt;
        self.wall_ms += self.now;
        self.now = 0;
        self.next_reading = 0;
        let list: Vec<&str> = self.factory.iter().map(|s| s.as_str()).collect();
        let flash = &self.flash;
        self.ctl.boot_from_flash(
            Setup {
                device_id: ID,
                key: KEY,
                factory_servers: &list,
                firmware: [0, 1, 0],
                halt,
                has_gsm: self.has_gsm,
                stored: None,
            },
            &mut |slot, buf| read_slot(flash, slot, buf),
            0,
        );
        let [a, b] = &self.channel_flash;
        self.ctl.restore_channels(a, b, 0);
    }

    pub fn server_index(&self, to: Endpoint) -> Option<usize> {
        self.servers.iter().position(|s| s.ep == to)
    }

    fn path_ok(&self, iface: Iface) -> bool {
        match iface {
            Iface::Ethernet => self.eth_plugged && self.eth_path,
            Iface::Gsm => self.gsm_path,
        }
    }

    fn local_ip(iface: Iface) -> [u8; 4] {
        match iface {
            Iface::Ethernet => ETH_IP,
            Iface::Gsm => GSM_IP,
        }
    }

    /// Polls until idle, carrying out every action.
    pub fn drain(&mut self) {
        for _ in 0..10_000 {
            let now = self.now;
            let Some(action) = self.ctl.poll(now, &mut self.rng) else {
                let at = self.ctl.poll_at();
                assert!(
                    at > now,
                    "poll returned None but poll_at {at} <= now {now}: {}",
                    self.ctl.fingerprint()
                );
                return;
            };
            let mut send = None;
            let did = match action {
                Action::Send {
                    iface,
                    from_port,
                    to,
                    bytes,
                } => {
                    send = Some((iface, from_port, to, bytes.to_vec()));
                    Did::Send {
                        iface,
                        from_port,
                        to,
                        len: bytes.len(),
                        kind: bytes[1],
                    }
                }
                Action::Resolve { iface, token, name } => {
                    let name = name.to_string();
                    let answer = if self.path_ok(iface) {
                        self.dns.get(&name).copied()
                    } else {
                        None
                    };
                    self.ctl.dns_answer(now, token, answer);
                    Did::Resolve(name)
                }
                Action::ConfigureEthernet(setup) => {
                    if self.eth_plugged {
                        let info = match setup {
                            EthernetSetup::Dhcp => IpInfo {
                                ip: ETH_IP,
                                netmask: [255, 255, 255, 0],
                                gateway: [10, 0, 2, 2],
                                dns: [10, 0, 2, 3],
                                dhcp: true,
                            },
                            EthernetSetup::Static(s) => IpInfo {
                                ip: s.ip,
                                netmask: s.netmask,
                                gateway: s.gateway,
                                dns: s.dns,
                                dhcp: false,
                            },
                        };
                        self.ctl.ip_configured(now, Iface::Ethernet, info);
                    }
                    Did::Configure(setup)
                }
                Action::ModemUp { apn, .. } => {
                    let apn = apn.to_string();
                    self.ctl.ip_configured(
                        now,
                        Iface::Gsm,
                        IpInfo {
                            ip: GSM_IP,
                            netmask: [255, 255, 255, 255],
                            gateway: GSM_IP,
                            dns: [8, 8, 8, 8],
                            dhcp: false,
                        },
                    );
                    Did::ModemUp(apn)
                }
                Action::ModemDown => Did::ModemDown,
                Action::SetRelay { relay, on } => Did::Relay(relay, on),
                Action::Persist { slot, record } => {
                    let r = record.to_vec();
                    let s = &mut self.flash[usize::from(slot)];
                    s.fill(0xFF);
                    s[..r.len()].copy_from_slice(&r);
                    Did::Persist(slot)
                }
                Action::PersistChannels { slot, record } => {
                    let r: Vec<u8> = record.concat();
                    let s = &mut self.channel_flash[usize::from(slot)];
                    s.fill(0xFF);
                    s[..r.len()].copy_from_slice(&r);
                    Did::PersistChannels(slot)
                }
                Action::Led(l) => Did::Led(l),
                Action::Reset => Did::Reset,
            };
            self.did.push((now, did));
            if let Some((iface, port, to, bytes)) = send {
                assert!(tek_proto::length_ok(bytes.len()));
                if !self.path_ok(iface) {
                    continue;
                }
                let from = Endpoint {
                    addr: Self::local_ip(iface),
                    port,
                };
                let Some(i) = self.server_index(to) else {
                    continue;
                };
                if let Some(epoch) = self.server_clock {
                    self.servers[i].time = epoch + ((self.wall_ms + self.now) / 1000) as u32;
                }
                let replies = self.servers[i].handle(from, &bytes);
                for r in replies {
                    self.deliver(iface, to, port, r);
                }
            }
        }
        panic!("controller never went idle");
    }

    /// Delivers a datagram from `from` to the controller's `port` on `iface`.
    pub fn deliver(&mut self, iface: Iface, from: Endpoint, port: u16, mut bytes: Vec<u8>) {
        if !self.path_ok(iface) {
            return;
        }
        self.captured.push((iface, from, port, bytes.clone()));
        self.ctl.receive(self.now, iface, from, port, &mut bytes);
    }

    /// A server pushes a message to the device at its last known endpoint.
    pub fn push_from(&mut self, server: usize, msg: &Message<'_>) {
        let s = &mut self.servers[server];
        let (Some(bytes), Some(dev)) = (s.seal(msg), s.device_ep) else {
            panic!("no session")
        };
        let from = s.ep;
        let iface = if dev.addr == GSM_IP {
            Iface::Gsm
        } else {
            Iface::Ethernet
        };
        self.deliver(iface, from, dev.port, bytes);
        self.drain();
    }

    pub fn push_config(&mut self, server: usize, version: u32, cfg: &Config) {
        let mut buf = [0u8; 1024];
        let items = ConfigItems::encode(cfg, &mut buf).unwrap();
        self.push_from(
            server,
            &Message::Config {
                version,
                config: items,
            },
        );
    }

    pub fn push_command(&mut self, server: usize, id: u32, command: Command) {
        self.push_from(server, &Message::Command { id, command });
    }

    /// Runs the clock forward to `until` (milliseconds since this boot).
    pub fn run_until(&mut self, until: u64) {
        self.drain();
        while self.now < until {
            let next = self
                .ctl
                .poll_at()
                .min(if self.bus.is_some() {
                    self.ctl.sample_at()
                } else {
                    self.next_reading
                })
                .min(until)
                .max(self.now + 1);
            self.now = next;
            if let Some(bus) = self.bus.as_mut() {
                // A Modbus answer arrives a few bytes per receive, at once: a device's UART
                // interrupt would call for a poll after each.
                for _ in 0..64 {
                    self.ctl.sample(self.now, bus.as_mut());
                }
            } else if self.now >= self.next_reading {
                self.energy_wh += 25;
                self.ctl.sensor(
                    self.now,
                    Reading {
                        power_w: 1500,
                        energy_wh: self.energy_wh,
                        water_cc: Some(self.water_cc),
                        air_cc: Some(self.air_cc),
                    },
                );
                self.next_reading = self.now + 10_000;
            }
            self.drain();
        }
    }

    pub fn run_for(&mut self, ms: u64) {
        let t = self.now + ms;
        self.run_until(t);
    }

    pub fn hello_log(&self) -> Vec<(u64, Iface, u16, Endpoint)> {
        // Hellos are the 46-byte sends that are not session datagrams; the server records
        // them too, but a dead server records nothing, so use the action log.
        self.did
            .iter()
            .filter_map(|(t, d)| match d {
                Did::Send {
                    iface,
                    from_port,
                    to,
                    kind: 1,
                    ..
                } => Some((*t, *iface, *from_port, *to)),
                _ => None,
            })
            .collect()
    }
}

/// Reads a slot of the harness's flash into `buf` as the firmware's flash driver does (erased
/// bytes past the end read as 0xFF).
pub fn read_slot(flash: &[Vec<u8>; 2], slot: u8, buf: &mut [u8]) -> bool {
    let Some(src) = flash.get(usize::from(slot)) else {
        return false;
    };
    buf.fill(0xFF);
    let n = buf.len().min(src.len());
    buf[..n].copy_from_slice(&src[..n]);
    true
}

/// A config with `servers` as its list.
pub fn config_with_servers(servers: &[&str]) -> Config {
    let mut c = Config::default();
    for s in servers {
        c.servers
            .push(heapless::String::try_from(*s).unwrap())
            .unwrap();
    }
    c
}
