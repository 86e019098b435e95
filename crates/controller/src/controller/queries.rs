//! The controller's read-only side: counters, state and the status report, for the host.

use super::Controller;
use crate::connect::Conn;
use crate::{Iface, Stats};
use tek_proto::message::config::Config;
use tek_proto::message::status::{Status, Traffic};

impl<L: crate::record_log::RecordLog, X: crate::channel_part::ChannelSupport> Controller<L, X> {
    /// Counters since power-up.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The boot counter of this boot (the hello counter's high half).
    pub fn boot_counter(&self) -> u32 {
        self.hellos.boot
    }

    /// Whether a session is established.
    pub fn is_connected(&self) -> bool {
        self.link.is_up()
    }

    /// The index of the server of the current session.
    pub fn server_index(&self) -> Option<u8> {
        match &self.link.conn {
            Conn::Up(up) => Some(up.server),
            _ => None,
        }
    }

    /// The interface in use.
    pub fn transport(&self) -> Iface {
        self.transport.active
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
        self.cfg.eth_boot
    }

    /// The relay bitmap.
    pub fn relays(&self) -> u8 {
        self.plant.relays.state()
    }

    /// The last five-channel record taken in this boot (the `records_logged`-th).
    pub fn last_record(&self) -> Option<&crate::log::LogRecord> {
        self.logging.last.as_ref()
    }

    /// The telemetry log.
    pub fn log(&self) -> &L {
        &self.logging.log
    }

    /// Bytes per transport since power-up.
    pub fn traffic(&self) -> Traffic {
        self.transport.traffic
    }

    /// Unix time at `now`, once a server has told the time.
    pub fn unix_time(&self, now: u64) -> Option<i64> {
        self.plant.unix_time(now)
    }

    /// The status report as it would be sent at `now`.
    pub fn status(&self, now: u64) -> Status {
        self.status_report(now)
    }
}
