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

use crate::StaticIp;
use tek_proto::message::config::Config;
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
}

impl ConfigState {
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
        };
        s.start(halt, now);
        s
    }

    /// Power-up in place: `version`, `running`, `previous` and `rolled_back` hold what flash
    /// held; sets what follows from them at boot (the trial clock, the Ethernet settings in
    /// effect). [`boot`](Self::boot) is this on a new value.
    pub fn start(&mut self, halt: bool, now: u64) {
        self.trial_deadline = self
            .previous
            .as_ref()
            .map(|_| now + u64::from(self.running.rollback_s) * 1000);
        self.eth_boot = if halt { None } else { self.running.ethernet };
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
