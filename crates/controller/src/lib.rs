//! # tek-controller — the TEK controller's logic, without hardware
//!
//! Everything a TEK pool controller decides, as a state machine in the style of smoltcp's poll
//! model: the host (the LM3S6965 firmware, the fleet simulator, unit tests) feeds **events** in
//! and carries **actions** out. The crate reads no clock, opens no socket and allocates nothing:
//!
//! * time is an argument: milliseconds since power-up (`now`);
//! * events are methods on [`Controller`]: [`link`](Controller::link),
//!   [`ip_configured`](Controller::ip_configured), [`dns_answer`](Controller::dns_answer),
//!   [`receive`](Controller::receive), [`sensor`](Controller::sensor),
//!   [`modem_state`](Controller::modem_state); the HALT input and the flash contents are part of
//!   the [`Setup`] given to [`Controller::new`] — or, on a device that cannot afford the
//!   controller on its stack, to [`Controller::boot`] / [`Controller::boot_from_flash`] on a
//!   `static` initialised with the all-zero [`Controller::blank`] (see [`controller`]);
//! * actions come out of [`Controller::poll`], one at a time, until it returns `None`; then
//!   [`Controller::poll_at`] says when to call again (sooner if an event arrives), and
//!   [`Controller::ports`] which local UDP ports must be open to receive.
//!
//! Randomness (source ports, handshake nonces, back-off jitter) comes in through the small
//! [`Entropy`] trait, so the firmware can use whatever it has and tests are deterministic.
//!
//! ## Modules, one concern each
//! * [`persist`] — the flash record: two slots with sequence number and CRC.
//! * [`log`] — the telemetry ring buffer (compile-time capacity, 16-byte records).
//! * [`thermostat`] — heater control with setpoint and hysteresis, relay overrides.
//! * [`schedule`] — the weekly schedule with holidays: pump and occupied/unoccupied setpoint.
//! * [`local_time`] — UTC to local time by the configuration's POSIX TZ rule.
//! * [`interlock`] — freeze protection and heater-only-with-pump, which nothing overrides.
//! * [`channels`] — the channel map run every sample through the [`channels::ChannelBus`]
//!   trait: board inputs, Modbus RTU reads one transaction at a time ([`modbus`]), computed
//!   channels; faults as "no value" with per-channel counters; the roles that feed the
//!   thermostat. [`wide_log`] keeps its records for wide telemetry in RAM, [`flash_log`] in
//!   NOR flash (a ring of erase pages, safe against power cuts).
//!
//! The parts of the controller, each owning its state with a small poll of its own (time in,
//! effects out):
//! * `connect` — the connection: the server list walk (DNS, handshake retries, back-off) and
//!   the Hellos.
//! * `session` — traffic in an established session: batches, keepalives, status, acks.
//! * `transport` — Ethernet/GSM failover, the Ethernet probe and the way back, byte counters.
//! * `config` — applying configurations, the trial and the rollback, HALT, the flash record.
//! * `logging` — readings into the telemetry log.
//! * `plant` — the relays (thermostat, schedule, interlocks) and the server's clock.
//! * `effects` — the queue of actions other than datagrams.
//! * `status` — the status report.
//! * [`controller`] — the thin [`Controller`] that composes them.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod attempt;
pub mod channel_part;
pub mod channels;
mod config;
mod connect;
pub mod controller;
mod effects;
pub mod flash_log;
pub mod interlock;
pub mod local_time;
pub mod log;
mod logging;
pub mod modbus;
pub mod persist;
mod plant;
pub mod record_log;
pub mod relay;
pub mod schedule;
mod session;
mod status;
pub mod thermostat;
mod transport;
pub mod wide_log;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod nor_sim;
#[cfg(test)]
mod testkit;

pub use controller::Controller;
use persist::Stored;
pub use tek_proto::message::config::StaticIp;
pub use tek_proto::message::status::Radio;

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

impl Stats {
    /// All zero, for `const` contexts (`Controller::blank`).
    pub(crate) const BLANK: Stats = Stats {
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
    };
}

/// A network interface of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Iface {
    /// The wired port.
    Ethernet,
    /// The GSM/3G modem's data connection.
    Gsm,
}

impl Iface {
    pub(crate) fn index(self) -> usize {
        match self {
            Iface::Ethernet => 0,
            Iface::Gsm => 1,
        }
    }
}

/// An IPv4 address and UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// IPv4 address.
    pub addr: [u8; 4],
    /// UDP port.
    pub port: u16,
}

