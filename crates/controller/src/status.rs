//! The status report (message 0x02): what the server shows about a device besides its data.
//!
//! Sent at session start, when something in it changes (transport, IP settings, configuration
//! version, relays, rollback), on the server's request, and every hour for the traffic counters.
//! Status is not acknowledged: the next one supersedes it.

use crate::{Iface, IpInfo, Radio};
use tek_proto::message::status::{flag, Status, Traffic, Transport};

/// Everything a status report is made of.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Interface in use.
    pub iface: Iface,
    /// Its IP settings, if any.
    pub ip: Option<IpInfo>,
    /// HALT held at power-up.
    pub halt: bool,
    /// A rollback happened since boot.
    pub rolled_back: bool,
    /// The clock was set by a server.
    pub time_synced: bool,
    /// Seconds since power-up.
    pub uptime_s: u32,
    /// Firmware version.
    pub firmware: [u8; 3],
    /// Running configuration version.
    pub config_version: u32,
    /// Log drops since boot.
    pub log_drops: u32,
    /// Records waiting for acknowledgement.
    pub log_backlog: usize,
    /// Traffic counters.
    pub traffic: Traffic,
    /// Modem signal (0..=31, 99 unknown).
    pub gsm_signal: u8,
    /// Modem state.
    pub radio: Radio,
    /// Relay bitmap.
    pub relays: u8,
    /// Server in use.
    pub server_index: u8,
}

/// Builds the report.
pub fn build(i: &Inputs) -> Status {
    let ip = i.ip.unwrap_or_default();
    let mut flags = 0;
    if ip.dhcp && i.ip.is_some() {
        flags |= flag::DHCP;
    }
    if i.halt {
        flags |= flag::HALT;
    }
    if i.rolled_back {
        flags |= flag::ROLLED_BACK;
    }
    if i.time_synced {
        flags |= flag::TIME_SYNCED;
    }
    Status {
        transport: match i.iface {
            Iface::Ethernet => Transport::Ethernet,
            Iface::Gsm => Transport::Gsm,
        },
        flags,
        ip: ip.ip,
        netmask: ip.netmask,
        gateway: ip.gateway,
        dns: ip.dns,
        uptime_s: i.uptime_s,
        firmware: i.firmware,
        config_version: i.config_version,
        log_drops: i.log_drops,
        log_backlog: i.log_backlog.min(usize::from(u16::MAX)) as u16,
        traffic: i.traffic,
        gsm_signal: if i.gsm_signal <= 31 { i.gsm_signal } else { 99 },
        radio: i.radio,
        relays: i.relays,
        server_index: i.server_index.min(7),
    }
}
