//! The configuration the controller runs: applying a new one, keeping the previous one while a
//! network change is on trial, committing or rolling back.
//!
//! * A configuration whose version differs from the running one is applied and persisted, and
//!   confirmed with `Applied` — or `AppliedAtReset` when its Ethernet fixed-IP settings differ
//!   from those in effect since power-up (they take effect at the next reset).
//! * A change of network settings (Ethernet, GSM, server list) runs on trial: the previous
//!   configuration stays in flash. Once the change is in effect (at once for GSM settings and the
//!   server list, at the next boot for Ethernet settings), the device has `rollback_s` to reach a
//!   server. If it does, the trial ends; if not, the previous configuration is restored and the
//!   failed version is reported as rolled back.
//! * A re-sent copy of the running version is only confirmed again; a re-sent copy of a version
//!   that was rolled back is refused again.
//! * HALT held at power-up: the fixed Ethernet settings are ignored for this boot, DHCP is used
//!   (the one rule, [`ConfigState::ethernet_wanted`]).
//!
//! [`ConfigState`] is this part of the controller, with its small poll
//! ([`ConfigState::poll`]: the trial's end) and its flash record ([`ConfigState::restore`],
//! [`ConfigState::record`]).

use crate::persist::{self, Header, Stored};
use crate::StaticIp;
use tek_proto::message::config::{Config, Freeze, Gsm, Thermostat};
use tek_proto::message::ConfigResult;

/// What applying a configuration changed, for the controller to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The answer to send.
    pub result: ConfigResult,
    /// Whether the configuration actually changed (false for a re-sent copy).
    pub changed: bool,
    /// The server list changed: walk the new list.
    pub servers_changed: bool,
    /// The GSM settings changed: redial if the modem is in use.
    pub gsm_changed: bool,
}

/// Configuration state.
#[derive(Debug, Clone)]
pub struct ConfigState {
    /// Version of the running configuration.
    pub version: u32,
    /// The running configuration.
    pub running: Config,
    /// While a network change is on trial: the configuration to roll back to.
    pub previous: Option<(u32, Config)>,
    /// When the trial fails (`None` while the change waits for a reset to take effect).
    pub trial_deadline: Option<u64>,
    /// The last version rolled back.
    pub rolled_back: Option<u32>,
    /// The Ethernet settings in effect since power-up (`None` = DHCP, also under HALT).
    pub eth_boot: Option<StaticIp>,
    /// The HALT input was held at power-up.
    pub halt: bool,
    /// A trial was rolled back since power-up (a status flag).
    pub rolled_back_since_boot: bool,
    /// Sequence number of the last flash record written (or found at power-up).
    pub persist_seq: u32,
}

/// A configuration of zeros (not a valid one): the placeholder in [`ConfigState::BLANK`].
const ZERO_CONFIG: Config = Config {
    log_interval_s: 0,
    ethernet: None,
    gsm: Gsm {
        apn: heapless::String::new(),
        login: heapless::String::new(),
        password: heapless::String::new(),
    },
    servers: heapless::Vec::new(),
    thermostat: Thermostat {
        setpoint_cc: 0,
        hysteresis_cc: 0,
    },
    keepalive_s: 0,
    batch_s: 0,
    gsm_failover_s: 0,
    rollback_s: 0,
    schedule: None,
    holidays: heapless::Vec::new(),
    time_zone: heapless::String::new(),
    freeze: Freeze {
        limit_cc: 0,
        hysteresis_cc: 0,
    },
};

impl ConfigState {
    /// The all-zero placeholder of `Controller::blank`: `Some`, not `None`, where `None` is a
    /// non-zero niche value (2 in a bool or an `Option` tag), which would move the controller's
    /// static into `.data`, i.e. into flash.
    pub const BLANK: ConfigState = ConfigState {
        version: 0,
        running: ZERO_CONFIG,
        previous: Some((0, ZERO_CONFIG)),
        trial_deadline: None,
        rolled_back: None,
        eth_boot: None,
        halt: false,
        rolled_back_since_boot: false,
        persist_seq: 0,
    };

    /// Takes the flash record `s` (decoded by `persist::load`); returns its sequence number and
    /// boot counter, for [`start`](Self::start).
    pub fn load(&mut self, s: Stored) -> (u32, u32) {
        self.version = s.version;
        self.running = s.config;
        self.previous = s.previous;
        self.rolled_back = s.rolled_back;
        (s.seq, s.boot)
    }

