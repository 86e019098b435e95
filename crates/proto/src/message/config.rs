//! Device configuration (carried by message type 0x82, server -> device).
//!
//! A configuration is always sent whole, as a version number and a list of items:
//!
//! ```text
//! version      u32      increases with every change saved on the server (0 = factory)
//! items        tag u8, length u8, value[length], repeated
//! ```
//!
//! | tag | item                | value                                                  | range            |
//! |-----|---------------------|--------------------------------------------------------|------------------|
//! | 1   | logging interval    | u16 seconds                                            | 10..=3600        |
//! | 2   | Ethernet fixed IP   | ip, netmask, gateway, dns: 4 × 4 bytes (absent = DHCP) | see `StaticIp`   |
//! | 3   | GSM APN             | 0..=63 printable ASCII bytes                           |                  |
//! | 4   | GSM login           | 0..=63 printable ASCII bytes                           |                  |
//! | 5   | GSM password        | 0..=63 printable ASCII bytes                           |                  |
//! | 6   | server              | `host` or `host:port`, 1..=63 bytes, repeatable ≤ 8    | in order         |
//! | 7   | thermostat          | setpoint i16 (0.01 °C), hysteresis u16 (0.01 °C)        | 0..=4000, 10..=1000 |
//! | 8   | keepalive interval  | u16 seconds                                            | 15..=600         |
//! | 9   | telemetry batching  | u16 seconds between batches                            | 10..=3600        |
//! | 10  | GSM failover delay  | u16 seconds Ethernet must fail before GSM is used     | 30..=3600        |
//! | 11  | network rollback    | u16 seconds without a server before a network change is undone | 60..=7200 |
//!
//! An item missing from the list takes its default. A tag the device does not know is skipped
//! (its length says how far). A known tag twice (other than `server`), a wrong length or a value
//! out of range makes the whole message invalid: it is dropped silently, and the server, which
//! validates with the same code before it saves, never sends one.

use super::MessageError;
use heapless::{String, Vec};

/// Longest string item (APN, login, password, server name).
pub const MAX_TEXT: usize = 63;
/// Most servers a configuration lists.
pub const MAX_SERVERS: usize = 8;

/// Item tags.
pub mod tag {
    /// Logging interval.
    pub const LOG_INTERVAL: u8 = 1;
    /// Ethernet fixed IP settings.
    pub const ETHERNET: u8 = 2;
    /// GSM APN.
    pub const GSM_APN: u8 = 3;
    /// GSM login.
    pub const GSM_LOGIN: u8 = 4;
    /// GSM password.
    pub const GSM_PASSWORD: u8 = 5;
    /// One server name.
    pub const SERVER: u8 = 6;
    /// Thermostat setpoint and hysteresis.
    pub const THERMOSTAT: u8 = 7;
    /// Keepalive interval.
    pub const KEEPALIVE: u8 = 8;
    /// Telemetry batching interval.
    pub const BATCH: u8 = 9;
    /// GSM failover delay.
    pub const GSM_FAILOVER: u8 = 10;
    /// Network-change rollback delay.
    pub const ROLLBACK: u8 = 11;
}

/// Fixed IPv4 settings for the Ethernet port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticIp {
    /// Address (not 0.0.0.0, not broadcast/multicast/loopback).
    pub ip: [u8; 4],
    /// Netmask (contiguous ones, /1../30).
    pub netmask: [u8; 4],
    /// Default gateway (inside the subnet).
    pub gateway: [u8; 4],
    /// DNS server.
    pub dns: [u8; 4],
}

