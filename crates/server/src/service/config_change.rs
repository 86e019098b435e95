//! One typed change of a device's configuration. Every face builds it from its own input — the
//! Configure form (`web::configure::SystemForm::change`), the JSON API
//! (`api::config::ConfigChangeJson::change`), `key=value` settings ([`crate::device_config`]:
//! the command line, MQTT, the bulk edit, the setpoint form) — and [`ConfigChange::apply`] applies
//! it here, once: the ranges, the fixed IP rules, the texts and the server list are checked, the
//! whole configuration is validated, and the audit detail names what changed.
//!
//! Parsing (is this a number, an address) stays with each face, in its own words; every rule
//! about the values is here. Messages start with the setting's label ("Logging interval",
//! "IP address", "GSM APN", "Server", ...), which the Configure page uses to show each message
//! under its field.

use std::net::Ipv4Addr;
use tek_proto::message::config::{self as pc, StaticIp};
use tek_proto::message::Config;

/// A text setting as the configuration holds it.
type Text = heapless::String<{ pc::MAX_TEXT }>;

/// A new GSM password, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GsmPassword {
    /// Replace the stored password.
    Set(String),
    /// Remove it.
    Clear,
}

/// A change: each field given replaces the configuration's; `None` keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// Logging interval, seconds.
    pub log_interval_s: Option<u16>,
    /// `Some(None)`: DHCP; `Some(Some(ip))`: a fixed IP.
    pub ethernet: Option<Option<StaticIp>>,
    /// GSM access point name.
    pub gsm_apn: Option<String>,
    /// GSM login.
    pub gsm_login: Option<String>,
    /// GSM password.
    pub gsm_password: Option<GsmPassword>,
    /// Server list, in order; empty: the controller's factory list.
    pub servers: Option<Vec<String>>,
    /// Thermostat setpoint, 0.01 °C.
    pub setpoint_cc: Option<i32>,
    /// Thermostat hysteresis, 0.01 °C.
    pub hysteresis_cc: Option<i32>,
    /// Keepalive interval, seconds.
    pub keepalive_s: Option<u16>,
    /// Telemetry batching, seconds.
    pub batch_s: Option<u16>,
    /// Ethernet silence before GSM, seconds.
    pub gsm_failover_s: Option<u16>,
    /// Trial time of a new network configuration, seconds.
    pub rollback_s: Option<u16>,
}

/// Where a text setting lives.
type TextField = fn(&mut Config) -> &mut Text;

/// Seconds settings: label, range, where the value lives.
type Seconds = (
    &'static str,
    std::ops::RangeInclusive<u16>,
    fn(&mut Config) -> &mut u16,
);

fn seconds_settings(ch: &ConfigChange) -> [(Option<u16>, Seconds); 5] {
    [
        (
            ch.log_interval_s,
            ("Logging interval", pc::range::LOG_INTERVAL_S, |c| {
                &mut c.log_interval_s
            }),
        ),
        (
            ch.keepalive_s,
            ("Keepalive", pc::range::KEEPALIVE_S, |c| &mut c.keepalive_s),
        ),
        (
            ch.batch_s,
            ("Batching", pc::range::BATCH_S, |c| &mut c.batch_s),
        ),
        (
            ch.gsm_failover_s,
            ("GSM failover", pc::range::GSM_FAILOVER_S, |c| {
                &mut c.gsm_failover_s
            }),
        ),
        (
            ch.rollback_s,
            ("Rollback", pc::range::ROLLBACK_S, |c| &mut c.rollback_s),
        ),
    ]
}

/// The message for a seconds setting that is not a whole number within its range (also what a
/// face says when the text is not a number at all).
pub fn seconds_message(label: &str, range: &std::ops::RangeInclusive<u16>) -> String {
    format!(
        "{label} must be a whole number of seconds from {} to {}.",
        range.start(),
        range.end()
    )
}

fn degrees(cc: i32) -> String {
    format!("{:.2}", f64::from(cc) / 100.0)
}

impl ConfigChange {
    /// Whether nothing is given.
    pub fn is_empty(&self) -> bool {
        *self == ConfigChange::default()
    }

