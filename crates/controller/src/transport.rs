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
//!
//! [`Transport`] is this part of the controller: the state of both interfaces, the one in use,
//! the modem, the probe and the Ethernet settings in effect. [`Transport::poll`] fails over,
//! [`Transport::return_to_ethernet`] comes back, [`Transport::redial`] restarts the modem.

use crate::attempt::Attempt;
use crate::connect::{self, Servers};
use crate::effects::{Effect, Effects};
use crate::Stats;
use crate::{Endpoint, Iface, IpInfo, Radio, StaticIp};
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

/// The transport part of the controller.
#[derive(Debug)]
pub(crate) struct Transport {
    /// Both interfaces, by [`Iface::index`].
    pub net: [NetState; 2],
    /// The interface in use.
    pub active: Iface,
    /// The modem is powered (the controller asked for it).
    pub modem_on: bool,
    /// The modem's radio state, for status.
    pub radio: Radio,
    /// The modem's signal quality (0..=31, 99 unknown).
    pub signal: u8,
    /// The Ethernet probe while on GSM.
    pub probe: Probe,
    /// Ethernet probe interval; 0: [`PROBE_EVERY_MS`] (see `Controller::set_probe_interval`).
    pub probe_every_ms: u32,
    /// Power-up, or the last authenticated datagram over Ethernet: the failover clock.
    pub eth_ok_at: u64,
    /// Bytes per transport since power-up.
    pub traffic: Traffic,
    /// A GSM modem is fitted.
    pub has_gsm: bool,
}

impl Transport {
    /// The all-zero placeholder of `Controller::blank` (`Some`: `None` is a non-zero niche).
    pub const BLANK: Transport = Transport {
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
        probe: Probe::Off,
        probe_every_ms: 0,
        eth_ok_at: 0,
        traffic: Traffic {
            eth_tx: 0,
            eth_rx: 0,
            gsm_tx: 0,
            gsm_rx: 0,
        },
        has_gsm: false,
    };

    /// Power-up in place: Ethernet in use with `eth` (fixed settings, `None`: DHCP: the
    /// configuration's settings in effect, `ConfigState::eth_boot`), which is queued to be
    /// configured; the modem (if `has_gsm`) off.
    pub fn start(&mut self, now: u64, eth: Option<StaticIp>, has_gsm: bool, effects: &mut Effects) {
        // Every field by name, without `..`: a field added later cannot be forgotten here.
        let Transport {
            net,
            active,
            modem_on,
            radio,
            signal,
            probe,
            // Kept across a restart: the host sets it once (a property of the board).
            probe_every_ms: _,
            eth_ok_at,
            traffic,
            has_gsm: gsm,
        } = self;
        *net = [NetState::default(); 2];
        *active = Iface::Ethernet;
        *modem_on = false;
        *radio = Radio::Off;
        *signal = 99;
        *probe = Probe::Off;
        *eth_ok_at = now;
        *traffic = Traffic::default();
        *gsm = has_gsm;
        effects.configure_ethernet(eth);
    }

    /// Whether `iface` can send.
    pub fn ready(&self, iface: Iface) -> bool {
        self.net[iface.index()].ready()
    }

    /// A link change; returns whether the link was lost.
    pub fn link(&mut self, iface: Iface, up: bool) -> bool {
        let st = &mut self.net[iface.index()];
        if st.link == up {
            return false;
        }
        st.link = up;
        !up
    }

    /// New IP settings; returns whether those of the interface in use changed.
    pub fn ip_configured(&mut self, iface: Iface, info: IpInfo) -> bool {
        let st = &mut self.net[iface.index()];
        st.link = true;
        if st.ip != Some(info) {
            st.ip = Some(info);
            return iface == self.active;
        }
        false
    }

    /// `iface` went down: a probe under way is given up (the next one waits a full interval
    /// after Ethernet last worked).
    pub fn lost(&mut self, iface: Iface) {
        if iface == Iface::Ethernet && !matches!(self.probe, Probe::Off) {
            self.probe = Probe::Idle {
                next_at: self.eth_ok_at.saturating_add(self.probe_every()),
            };
        }
    }

    fn probe_every(&self) -> u64 {
        if self.probe_every_ms == 0 {
            PROBE_EVERY_MS
        } else {
            u64::from(self.probe_every_ms)
        }
    }

    fn probe_later(&mut self, now: u64) {
        self.probe = Probe::Idle {
            next_at: now + self.probe_every(),
        };
    }

    /// An authenticated datagram or a session over `iface` at `now`: Ethernet works.
    pub fn heard(&mut self, now: u64, iface: Iface) {
        if iface == Iface::Ethernet {
            self.eth_ok_at = now;
        }
    }