impl StaticIp {
    /// Whether these settings could work: a unicast address, a contiguous netmask of /1 to /30,
    /// a gateway in the same subnet and different from the address, a unicast DNS server.
    pub fn is_valid(&self) -> bool {
        let ip = u32::from_be_bytes(self.ip);
        let mask = u32::from_be_bytes(self.netmask);
        let gw = u32::from_be_bytes(self.gateway);
        let dns = u32::from_be_bytes(self.dns);
        let prefix = mask.leading_ones();
        let contiguous = mask.checked_shl(prefix).unwrap_or(0) == 0;
        let unicast = |a: u32| a != 0 && (a >> 24) != 127 && (a >> 28) < 14 && (a >> 24) != 0;
        let host_ok = |a: u32| {
            let host = a & !mask;
            host != 0 && host != !mask
        };
        contiguous
            && (1..=30).contains(&prefix)
            && unicast(ip)
            && host_ok(ip)
            && unicast(gw)
            && host_ok(gw)
            && gw & mask == ip & mask
            && gw != ip
            && unicast(dns)
    }
}

/// GSM data settings. Blank works with most operators.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gsm {
    /// Access point name.
    pub apn: String<MAX_TEXT>,
    /// Login.
    pub login: String<MAX_TEXT>,
    /// Password. Never shown by `Debug` of [`Config`].
    pub password: String<MAX_TEXT>,
}

/// Thermostat settings (heater on below `setpoint - hysteresis/2`, off above
/// `setpoint + hysteresis/2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thermostat {
    /// Water temperature setpoint, 0.01 °C.
    pub setpoint_cc: i16,
    /// Hysteresis band, 0.01 °C.
    pub hysteresis_cc: u16,
}

/// A complete device configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Seconds between log records.
    pub log_interval_s: u16,
    /// Fixed IP settings, or `None` for DHCP.
    pub ethernet: Option<StaticIp>,
    /// GSM settings.
    pub gsm: Gsm,
    /// Server names, tried in order; empty = the device's factory list.
    pub servers: Vec<String<MAX_TEXT>, MAX_SERVERS>,
    /// Thermostat.
    pub thermostat: Thermostat,
    /// Seconds between keepalives when nothing else is sent.
    pub keepalive_s: u16,
    /// Seconds between telemetry batches.
    pub batch_s: u16,
    /// Seconds Ethernet must fail to reach any server before the GSM modem is used.
    pub gsm_failover_s: u16,
    /// Seconds without reaching any server after a network change before it is rolled back.
    pub rollback_s: u16,
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("log_interval_s", &self.log_interval_s)
            .field("ethernet", &self.ethernet)
            .field("gsm_apn", &self.gsm.apn)
            .field("gsm_login", &self.gsm.login)
            .field("gsm_password", &"<redacted>")
            .field("servers", &self.servers)
            .field("thermostat", &self.thermostat)
            .field("keepalive_s", &self.keepalive_s)
            .field("batch_s", &self.batch_s)
            .field("gsm_failover_s", &self.gsm_failover_s)
            .field("rollback_s", &self.rollback_s)
            .finish()
    }
}

