//! Editing a device configuration by `key=value` settings, as `tek device config --set` takes
//! them (and the MQTT command topic, the bulk edit and the setpoint form). This face only reads
//! the text into a [`ConfigChange`]; the rules about the values are
//! [`ConfigChange::apply`]'s, as for every other face.
//!
//! | key              | value                                         |
//! |------------------|-----------------------------------------------|
//! | `log_interval`   | seconds, 10..=3600                            |
//! | `keepalive`      | seconds, 15..=600                             |
//! | `batch`          | seconds, 10..=3600                            |
//! | `gsm_failover`   | seconds, 30..=3600                            |
//! | `rollback`       | seconds, 60..=7200                            |
//! | `setpoint`       | °C with up to 2 decimals, 0..=40              |
//! | `hysteresis`     | °C with up to 2 decimals, 0.1..=10            |
//! | `ethernet`       | `dhcp`, or `IP/PREFIX,GATEWAY,DNS`            |
//! | `gsm_apn`, `gsm_login`, `gsm_password` | printable ASCII, ≤ 63 bytes |
//! | `servers`        | comma-separated `host[:port]`, ≤ 8 (empty = factory list) |

use crate::service::config_change::{ConfigChange, GsmPassword};
use std::net::Ipv4Addr;
use tek_proto::message::config::StaticIp;
use tek_proto::message::Config;

/// A setting that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> SettingError {
    SettingError {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn seconds(key: &str, v: &str) -> Result<u16, SettingError> {
    v.parse()
        .map_err(|_| err(key, format!("{v:?} is not a whole number of seconds")))
}

/// Parses degrees Celsius with at most two decimals into hundredths.
pub(crate) fn centi(key: &str, v: &str) -> Result<i32, SettingError> {
    let bad = || err(key, format!("{v:?} is not a temperature like 27.5"));
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 2 || int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let neg = int.starts_with('-');
    let i: i32 = int.parse().map_err(|_| bad())?;
    if i.abs() > 1000 {
        return Err(bad());
    }
    let f: i32 = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let f: i32 = frac.parse().map_err(|_| bad())?;
        if frac.len() == 1 {
            f * 10
        } else {
            f
        }
    };
    Ok(if neg { i * 100 - f } else { i * 100 + f })
}

fn ethernet(key: &str, v: &str) -> Result<Option<StaticIp>, SettingError> {
    if v.eq_ignore_ascii_case("dhcp") || v.is_empty() {
        return Ok(None);
    }
    let bad = |m: &str| err(key, format!("{m} (expected dhcp or IP/PREFIX,GATEWAY,DNS)"));
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let [cidr, gw, dns] = parts[..] else {
        return Err(bad("three comma-separated parts needed"));
    };
    let (ip, prefix) = cidr.split_once('/').ok_or_else(|| bad("missing /PREFIX"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad("bad IP address"))?;
    let prefix: u32 = prefix.parse().map_err(|_| bad("bad prefix"))?;
    if !(1..=30).contains(&prefix) {
        return Err(bad("prefix must be 1..=30"));
    }
    let mask = u32::MAX << (32 - prefix);
    let gw: Ipv4Addr = gw.parse().map_err(|_| bad("bad gateway"))?;
    let dns: Ipv4Addr = dns.parse().map_err(|_| bad("bad DNS server"))?;
    Ok(Some(StaticIp {
        ip: ip.octets(),
        netmask: mask.to_be_bytes(),
        gateway: gw.octets(),
        dns: dns.octets(),
    }))
}

/// Reads one `key=value` setting into `change` (a later setting of the same key replaces an
/// earlier one).
pub fn parse_into(change: &mut ConfigChange, setting: &str) -> Result<(), SettingError> {
    let (key, value) = setting
        .split_once('=')
        .ok_or_else(|| err(setting, "expected key=value"))?;
    let (key, value) = (key.trim(), value.trim());
    match key {
        "log_interval" => change.log_interval_s = Some(seconds(key, value)?),
        "keepalive" => change.keepalive_s = Some(seconds(key, value)?),
        "batch" => change.batch_s = Some(seconds(key, value)?),
        "gsm_failover" => change.gsm_failover_s = Some(seconds(key, value)?),
        "rollback" => change.rollback_s = Some(seconds(key, value)?),
        "setpoint" => change.setpoint_cc = Some(centi(key, value)?),
        "hysteresis" => change.hysteresis_cc = Some(centi(key, value)?),
        "ethernet" => change.ethernet = Some(ethernet(key, value)?),
        "gsm_apn" => change.gsm_apn = Some(value.to_owned()),
        "gsm_login" => change.gsm_login = Some(value.to_owned()),
        "gsm_password" if value.is_empty() => change.gsm_password = Some(GsmPassword::Clear),
        "gsm_password" => change.gsm_password = Some(GsmPassword::Set(value.to_owned())),
        "servers" => {
            let list = value.split(',').map(str::trim).filter(|s| !s.is_empty());
            change.servers = Some(list.map(str::to_owned).collect());
        }
        other => return Err(err(other, "unknown setting")),
    }
    Ok(())
}

/// Reads `key=value` settings into one change.
pub fn parse(settings: &[impl AsRef<str>]) -> Result<ConfigChange, SettingError> {
    let mut change = ConfigChange::default();
    for s in settings {
        parse_into(&mut change, s.as_ref())?;
    }
    Ok(change)
}

/// Applies `key=value` settings to `config`, all or nothing; returns the audit detail.
pub fn apply(config: &mut Config, settings: &[impl AsRef<str>]) -> Result<String, SettingError> {
    let change = parse(settings)?;
    let mut edited = config.clone();
    let detail = change.apply(&mut edited).map_err(|errors| SettingError {
        key: settings
            .iter()
            .map(|s| s.as_ref().split('=').next().unwrap_or("").trim())
            .collect::<Vec<_>>()
            .join(","),
        message: errors.join(" "),
    })?;
    *config = edited;
    Ok(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let mut c = Config::default();
        for s in [
            "log_interval=30",
            "keepalive = 120",
            "setpoint=28.5",
            "hysteresis=0.25",
            "ethernet=192.168.1.50/24,192.168.1.1,8.8.8.8",
            "gsm_apn=internet",
            "servers=a.example:8844, b.example",
        ] {
            apply(&mut c, &[s]).unwrap();
        }
        assert_eq!(c.log_interval_s, 30);
        assert_eq!(c.keepalive_s, 120);
        assert_eq!(c.thermostat.setpoint_cc, 2850);
        assert_eq!(c.thermostat.hysteresis_cc, 25);
        assert_eq!(c.ethernet.unwrap().netmask, [255, 255, 255, 0]);
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.gsm.apn.as_str(), "internet");
        c.validate().unwrap();
        apply(&mut c, &["ethernet=dhcp"]).unwrap();
        assert!(c.ethernet.is_none());
    }

    #[test]
    fn bad_settings() {
        for s in [
            "log_interval=5",
            "log_interval=abc",
            "keepalive=601",
            "setpoint=41",
            "setpoint=27.555",
            "setpoint=.",
            "hysteresis=0",
            "ethernet=192.168.1.50,192.168.1.1,8.8.8.8",
            "ethernet=192.168.1.50/24,10.0.0.1,8.8.8.8",
            "gsm_apn=\u{7}",
            "servers=a b",
            "servers=1,2,3,4,5,6,7,8,9",
            "colour=red",
            "noequals",
        ] {
            let mut c = Config::default();
            let e = apply(&mut c, &[s]);
            assert!(e.is_err(), "{s}");
            assert_eq!(c, Config::default(), "{s} changed the config");
        }
    }
}