/// The IPv4 settings an interface ended up with (from DHCP, fixed settings, or PPP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpInfo {
    /// Address.
    pub ip: [u8; 4],
    /// Netmask.
    pub netmask: [u8; 4],
    /// Gateway.
    pub gateway: [u8; 4],
    /// DNS server.
    pub dns: [u8; 4],
    /// Whether the settings came from a DHCP lease.
    pub dhcp: bool,
}

/// How the Ethernet interface must be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EthernetSetup {
    /// Obtain a lease by DHCP.
    Dhcp,
    /// Use these fixed settings.
    Static(StaticIp),
}

/// What the status LED should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Led {
    /// HALT was held at power-up: blink fast (fixed IP ignored, DHCP used).
    Halt,
    /// The interface in use has no IP settings yet.
    NoNetwork,
    /// Looking for a server.
    Connecting,
    /// A server accepted a session.
    Online,
}

/// One sensor reading. Feed one at least once per logging interval; the thermostat acts on
/// every reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// Electric power, watts.
    pub power_w: u32,
    /// Energy meter, watt-hours (cumulative).
    pub energy_wh: u32,
    /// Water temperature, 0.01 °C; `None` if the sensor failed.
    pub water_cc: Option<i16>,
    /// Air temperature, 0.01 °C; `None` if the sensor failed.
    pub air_cc: Option<i16>,
}

/// Something the host must do. Carry actions out in the order [`Controller::poll`] returns them:
/// a [`Action::Persist`] must be durable before the next action (the boot counter is written
/// before the first Hello of a boot).
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Send `bytes` as one UDP datagram on `iface` from local port `from_port` to `to`.
    Send {
        /// Interface to send on.
        iface: Iface,
        /// Local (source) UDP port.
        from_port: u16,
        /// Destination.
        to: Endpoint,
        /// The datagram.
        bytes: &'a [u8],
    },
    /// Resolve `name` (an IPv4 A record) using the DNS server of `iface`; answer with
    /// [`Controller::dns_answer`] and the same `token`.
    Resolve {
        /// Interface whose DNS server to ask.
        iface: Iface,
        /// Echo this in the answer.
        token: u16,
        /// The host name.
        name: &'a str,
    },
    /// (Re)configure the Ethernet interface; report the result with
    /// [`Controller::ip_configured`].
    ConfigureEthernet(EthernetSetup),
    /// Power the GSM modem up and open a data connection with these settings; report the
    /// connection with [`Controller::ip_configured`] on [`Iface::Gsm`].
    ModemUp {
        /// Access point name (may be blank).
        apn: &'a str,
        /// Login (may be blank).
        login: &'a str,
        /// Password (may be blank).
        password: &'a str,
    },
    /// Hang up and power the modem down.
    ModemDown,
    /// Switch a relay (0 pump, 1 heater, 2.. auxiliary).
    SetRelay {
        /// Relay number 0..=7.
        relay: u8,
        /// On or off.
        on: bool,
    },
    /// Write `record` into flash slot `slot` (0 or 1), replacing what was there. See
    /// [`persist`] for the format and [`persist::load`] to read it back at power-up.
    Persist {
        /// Slot 0 or 1.
        slot: u8,
        /// The whole record.
        record: &'a [u8],
    },
    /// Write the channel part's record into its own flash slot `slot` (0 or 1, two slots
    /// besides those of [`Action::Persist`]), replacing what was there: the concatenation of
    /// `record`'s pieces. See [`channel_part::record`] for the format; at power-up hand both
    /// slots to [`Controller::restore_channels`]. Only a controller with a channel part asks
    /// for it.
    PersistChannels {
        /// Slot 0 or 1.
        slot: u8,
        /// The record, in pieces to be written one after the other.
        record: [&'a [u8]; 4],
    },
    /// Show this pattern on the status LED.
    Led(Led),
    /// Restart the controller (after everything before this action was sent).
    Reset,
}

/// A source of random numbers. The firmware may use a seeded generator (QEMU has no TRNG):
/// source ports and nonces need to be unpredictable enough to not collide, while uniqueness of
/// handshakes comes from the persisted hello counter, not from these bytes.
pub trait Entropy {
    /// 32 random bits.
    fn next_u32(&mut self) -> u32;

    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(4) {
            let r = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// A small xorshift generator (not cryptographic), for hosts without a hardware generator and
/// for tests. Seed it from whatever varies between boots (MAC address, boot counter, timer
/// jitter of the first interrupts).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced by a fixed non-zero constant).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
}

impl Entropy for XorShift {
    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 32) as u32
    }
}