    /// When the controller fails over to GSM, if it may: a modem is fitted, Ethernet is in use
    /// and no session is up; `gsm_failover_s` after Ethernet last worked.
    pub fn failover_at(&self, connected: bool, failover_s: u16) -> Option<u64> {
        (self.has_gsm && self.active == Iface::Ethernet && !connected)
            .then(|| self.eth_ok_at + u64::from(failover_s) * 1000)
    }

    /// Advances to `now`: fails over to GSM at `failover_at`, and walks the Ethernet probe
    /// (its first server is `servers`' first). Returns whether it failed over (the server walk
    /// then starts again, over GSM).
    pub fn poll(
        &mut self,
        now: u64,
        failover_at: Option<u64>,
        servers: Servers<'_>,
        effects: &mut Effects,
        stats: &mut Stats,
    ) -> bool {
        let failed_over = failover_at.is_some_and(|t| now >= t);
        if failed_over {
            stats.failovers += 1;
            self.active = Iface::Gsm;
            self.modem_on = true;
            self.net[Iface::Gsm.index()] = NetState::default();
            effects.push(Effect::ModemUp);
            self.probe_later(now);
        }
        match &self.probe {
            Probe::Idle { next_at } if now >= *next_at => {
                match servers.target(0) {
                    Some(s) if self.ready(Iface::Ethernet) => {
                        self.probe = match connect::first_step(Iface::Ethernet, 0, s, now, effects)
                        {
                            Ok(a) => Probe::Hello(a),
                            Err((token, deadline)) => Probe::Resolving { token, deadline },
                        }
                    }
                    _ => self.probe_later(now),
                };
            }
            Probe::Resolving { deadline, .. } if now >= *deadline => self.probe_later(now),
            Probe::Hello(a) if a.failed(now) => self.probe_later(now),
            _ => {}
        }
        failed_over
    }

    /// A DNS answer for the probe (if `token` is the probe's).
    pub fn dns_answer(
        &mut self,
        now: u64,
        token: u16,
        addr: Option<[u8; 4]>,
        servers: Servers<'_>,
    ) {
        if let Probe::Resolving { token: t, .. } = self.probe {
            if t == token {
                match addr {
                    Some(addr) => {
                        self.probe = Probe::Hello(Attempt::new(
                            Iface::Ethernet,
                            0,
                            Endpoint {
                                addr,
                                port: servers.port(0),
                            },
                            now,
                        ))
                    }
                    None => self.probe_later(now),
                };
            }
        }
    }

    /// The probe's attempt, if a Hello of it is due and Ethernet can send.
    pub fn probe_hello_due(&mut self, now: u64) -> Option<&mut Attempt> {
        let ready = self.ready(Iface::Ethernet);
        match &mut self.probe {
            Probe::Hello(a) if ready && a.hello_due(now) => Some(a),
            _ => None,
        }
    }

    /// The probe reached a server over Ethernet (its Welcome, in `Controller::on_welcome`,
    /// which takes the probe's attempt for the session): Ethernet is in use again, the modem
    /// hangs up.
    pub fn return_to_ethernet(&mut self, now: u64, effects: &mut Effects, stats: &mut Stats) {
        stats.returns += 1;
        self.active = Iface::Ethernet;
        self.eth_ok_at = now;
        if self.modem_on {
            self.modem_on = false;
            effects.push(Effect::ModemDown);
        }
        self.net[Iface::Gsm.index()] = NetState::default();
        self.radio = Radio::Off;
    }

    /// New GSM settings while the modem is in use: hang up and dial again. Returns whether GSM
    /// is the interface in use (its session is then gone).
    pub fn redial(&mut self, effects: &mut Effects) -> bool {
        effects.push(Effect::ModemDown);
        effects.push(Effect::ModemUp);
        self.net[Iface::Gsm.index()] = NetState::default();
        self.active == Iface::Gsm
    }

    /// Ethernet must use other settings now (`eth`: fixed settings, `None`: DHCP): its IP
    /// settings are gone until it is configured again.
    pub fn reconfigure_ethernet(&mut self, eth: Option<StaticIp>, effects: &mut Effects) {
        self.net[Iface::Ethernet.index()].ip = None;
        effects.configure_ethernet(eth);
    }

    /// When [`poll`](Self::poll) has something to do for the probe.
    pub fn poll_at(&self) -> u64 {
        match &self.probe {
            Probe::Off => u64::MAX,
            Probe::Idle { next_at } => *next_at,
            Probe::Resolving { deadline, .. } => *deadline,
            Probe::Hello(a) => a.next_at,
        }
    }
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
