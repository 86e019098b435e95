//! Ethernet first, GSM as failover, and the way back.
//!
//! * The controller uses Ethernet while it can. When Ethernet has not reached any server for
//!   `gsm_failover_s` (counted from power-up or from the last authenticated datagram over
//!   Ethernet), it powers the GSM modem up with the configured APN/login/password and walks the
//!   server list over GSM.
//! * While on GSM it probes Ethernet every 10 minutes: one handshake attempt over Ethernet with
//!   the first server of the list. When the probe gets a Welcome, the controller takes that
//!   session, drops the GSM one and powers the modem down.
//! * IP bytes (datagram + 20 bytes IPv4 header + 8 bytes UDP header) are counted per transport,
//!   sent and received, for the status report: cellular data costs money.

use crate::connect::Attempt;
use crate::{Iface, IpInfo};
use tek_proto::message::status::Traffic;

/// How often Ethernet is probed while on GSM.
pub const PROBE_EVERY_MS: u64 = 600_000;
/// IPv4 and UDP headers, counted with every datagram.
pub const IP_UDP_OVERHEAD: u32 = 28;

/// What the controller knows of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetState {
    /// Link (carrier, or modem data connection) up.
    pub link: bool,
    /// IP settings, once configured.
    pub ip: Option<IpInfo>,
}

impl NetState {
    /// Whether datagrams can be sent.
    pub fn ready(&self) -> bool {
        self.link && self.ip.is_some()
    }
}

/// The Ethernet probe while on GSM. `repr(u8)`: an explicit tag, 0 for `Off`, so a blank
/// controller is all zero bytes (see `Controller::blank`).
#[derive(Debug, Clone)]
#[repr(u8)]
pub enum Probe {
    /// Not on GSM.
    Off,
    /// Next probe at this time.
    Idle {
        /// When.
        next_at: u64,
    },
    /// Resolving the first server's name over Ethernet.
    Resolving {
        /// DNS query token.
        token: u16,
        /// Give up at.
        deadline: u64,
    },
    /// Handshake attempt over Ethernet.
    Hello(Attempt),
}

/// Adds one datagram of `len` bytes to the counters.
pub fn count(traffic: &mut Traffic, iface: Iface, sent: bool, len: usize) {
    let bytes = (len as u32).wrapping_add(IP_UDP_OVERHEAD);
    let c = match (iface, sent) {
        (Iface::Ethernet, true) => &mut traffic.eth_tx,
        (Iface::Ethernet, false) => &mut traffic.eth_rx,
        (Iface::Gsm, true) => &mut traffic.gsm_tx,
        (Iface::Gsm, false) => &mut traffic.gsm_rx,
    };
    *c = c.wrapping_add(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ip_bytes_per_transport() {
        let mut t = Traffic::default();
        count(&mut t, Iface::Ethernet, true, 46);
        count(&mut t, Iface::Gsm, false, 28);
        count(&mut t, Iface::Gsm, true, 100);
        assert_eq!(
            t,
            Traffic {
                eth_tx: 74,
                eth_rx: 0,
                gsm_tx: 128,
                gsm_rx: 56
            }
        );
    }
}