    /// Applies the change to `c`. Every problem is reported (and `c` is only meaningful if
    /// there is none); otherwise the audit detail: what changed, `"no change"` if nothing did.
    /// The GSM password itself never appears in it.
    pub fn apply(&self, c: &mut Config) -> Result<String, Vec<String>> {
        let mut errors = Vec::new();
        let mut changes = Vec::new();
        for (value, (label, range, field)) in seconds_settings(self) {
            let Some(n) = value else { continue };
            if !range.contains(&n) {
                errors.push(seconds_message(label, &range));
                continue;
            }
            let slot = field(c);
            if *slot != n {
                changes.push(format!("{} {} -> {n} s", label.to_lowercase(), *slot));
                *slot = n;
            }
        }
        self.apply_thermostat(c, &mut errors, &mut changes);
        match self.ethernet {
            None => {}
            Some(None) => {
                if c.ethernet.is_some() {
                    changes.push("Ethernet: DHCP".into());
                }
                c.ethernet = None;
            }
            Some(Some(s)) if s.is_valid() => {
                if c.ethernet != Some(s) {
                    changes.push(format!("Ethernet: fixed IP {}", Ipv4Addr::from(s.ip)));
                }
                c.ethernet = Some(s);
            }
            Some(Some(s)) => errors.push(explain_static(&s)),
        }
        let texts: [(&str, Option<&String>, TextField); 2] = [
            ("GSM APN", self.gsm_apn.as_ref(), |c| &mut c.gsm.apn),
            ("GSM login", self.gsm_login.as_ref(), |c| &mut c.gsm.login),
        ];
        for (label, value, field) in texts {
            let Some(v) = value else { continue };
            match text(label, v) {
                Ok(t) if *field(c) != t => {
                    changes.push(format!("{label} {v:?}"));
                    *field(c) = t;
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        match &self.gsm_password {
            None => {}
            Some(GsmPassword::Clear) => {
                c.gsm.password.clear();
                changes.push("GSM password cleared".into());
            }
            Some(GsmPassword::Set(v)) => match text("GSM password", v) {
                Ok(t) => {
                    c.gsm.password = t;
                    changes.push("GSM password changed".into());
                }
                Err(e) => errors.push(e),
            },
        }
        if let Some(list) = &self.servers {
            self.apply_servers(list, c, &mut errors, &mut changes);
        }
        if errors.is_empty() {
            if let Err(e) = c.validate() {
                errors.push(format!("The configuration is not valid: {e}."));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(if changes.is_empty() {
            "no change".into()
        } else {
            changes.join("; ")
        })
    }

    /// [`apply`](Self::apply), after a face found `reading` problems in its input (the fields
    /// it could not read are left out of the change): every problem is reported together.
    pub fn apply_after(&self, c: &mut Config, reading: Vec<String>) -> Result<String, Vec<String>> {
        after_reading(reading, self.apply(c))
    }

    fn apply_thermostat(
        &self,
        c: &mut Config,
        errors: &mut Vec<String>,
        changes: &mut Vec<String>,
    ) {
        let before = c.thermostat;
        let r = pc::range::SETPOINT_CC;
        if let Some(cc) = self.setpoint_cc {
            match i16::try_from(cc).ok().filter(|v| r.contains(v)) {
                Some(v) => c.thermostat.setpoint_cc = v,
                None => errors.push(format!(
                    "Setpoint must be within {}..={} °C.",
                    degrees(i32::from(*r.start())),
                    degrees(i32::from(*r.end()))
                )),
            }
        }
        let r = pc::range::HYSTERESIS_CC;
        if let Some(cc) = self.hysteresis_cc {
            match u16::try_from(cc).ok().filter(|v| r.contains(v)) {
                Some(v) => c.thermostat.hysteresis_cc = v,
                None => errors.push(format!(
                    "Hysteresis must be within {}..={} °C.",
                    degrees(i32::from(*r.start())),
                    degrees(i32::from(*r.end()))
                )),
            }
        }
        if c.thermostat != before {
            changes.push(format!(
                "thermostat setpoint {} -> {} °C, hysteresis {} -> {} °C",
                degrees(before.setpoint_cc.into()),
                degrees(c.thermostat.setpoint_cc.into()),
                degrees(before.hysteresis_cc.into()),
                degrees(c.thermostat.hysteresis_cc.into())
            ));
        }
    }

    fn apply_servers(
        &self,
        list: &[String],
        c: &mut Config,
        errors: &mut Vec<String>,
        changes: &mut Vec<String>,
    ) {
        let before = errors.len();
        for s in list {
            if !pc::server_ok(s) {
                errors.push(format!(
                    "Server {s:?} is not a host name or IPv4 address, optionally with :port."
                ));
            }
        }
        if list.len() > pc::MAX_SERVERS {
            errors.push(format!(
                "At most {} servers can be listed.",
                pc::MAX_SERVERS
            ));
        }
        if errors.len() > before {
            return;
        }
        let mut servers = heapless::Vec::new();
        for s in list {
            match text("Server", s) {
                // The length was checked above.
                Ok(t) => servers.push(t).unwrap_or(()),
                Err(e) => return errors.push(e),
            }
        }
        if c.servers != servers {
            changes.push(format!(
                "servers: {}",
                if list.is_empty() {
                    "factory list".to_owned()
                } else {
                    list.join(", ")
                }
            ));
        }
        c.servers = servers;
    }
}

fn text(label: &str, v: &str) -> Result<Text, String> {
    let message = || format!("{label} must be printable ASCII of at most 63 characters.");
    if !pc::text_ok(v) {
        return Err(message());
    }
    Text::try_from(v).map_err(|_| message())
}

/// Degrees Celsius as a JSON number into hundredths, rounded; `None` beyond ±1,000 °C, where
/// no setting lies (and the `i32` would not hold every `f64`). The range rules are
/// [`ConfigChange::apply`]'s and `ScheduleEdit::apply`'s.
pub fn hundredths(celsius: f64) -> Option<i32> {
    let cc = (celsius * 100.0).round();
    (cc.abs() <= 100_000.0).then_some(cc as i32)
}

/// Parses one address of a fixed IP setting, `label` naming it ("IP address", "Netmask",
/// "Gateway", "DNS server"); a problem is pushed onto `errors`.
pub fn parse_addr(errors: &mut Vec<String>, label: &str, v: &str) -> Option<[u8; 4]> {
    let v = v.trim();
    if v.is_empty() {
        errors.push(format!(
            "{label} is required for a fixed IP address (or blank the IP address to use DHCP)."
        ));
        return None;
    }
    match v.parse::<Ipv4Addr>() {
        Ok(a) => Some(a.octets()),
        Err(_) => {
            errors.push(format!(
                "{label} {v:?} is not an IPv4 address like 192.168.1.20."
            ));
            None
        }
    }
}

/// Parses the four addresses of a fixed IP setting (labelled as [`parse_addr`] does); `None`
/// if any of them could not be read (each problem pushed onto `errors`).
pub fn parse_static(
    errors: &mut Vec<String>,
    ip: &str,
    netmask: &str,
    gateway: &str,
    dns: &str,
) -> Option<StaticIp> {
    let ip = parse_addr(errors, "IP address", ip);
    let netmask = parse_addr(errors, "Netmask", netmask);
    let gateway = parse_addr(errors, "Gateway", gateway);
    let dns = parse_addr(errors, "DNS server", dns);
    Some(StaticIp {
        ip: ip?,
        netmask: netmask?,
        gateway: gateway?,
        dns: dns?,
    })
}

/// The outcome of applying a change after a face found `reading` problems in its input: every
/// problem together, the reading ones first; the audit detail only if there is none.
pub fn after_reading(
    reading: Vec<String>,
    applied: Result<String, Vec<String>>,
) -> Result<String, Vec<String>> {
    let mut errors = reading;
    match applied {
        Ok(detail) if errors.is_empty() => Ok(detail),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// Why fixed IP settings are not usable, in words.
fn explain_static(s: &StaticIp) -> String {
    let ip = u32::from_be_bytes(s.ip);
    let mask = u32::from_be_bytes(s.netmask);
    let gw = u32::from_be_bytes(s.gateway);
    let prefix = mask.leading_ones();
    let unicast = |a: u32| a != 0 && (a >> 24) != 127 && (a >> 28) < 14 && (a >> 24) != 0;
    if mask.checked_shl(prefix).unwrap_or(0) != 0 || !(1..=30).contains(&prefix) {
        return format!(
            "Netmask {} is not valid: it must be contiguous ones, /1 to /30 (e.g. 255.255.255.0).",
            Ipv4Addr::from(s.netmask)
        );
    }
    if !unicast(ip) {
        return format!(
            "IP address {} is not a usable host address.",
            Ipv4Addr::from(s.ip)
        );
    }
    let host = ip & !mask;
    if host == 0 || host == !mask {
        return format!(
            "IP address {} is the network or broadcast address of its subnet.",
            Ipv4Addr::from(s.ip)
        );
    }
    if gw & mask != ip & mask {
        return format!(
            "Gateway {} is not in the subnet of {}/{prefix}.",
            Ipv4Addr::from(s.gateway),
            Ipv4Addr::from(s.ip)
        );
    }
    if gw == ip {
        return "The gateway must differ from the IP address.".into();
    }
    if !unicast(gw) || (gw & !mask) == 0 || (gw & !mask) == !mask {
        return format!(
            "Gateway {} is not a usable host address.",
            Ipv4Addr::from(s.gateway)
        );
    }
    format!(
        "DNS server {} is not a usable address.",
        Ipv4Addr::from(s.dns)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(ip: [u8; 4], mask: [u8; 4], gw: [u8; 4]) -> StaticIp {
        StaticIp {
            ip,
            netmask: mask,
            gateway: gw,
            dns: [8, 8, 8, 8],
        }
    }

    #[test]
    fn a_change_sets_what_it_names_and_says_what_changed() {
        let mut c = Config::default();
        let ch = ConfigChange {
            log_interval_s: Some(120),
            ethernet: Some(Some(fixed(
                [10, 0, 0, 5],
                [255, 255, 255, 0],
                [10, 0, 0, 1],
            ))),
            gsm_apn: Some("internet".into()),
            gsm_password: Some(GsmPassword::Set("secret".into())),
            servers: Some(vec!["a.example:8844".into(), "b.example".into()]),
            setpoint_cc: Some(2850),
            keepalive_s: Some(120),
            ..ConfigChange::default()
        };
        let detail = ch.apply(&mut c).unwrap();
        assert_eq!(c.log_interval_s, 120);
        assert_eq!(c.keepalive_s, 120);
        assert_eq!(c.thermostat.setpoint_cc, 2850);
        assert_eq!(c.gsm.password.as_str(), "secret");
        assert_eq!(c.servers.len(), 2);
        for part in [
            "logging interval 60 -> 120 s",
            "Ethernet: fixed IP 10.0.0.5",
            "GSM APN \"internet\"",
            "GSM password changed",
            "servers: a.example:8844, b.example",
            "thermostat setpoint",
        ] {
            assert!(detail.contains(part), "{part} in {detail}");
        }
        assert!(!detail.contains("secret"), "{detail}");
        // The same change again changes nothing but the password (always written).
        let mut again = c.clone();
        let ch2 = ConfigChange {
            gsm_password: None,
            ..ch
        };
        assert_eq!(ch2.apply(&mut again).unwrap(), "no change");
        assert_eq!(again, c);
    }

    #[test]
    fn every_problem_is_listed_and_named_by_its_label() {
        let ch = ConfigChange {
            log_interval_s: Some(5),
            ethernet: Some(Some(fixed([10, 0, 0, 5], [255, 0, 255, 0], [10, 0, 0, 1]))),
            gsm_login: Some("\u{7}".into()),
            servers: Some(vec!["bad host!".into()]),
            setpoint_cc: Some(4100),
            hysteresis_cc: Some(0),
            rollback_s: Some(1),
            ..ConfigChange::default()
        };
        let mut c = Config::default();
        let errs = ch.apply(&mut c).unwrap_err();
        for want in [
            "Logging interval must be a whole number of seconds from 10 to 3600.",
            "Netmask 255.0.255.0 is not valid",
            "GSM login must be printable ASCII",
            "Server \"bad host!\" is not a host name",
            "Setpoint must be within 0.00..=40.00 °C.",
            "Hysteresis must be within",
            "Rollback must be",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "{want}: {errs:?}");
        }
        let nine = ConfigChange {
            servers: Some((0..9).map(|i| format!("s{i}.example")).collect()),
            ..ConfigChange::default()
        };
        let errs = nine.apply(&mut Config::default()).unwrap_err();
        assert_eq!(errs, ["At most 8 servers can be listed."]);
    }

    #[test]
    fn fixed_ip_rules_are_explained() {
        for (s, want) in [
            (
                fixed([10, 0, 0, 5], [255, 255, 255, 0], [10, 0, 1, 1]),
                "not in the subnet",
            ),
            (
                fixed([10, 0, 0, 5], [255, 255, 255, 0], [10, 0, 0, 5]),
                "must differ",
            ),
            (
                fixed([10, 0, 0, 0], [255, 255, 255, 0], [10, 0, 0, 1]),
                "network or broadcast",
            ),
            (
                fixed([127, 0, 0, 5], [255, 0, 0, 0], [127, 0, 0, 1]),
                "not a usable host",
            ),
        ] {
            let ch = ConfigChange {
                ethernet: Some(Some(s)),
                ..ConfigChange::default()
            };
            let errs = ch.apply(&mut Config::default()).unwrap_err();
            assert!(errs[0].contains(want), "{want}: {errs:?}");
        }
        let mut e = Vec::new();
        assert_eq!(
            parse_addr(&mut e, "Gateway", " 10.0.0.1 "),
            Some([10, 0, 0, 1])
        );
        assert_eq!(parse_addr(&mut e, "Gateway", ""), None);
        assert_eq!(parse_addr(&mut e, "DNS server", "300.1.1.1"), None);
        assert!(e[0].starts_with("Gateway is required"), "{e:?}");
        assert!(e[1].contains("is not an IPv4 address"), "{e:?}");
    }
}
