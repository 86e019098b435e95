//! Editing a device configuration by `key=value` settings, as `tek device config --set` takes
//! them (and as a form handler may). Every value is checked here and again by
//! [`tek_proto::message::Config::validate`] before anything is saved.
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

use std::net::Ipv4Addr;
use tek_proto::message::config::{self as pc, StaticIp};
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

fn seconds(key: &str, v: &str, range: std::ops::RangeInclusive<u16>) -> Result<u16, SettingError> {
    let n: u16 = v
        .parse()
        .map_err(|_| err(key, format!("{v:?} is not a whole number of seconds")))?;
    if !range.contains(&n) {
        return Err(err(
            key,
            format!("{n} s is outside {}..={} s", range.start(), range.end()),
        ));
    }
    Ok(n)
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

fn text(key: &str, v: &str) -> Result<heapless::String<{ pc::MAX_TEXT }>, SettingError> {
    if !pc::text_ok(v) {
        return Err(err(key, "must be printable ASCII of at most 63 bytes"));
    }
    heapless::String::try_from(v).map_err(|_| err(key, "too long"))
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
    let s = StaticIp {
        ip: ip.octets(),
        netmask: mask.to_be_bytes(),
        gateway: gw.octets(),
        dns: dns.octets(),
    };
    if !s.is_valid() {
        return Err(bad("not a usable address/gateway/DNS combination"));
    }
    Ok(Some(s))
}

/// Applies one `key=value` setting to `config`.
pub fn apply(config: &mut Config, setting: &str) -> Result<(), SettingError> {
    let (key, value) = setting
        .split_once('=')
        .ok_or_else(|| err(setting, "expected key=value"))?;
    let (key, value) = (key.trim(), value.trim());
    match key {
        "log_interval" => config.log_interval_s = seconds(key, value, pc::range::LOG_INTERVAL_S)?,
        "keepalive" => config.keepalive_s = seconds(key, value, pc::range::KEEPALIVE_S)?,
        "batch" => config.batch_s = seconds(key, value, pc::range::BATCH_S)?,
        "gsm_failover" => config.gsm_failover_s = seconds(key, value, pc::range::GSM_FAILOVER_S)?,
        "rollback" => config.rollback_s = seconds(key, value, pc::range::ROLLBACK_S)?,
        "setpoint" => {
            let c = centi(key, value)?;
            let r = pc::range::SETPOINT_CC;
            if c < i32::from(*r.start()) || c > i32::from(*r.end()) {
                return Err(err(key, "must be within 0..=40 °C"));
            }
            config.thermostat.setpoint_cc = c as i16;
        }
        "hysteresis" => {
            let c = centi(key, value)?;
            let r = pc::range::HYSTERESIS_CC;
            if c < i32::from(*r.start()) || c > i32::from(*r.end()) {
                return Err(err(key, "must be within 0.1..=10 °C"));
            }
            config.thermostat.hysteresis_cc = c as u16;
        }
        "ethernet" => config.ethernet = ethernet(key, value)?,
        "gsm_apn" => config.gsm.apn = text(key, value)?,
        "gsm_login" => config.gsm.login = text(key, value)?,
        "gsm_password" => config.gsm.password = text(key, value)?,
        "servers" => {
            let mut list = heapless::Vec::new();
            for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !pc::server_ok(s) {
                    return Err(err(key, format!("{s:?} is not host or host:port")));
                }
                list.push(text(key, s)?)
                    .map_err(|_| err(key, "at most 8 servers"))?;
            }
            config.servers = list;
        }
        other => return Err(err(other, "unknown setting")),
    }
    Ok(())
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
            apply(&mut c, s).unwrap();
        }
        assert_eq!(c.log_interval_s, 30);
        assert_eq!(c.keepalive_s, 120);
        assert_eq!(c.thermostat.setpoint_cc, 2850);
        assert_eq!(c.thermostat.hysteresis_cc, 25);
        assert_eq!(c.ethernet.unwrap().netmask, [255, 255, 255, 0]);
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.gsm.apn.as_str(), "internet");
        c.validate().unwrap();
        apply(&mut c, "ethernet=dhcp").unwrap();
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
            let e = apply(&mut c, s);
            assert!(e.is_err(), "{s}");
            assert_eq!(c, Config::default(), "{s} changed the config");
        }
    }
}