    /// Reads both flash slots into `buf` with `read` and decodes the newest valid record into
    /// place (the older one if the newer does not decode): the same choice as `persist::load`,
    /// without a decoded copy on the stack. Returns its header (`None`: blank flash).
    pub fn restore(
        &mut self,
        read: &mut dyn FnMut(u8, &mut [u8]) -> bool,
        buf: &mut [u8],
    ) -> Option<Header> {
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
            if let Some(h) = persist::decode_into(buf, &mut self.running, &mut self.previous) {
                self.version = h.version;
                self.rolled_back = h.rolled_back;
                return Some(h);
            }
        }
        None
    }

    /// Power-up in place. With `found` (the flash record's sequence number: `version`,
    /// `running`, `previous` and `rolled_back` hold what flash held) sets what follows from them
    /// at boot; without, the factory configuration.
    pub fn power_up(&mut self, found: Option<u32>, halt: bool, now: u64) {
        match found {
            Some(seq) => self.persist_seq = seq,
            None => {
                self.version = 0;
                self.running = Config::DEFAULT;
                self.previous = None;
                self.rolled_back = None;
                self.persist_seq = 0;
            }
        }
        self.rolled_back_since_boot = false;
        self.halt = halt;
        self.start(now);
    }

    /// The HALT rule: the Ethernet settings to use — the running configuration's, or DHCP
    /// (`None`) while HALT was held at power-up, whatever the configuration says.
    pub fn ethernet_wanted(&self) -> Option<StaticIp> {
        if self.halt {
            None
        } else {
            self.running.ethernet
        }
    }

    /// The state at power-up from what flash held. A trial found in flash is in effect now (its
    /// Ethernet part took effect with this boot), so its clock starts. (The controller powers
    /// up in place with [`start`](Self::start); this builds a value for tests.)
    #[cfg(test)]
    pub fn boot(
        version: u32,
        running: Config,
        previous: Option<(u32, Config)>,
        rolled_back: Option<u32>,
        halt: bool,
        now: u64,
    ) -> ConfigState {
        let mut s = ConfigState {
            version,
            running,
            previous,
            trial_deadline: None,
            rolled_back,
            eth_boot: None,
            halt,
            rolled_back_since_boot: false,
            persist_seq: 0,
        };
        s.start(now);
        s
    }

    /// What follows at boot from what flash held: the trial clock, the Ethernet settings in
    /// effect. [`boot`](Self::boot) is this on a new value.
    fn start(&mut self, now: u64) {
        self.trial_deadline = self
            .previous
            .as_ref()
            .map(|_| now + u64::from(self.running.rollback_s) * 1000);
        self.eth_boot = self.ethernet_wanted();
    }

    /// Writes the next flash record into `buf` (the boot counter is `boot`); returns the slot
    /// to write it to and its length.
    pub fn record(&mut self, boot: u32, buf: &mut [u8]) -> (u8, usize) {
        self.persist_seq = self.persist_seq.wrapping_add(1);
        let n = persist::encode(
            buf,
            self.persist_seq,
            boot,
            self.version,
            &self.running,
            self.previous.as_ref().map(|(v, c)| (*v, c)),
            self.rolled_back,
        )
        .unwrap_or(0);
        ((self.persist_seq % 2) as u8, n)
    }

    /// Advances to `now`: ends a failed trial ([`check_rollback`](Self::check_rollback)); the
    /// restored Ethernet settings take effect at once (the failed ones did not work). Returns
    /// the failed version.
    pub fn poll(&mut self, now: u64) -> Option<u32> {
        let failed = self.check_rollback(now)?;
        self.rolled_back_since_boot = true;
        self.eth_boot = self.ethernet_wanted();
        Some(failed)
    }

    /// When [`poll`](Self::poll) has something to do.
    pub fn poll_at(&self) -> u64 {
        self.trial_deadline.unwrap_or(u64::MAX)
    }

    fn result(&self) -> ConfigResult {
        if self.running.ethernet != self.eth_boot {
            ConfigResult::AppliedAtReset
        } else {
            ConfigResult::Applied
        }
    }

    /// Applies configuration `version`. `None`: refused (a rolled-back version, or invalid).
    /// `new` is swapped into place, not copied (no configuration-sized temporary on a device's
    /// stack): afterwards it holds the replaced configuration, to be dropped.
    pub fn apply(&mut self, version: u32, new: &mut Config, now: u64) -> Option<Applied> {
        if new.validate().is_err() {
            return None;
        }
        if version == self.version {
            return Some(Applied {
                result: self.result(),
                changed: false,
                servers_changed: false,
                gsm_changed: false,
            });
        }
        if self.rolled_back == Some(version) {
            return Some(Applied {
                result: ConfigResult::RolledBack,
                changed: false,
                servers_changed: false,
                gsm_changed: false,
            });
        }
        let servers_changed = self.running.servers != new.servers;
        let gsm_changed = self.running.gsm != new.gsm;
        let immediate = servers_changed || gsm_changed;
        match &self.previous {
            None if self.running.network_differs(new) => {
                // The running configuration becomes the previous one by a swap, not a clone: no
                // configuration-sized temporary on a device's stack (`running` is set below).
                let prev = self.previous.insert((self.version, Config::DEFAULT));
                core::mem::swap(&mut prev.1, &mut self.running);
                self.trial_deadline = immediate.then(|| now + u64::from(new.rollback_s) * 1000);
            }
            Some((_, prev)) if !prev.network_differs(new) => {
                // Back to the known-good network settings: nothing left on trial.
                self.previous = None;
                self.trial_deadline = None;
            }
            Some(_) if immediate => {
                self.trial_deadline = Some(now + u64::from(new.rollback_s) * 1000);
            }
            _ => {}
        }
        self.version = version;
        core::mem::swap(&mut self.running, new);
        Some(Applied {
            result: self.result(),
            changed: true,
            servers_changed,
            gsm_changed,
        })
    }

    /// A server accepted a session: a running trial succeeded — all of it, unless new Ethernet
    /// settings still wait for a reset (or were ignored under HALT): then only the clock stops,
    /// and the Ethernet part gets its own trial at the next boot. Returns whether the stored
    /// state changed (persist).
    pub fn session_accepted(&mut self) -> bool {
        if self.previous.is_none() {
            return false;
        }
        self.trial_deadline = None;
        if self.running.ethernet != self.eth_boot {
            return false;
        }
        self.previous = None;
        true
    }

    /// Whether the trial failed by `now`. If so, restores the previous configuration and returns
    /// the failed version.
    pub fn check_rollback(&mut self, now: u64) -> Option<u32> {
        if self.trial_deadline.is_none_or(|d| now < d) {
            return None;
        }
        let (version, prev) = self.previous.as_mut()?;
        // Swapped back in place (no configuration-sized temporary), then dropped.
        core::mem::swap(&mut self.running, prev);
        let failed = self.version;
        self.version = *version;
        self.previous = None;
        self.trial_deadline = None;
        self.rolled_back = Some(failed);
        Some(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::String;

    fn with_server(name: &str) -> Config {
        let mut c = Config::default();
        c.servers.push(String::try_from(name).unwrap()).unwrap();
        c
    }

    fn fixed() -> StaticIp {
        StaticIp {
            ip: [192, 168, 1, 50],
            netmask: [255, 255, 255, 0],
            gateway: [192, 168, 1, 1],
            dns: [192, 168, 1, 1],
        }
    }

    #[test]
    fn plain_change_applies_without_trial() {
        let mut s = ConfigState::boot(1, Config::default(), None, None, false, 0);
        let mut c = Config::default();
        c.thermostat.setpoint_cc = 2900;
        let a = s.apply(2, &mut c.clone(), 10).unwrap();
        assert_eq!(a.result, ConfigResult::Applied);
        assert!(a.changed && !a.servers_changed);
        assert!(s.previous.is_none());
        assert!(!s.apply(2, &mut c, 20).unwrap().changed);
    }

    #[test]
    fn fixed_ip_at_reset_then_trial_at_boot() {
        let mut s = ConfigState::boot(1, Config::default(), None, None, false, 0);
        let c = Config {
            ethernet: Some(fixed()),
            ..Config::default()
        };
        let a = s.apply(2, &mut c.clone(), 10).unwrap();
        assert_eq!(a.result, ConfigResult::AppliedAtReset);
        assert_eq!(s.previous.as_ref().unwrap().0, 1);
        assert_eq!(s.trial_deadline, None, "waits for the reset");
        assert!(
            !s.session_accepted(),
            "a session before the reset proves nothing"
        );
        assert_eq!(s.check_rollback(u64::MAX), None);
        // After the reset.
        let mut s = ConfigState::boot(2, c, s.previous.clone(), None, false, 5_000);
        assert_eq!(s.trial_deadline, Some(5_000 + 900_000));
        assert_eq!(s.result(), ConfigResult::Applied);
        assert!(s.session_accepted());
        assert!(s.previous.is_none());
    }

    #[test]
    fn server_change_rolls_back() {
        let mut s = ConfigState::boot(3, with_server("good.example"), None, None, false, 0);
        let a = s.apply(4, &mut with_server("bad.example"), 1_000).unwrap();
        assert!(a.servers_changed);
        assert_eq!(s.check_rollback(900_999), None);
        assert_eq!(s.check_rollback(901_000), Some(4));
        assert_eq!(s.version, 3);
        assert_eq!(s.running, with_server("good.example"));
        assert_eq!(
            s.apply(4, &mut with_server("bad.example"), 2_000_000)
                .unwrap()
                .result,
            ConfigResult::RolledBack
        );
        assert_eq!(s.version, 3, "a rolled-back version is not applied again");
        // A new version is.
        assert!(
            s.apply(5, &mut with_server("other.example"), 0)
                .unwrap()
                .changed
        );
        // Changing back to the good settings ends the trial.
        s.apply(6, &mut with_server("good.example"), 0).unwrap();
        assert!(s.previous.is_none());
    }
}