impl Config {
    /// The factory configuration (version 0), as a constant so that a device can build its
    /// state in place — in a `static`, or field by field — instead of through a ~800-byte
    /// temporary. [`Default`] returns this.
    pub const DEFAULT: Config = Config {
        log_interval_s: 60,
        ethernet: None,
        gsm: Gsm {
            apn: String::new(),
            login: String::new(),
            password: String::new(),
        },
        servers: Vec::new(),
        thermostat: Thermostat {
            setpoint_cc: 2700,
            hysteresis_cc: 50,
        },
        keepalive_s: 60,
        batch_s: 300,
        gsm_failover_s: 300,
        rollback_s: 900,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Allowed ranges, shared by the device's decoder and the server's form validation.
pub mod range {
    use core::ops::RangeInclusive;
    /// Logging interval, seconds.
    pub const LOG_INTERVAL_S: RangeInclusive<u16> = 10..=3600;
    /// Thermostat setpoint, 0.01 °C.
    pub const SETPOINT_CC: RangeInclusive<i16> = 0..=4000;
    /// Thermostat hysteresis, 0.01 °C.
    pub const HYSTERESIS_CC: RangeInclusive<u16> = 10..=1000;
    /// Keepalive interval, seconds.
    pub const KEEPALIVE_S: RangeInclusive<u16> = 15..=600;
    /// Telemetry batching, seconds.
    pub const BATCH_S: RangeInclusive<u16> = 10..=3600;
    /// GSM failover delay, seconds.
    pub const GSM_FAILOVER_S: RangeInclusive<u16> = 30..=3600;
    /// Rollback delay, seconds.
    pub const ROLLBACK_S: RangeInclusive<u16> = 60..=7200;
}

/// Whether `s` is acceptable as a GSM setting (printable ASCII, at most 63 bytes).
pub fn text_ok(s: &str) -> bool {
    s.len() <= MAX_TEXT && s.bytes().all(|b| (0x20..=0x7E).contains(&b))
}

/// Whether `s` is acceptable as a server entry: a host name or dotted IPv4 address of letters,
/// digits, `-` and `.`, optionally followed by `:port` (1..=65535); 1..=63 bytes.
pub fn server_ok(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_TEXT {
        return false;
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && !host.starts_with(['-', '.'])
        && !host.ends_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let port_ok = match port {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && matches!(p.parse::<u32>(), Ok(1..=65535))
        }
    };
    host_ok && port_ok
}

fn u16_item(v: &[u8], range: core::ops::RangeInclusive<u16>) -> Result<u16, MessageError> {
    let arr: [u8; 2] = v.try_into().map_err(|_| MessageError::Range)?;
    let x = u16::from_be_bytes(arr);
    if range.contains(&x) {
        Ok(x)
    } else {
        Err(MessageError::Range)
    }
}

fn text_item(v: &[u8]) -> Result<String<MAX_TEXT>, MessageError> {
    let s = core::str::from_utf8(v).map_err(|_| MessageError::Range)?;
    if !text_ok(s) {
        return Err(MessageError::Range);
    }
    String::try_from(s).map_err(|_| MessageError::Range)
}

fn ip4(v: &[u8]) -> [u8; 4] {
    [v[0], v[1], v[2], v[3]]
}

impl Config {
    /// Checks every field against the ranges of this module. The server refuses to save a
    /// configuration that fails this; the device drops one.
    pub fn validate(&self) -> Result<(), MessageError> {
        let ok = range::LOG_INTERVAL_S.contains(&self.log_interval_s)
            && self.ethernet.is_none_or(|e| e.is_valid())
            && text_ok(&self.gsm.apn)
            && text_ok(&self.gsm.login)
            && text_ok(&self.gsm.password)
            && self.servers.iter().all(|s| server_ok(s))
            && range::SETPOINT_CC.contains(&self.thermostat.setpoint_cc)
            && range::HYSTERESIS_CC.contains(&self.thermostat.hysteresis_cc)
            && range::KEEPALIVE_S.contains(&self.keepalive_s)
            && range::BATCH_S.contains(&self.batch_s)
            && range::GSM_FAILOVER_S.contains(&self.gsm_failover_s)
            && range::ROLLBACK_S.contains(&self.rollback_s);
        if ok {
            Ok(())
        } else {
            Err(MessageError::Range)
        }
    }

    /// Whether `other` differs in what decides how the device reaches the servers (Ethernet
    /// settings, GSM settings, server list): such a change is applied on trial and rolled back if
    /// no server can be reached with it.
    pub fn network_differs(&self, other: &Config) -> bool {
        self.ethernet != other.ethernet || self.gsm != other.gsm || self.servers != other.servers
    }

    /// Decodes the item list (the message body after the version).
    pub fn parse_items(items: &[u8]) -> Result<Config, MessageError> {
        let mut cfg = Config::DEFAULT;
        cfg.parse_items_into(items)?;
        Ok(cfg)
    }

    /// Decodes the item list into `self`: the same as [`parse_items`](Self::parse_items)
    /// without a `Config` temporary (for a device decoding into its state in place). On an error
    /// `self` is [`Config::DEFAULT`].
    pub fn parse_items_into(&mut self, items: &[u8]) -> Result<(), MessageError> {
        *self = Config::DEFAULT;
        let r = self.parse_items_over_default(items);
        if r.is_err() {
            *self = Config::DEFAULT;
        }
        r
    }

    fn parse_items_over_default(&mut self, mut items: &[u8]) -> Result<(), MessageError> {
        let cfg = self;
        let mut seen: u16 = 0;
        while !items.is_empty() {
            if items.len() < 2 {
                return Err(MessageError::Truncated);
            }
            let (tag_byte, len) = (items[0], usize::from(items[1]));
            let value = items.get(2..2 + len).ok_or(MessageError::Truncated)?;
            items = &items[2 + len..];
            // Only tags this version knows may not repeat: an unknown tag is skipped however
            // often it appears, so a future repeatable item cannot break devices already in the
            // field (they can never be updated).
            if tag_byte != tag::SERVER && (tag::LOG_INTERVAL..=tag::ROLLBACK).contains(&tag_byte) {
                let bit = 1u16 << tag_byte;
                if seen & bit != 0 {
                    return Err(MessageError::Range);
                }
                seen |= bit;
            }
            match tag_byte {
                tag::LOG_INTERVAL => cfg.log_interval_s = u16_item(value, range::LOG_INTERVAL_S)?,
                tag::ETHERNET => {
                    if value.len() != 16 {
                        return Err(MessageError::Range);
                    }
                    let s = StaticIp {
                        ip: ip4(&value[0..4]),
                        netmask: ip4(&value[4..8]),
                        gateway: ip4(&value[8..12]),
                        dns: ip4(&value[12..16]),
                    };
                    if !s.is_valid() {
                        return Err(MessageError::Range);
                    }
                    cfg.ethernet = Some(s);
                }
                tag::GSM_APN => cfg.gsm.apn = text_item(value)?,
                tag::GSM_LOGIN => cfg.gsm.login = text_item(value)?,
                tag::GSM_PASSWORD => cfg.gsm.password = text_item(value)?,
                tag::SERVER => {
                    let name = text_item(value)?;
                    if !server_ok(&name) {
                        return Err(MessageError::Range);
                    }
                    cfg.servers.push(name).map_err(|_| MessageError::Range)?;
                }
                tag::THERMOSTAT => {
                    if value.len() != 4 {
                        return Err(MessageError::Range);
                    }
                    let setpoint_cc = i16::from_be_bytes([value[0], value[1]]);
                    let hysteresis_cc = u16::from_be_bytes([value[2], value[3]]);
                    if !range::SETPOINT_CC.contains(&setpoint_cc)
                        || !range::HYSTERESIS_CC.contains(&hysteresis_cc)
                    {
                        return Err(MessageError::Range);
                    }
                    cfg.thermostat = Thermostat {
                        setpoint_cc,
                        hysteresis_cc,
                    };
                }
                tag::KEEPALIVE => cfg.keepalive_s = u16_item(value, range::KEEPALIVE_S)?,
                tag::BATCH => cfg.batch_s = u16_item(value, range::BATCH_S)?,
                tag::GSM_FAILOVER => cfg.gsm_failover_s = u16_item(value, range::GSM_FAILOVER_S)?,
                tag::ROLLBACK => cfg.rollback_s = u16_item(value, range::ROLLBACK_S)?,
                _ => {} // unknown: skipped for forward compatibility
            }
        }
        Ok(())
    }

    /// Bytes [`emit_items`](Self::emit_items) writes.
    pub fn items_len(&self) -> usize {
        let text = |s: &str| if s.is_empty() { 0 } else { 2 + s.len() };
        5 * 4 // five u16 items: tag, length, 2 bytes
            + 6 // thermostat: tag, length, 4 bytes
            + self.ethernet.map_or(0, |_| 18)
            + text(&self.gsm.apn)
            + text(&self.gsm.login)
            + text(&self.gsm.password)
            + self.servers.iter().map(|s| 2 + s.len()).sum::<usize>()
    }

    /// Writes every item (defaults included, empty strings left out) into `buf`.
    /// Returns the length, or `None` if `buf` is shorter than [`items_len`](Self::items_len).
    pub fn emit_items(&self, buf: &mut [u8]) -> Option<usize> {
        let mut at = 0;
        let mut put = |tag_byte: u8, value: &[u8]| -> Option<()> {
            let dst = buf.get_mut(at..at + 2 + value.len())?;
            dst[0] = tag_byte;
            dst[1] = value.len() as u8;
            dst[2..].copy_from_slice(value);
            at += 2 + value.len();
            Some(())
        };
        put(tag::LOG_INTERVAL, &self.log_interval_s.to_be_bytes())?;
        if let Some(e) = &self.ethernet {
            let mut v = [0u8; 16];
            v[0..4].copy_from_slice(&e.ip);
            v[4..8].copy_from_slice(&e.netmask);
            v[8..12].copy_from_slice(&e.gateway);
            v[12..16].copy_from_slice(&e.dns);
            put(tag::ETHERNET, &v)?;
        }
        for (t, s) in [
            (tag::GSM_APN, &self.gsm.apn),
            (tag::GSM_LOGIN, &self.gsm.login),
            (tag::GSM_PASSWORD, &self.gsm.password),
        ] {
            if !s.is_empty() {
                put(t, s.as_bytes())?;
            }
        }
        for s in &self.servers {
            put(tag::SERVER, s.as_bytes())?;
        }
        let mut th = [0u8; 4];
        th[0..2].copy_from_slice(&self.thermostat.setpoint_cc.to_be_bytes());
        th[2..4].copy_from_slice(&self.thermostat.hysteresis_cc.to_be_bytes());
        put(tag::THERMOSTAT, &th)?;
        put(tag::KEEPALIVE, &self.keepalive_s.to_be_bytes())?;
        put(tag::BATCH, &self.batch_s.to_be_bytes())?;
        put(tag::GSM_FAILOVER, &self.gsm_failover_s.to_be_bytes())?;
        put(tag::ROLLBACK, &self.rollback_s.to_be_bytes())?;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        let mut c = Config {
            log_interval_s: 120,
            ethernet: Some(StaticIp {
                ip: [192, 168, 1, 50],
                netmask: [255, 255, 255, 0],
                gateway: [192, 168, 1, 1],
                dns: [192, 168, 1, 1],
            }),
            ..Config::default()
        };
        c.gsm.apn = String::try_from("internet").unwrap();
        c.gsm.password = String::try_from("s3cret").unwrap();
        c.servers
            .push(String::try_from("a.tek.example").unwrap())
            .unwrap();
        c.servers
            .push(String::try_from("127.0.0.1:9000").unwrap())
            .unwrap();
        c
    }

    #[test]
    fn default_const_is_the_factory_configuration() {
        // `Default` and the constant agree, field by field, with the documented factory values.
        let d = Config::default();
        assert_eq!(d, Config::DEFAULT);
        assert_eq!(d.log_interval_s, 60);
        assert_eq!(d.ethernet, None);
        assert_eq!(d.gsm, Gsm::default());
        assert!(d.servers.is_empty());
        assert_eq!(
            d.thermostat,
            Thermostat {
                setpoint_cc: 2700,
                hysteresis_cc: 50
            }
        );
        assert_eq!(
            (d.keepalive_s, d.batch_s, d.gsm_failover_s, d.rollback_s),
            (60, 300, 300, 900)
        );
        d.validate().unwrap();
        // Every item missing from a list takes the default.
        assert_eq!(Config::parse_items(&[]).unwrap(), Config::DEFAULT);
    }

    #[test]
    fn parse_into_replaces_everything() {
        // Decoding in place leaves nothing of the previous value behind.
        let mut into = sample();
        let mut buf = [0u8; 1024];
        let n = Config::DEFAULT.emit_items(&mut buf).unwrap();
        into.parse_items_into(&buf[..n]).unwrap();
        assert_eq!(into, Config::DEFAULT);
        let n = sample().emit_items(&mut buf).unwrap();
        into.parse_items_into(&buf[..n]).unwrap();
        assert_eq!(into, sample());
        assert_eq!(
            into.parse_items_into(&buf[..n - 1]),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            into,
            Config::DEFAULT,
            "nothing half-decoded is left on an error"
        );
    }

    #[test]
    fn round_trip_and_length() {
        let c = sample();
        c.validate().unwrap();
        let mut buf = [0u8; 1000];
        let n = c.emit_items(&mut buf).unwrap();
        assert_eq!(n, c.items_len());
        assert_eq!(Config::parse_items(&buf[..n]).unwrap(), c);
        let d = Config::default();
        let n = d.emit_items(&mut buf).unwrap();
        assert_eq!(n, d.items_len());
        assert_eq!(Config::parse_items(&buf[..n]).unwrap(), d);
        assert!(c.emit_items(&mut buf[..n]).is_none());
    }

    #[test]
    fn largest_config_fits_one_datagram() {
        let mut c = Config::default();
        let long = "x".repeat(MAX_TEXT);
        c.gsm.apn = String::try_from(long.as_str()).unwrap();
        c.gsm.login = c.gsm.apn.clone();
        c.gsm.password = c.gsm.apn.clone();
        c.ethernet = sample().ethernet;
        for _ in 0..MAX_SERVERS {
            c.servers
                .push(String::try_from(long.as_str()).unwrap())
                .unwrap();
        }
        // type byte + version + items must fit the largest message
        assert!(1 + 4 + c.items_len() <= crate::wire::data::MAX_MESSAGE);
    }

    #[test]
    fn bad_items_refused() {
        let cases: &[&[u8]] = &[
            &[tag::LOG_INTERVAL, 2, 0, 5], // 5 s: below range
            &[tag::LOG_INTERVAL, 1, 60],   // wrong length
            &[tag::LOG_INTERVAL, 2, 0, 60, tag::LOG_INTERVAL, 2, 0, 60], // twice
            &[tag::GSM_APN, 2, b'a', 0x07], // control character
            &[tag::SERVER, 4, b'a', b' ', b'b', b'c'], // space in host
            &[tag::SERVER, 3, b'a', b':', b'0'], // port 0
            &[tag::THERMOSTAT, 4, 0x27, 0x10, 0, 50], // 100.00 °C
            &[
                tag::ETHERNET,
                16,
                10,
                0,
                0,
                5,
                255,
                0,
                255,
                0,
                10,
                0,
                0,
                1,
                8,
                8,
                8,
                8,
            ], // mask
            &[tag::KEEPALIVE, 2],          // truncated
            &[tag::BATCH],                 // truncated header
        ];
        for case in cases {
            assert!(Config::parse_items(case).is_err(), "{case:?}");
        }
        // Unknown tags are skipped.
        assert_eq!(
            Config::parse_items(&[200, 3, 1, 2, 3]).unwrap(),
            Config::default()
        );
    }

    /// Forward compatibility: an unknown tag is skipped even when it repeats, including the
    /// tags just above the last known one (12..=15), which a later version is most likely to use.
    #[test]
    fn unknown_tags_may_repeat() {
        for t in [0u8, 12, 13, 15, 16, 255] {
            let items = [t, 1, 7, t, 0, t, 2, 1, 2];
            assert_eq!(
                Config::parse_items(&items).unwrap(),
                Config::default(),
                "tag {t}"
            );
        }
        // Known tags still may not.
        assert_eq!(
            Config::parse_items(&[tag::ROLLBACK, 2, 0, 60, tag::ROLLBACK, 2, 0, 60]),
            Err(MessageError::Range)
        );
    }

    #[test]
    fn static_ip_checks() {
        let good = sample().ethernet.unwrap();
        assert!(good.is_valid());
        let mut bad = good;
        bad.gateway = [192, 168, 2, 1];
        assert!(!bad.is_valid(), "gateway outside the subnet");
        bad = good;
        bad.ip = [192, 168, 1, 255];
        assert!(!bad.is_valid(), "broadcast address");
        bad = good;
        bad.netmask = [255, 255, 255, 255];
        assert!(!bad.is_valid(), "/32");
        bad = good;
        bad.dns = [0, 0, 0, 0];
        assert!(!bad.is_valid(), "no DNS");
    }

    #[test]
    fn debug_hides_password() {
        let shown = std::format!("{:?}", sample());
        assert!(!shown.contains("s3cret"));
    }
}
