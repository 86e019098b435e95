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
//! | 12  | schedule            | unoccupied setpoint i16 (0.01 °C), then ≤ 40 switching points u16 | see [`Schedule`] |
//! | 13  | holidays            | ≤ 16 dates, u16 days since 1970-01-01, increasing      |                  |
//! | 14  | time zone           | POSIX TZ rule, 1..=48 bytes (see [`crate::tz`])        | absent = UTC     |
//! | 15  | freeze protection   | air limit i16 (0.01 °C), hysteresis u16 (0.01 °C)       | -1000..=1000, 10..=1000 |
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

/// The longest item list a valid configuration encodes to: every string at its longest, eight
/// servers, fixed IP, a full schedule, every holiday, the longest time zone, freeze settings.
pub const MAX_ITEMS_LEN: usize = 5 * 4
    + 6
    + 18
    + 3 * (2 + MAX_TEXT)
    + MAX_SERVERS * (2 + MAX_TEXT)
    + (2 + 2 + 2 * MAX_POINTS)
    + (2 + 2 * MAX_HOLIDAYS)
    + (2 + MAX_TZ)
    + 6;

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
    /// Weekly schedule (pump and occupancy) with the unoccupied setpoint.
    pub const SCHEDULE: u8 = 12;
    /// Holiday dates (days that follow the holiday day type of the schedule).
    pub const HOLIDAYS: u8 = 13;
    /// Local-time rule (POSIX TZ).
    pub const TIME_ZONE: u8 = 14;
    /// Freeze protection limit and hysteresis.
    pub const FREEZE: u8 = 15;
    /// The highest tag this version knows.
    pub const LAST: u8 = FREEZE;
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

/// Most switching points of a weekly schedule (all day types together).
pub const MAX_POINTS: usize = 40;
/// Most holiday dates.
pub const MAX_HOLIDAYS: usize = 16;
/// Longest time-zone rule.
pub const MAX_TZ: usize = 48;

/// Day types of a schedule: 0 Monday ..= 6 Sunday (ISO order), and this one for holidays.
pub const HOLIDAY: u8 = 7;

/// One switching point of a weekly schedule: from `minute` of every day of type `day`, the pump
/// runs or not and the pool is occupied or not, until the next point of that day type.
///
/// On the wire (and in memory) one u16: bits 15..13 day type (0 Monday ..= 6 Sunday, 7 holiday),
/// bits 12..2 minute of the day (0..=1439), bit 1 occupied, bit 0 pump on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchPoint(pub u16);

impl SwitchPoint {
    /// A point; `None` if the day type or the minute is out of range.
    pub const fn new(day: u8, minute: u16, pump: bool, occupied: bool) -> Option<SwitchPoint> {
        if day > HOLIDAY || minute >= 1440 {
            return None;
        }
        Some(SwitchPoint(
            (day as u16) << 13 | minute << 2 | (occupied as u16) << 1 | pump as u16,
        ))
    }

    /// Day type, 0 Monday ..= 6 Sunday, 7 holiday.
    pub const fn day(self) -> u8 {
        (self.0 >> 13) as u8
    }

    /// Minute of the day (0..=2047 as decoded; valid points have 0..=1439).
    pub const fn minute(self) -> u16 {
        (self.0 >> 2) & 0x7FF
    }

    /// Whether the pump runs from this point.
    pub const fn pump(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether the pool is occupied (occupied setpoint) from this point.
    pub const fn occupied(self) -> bool {
        self.0 & 2 != 0
    }

    /// Day type and minute: the order of the points, one point per value.
    const fn key(self) -> u16 {
        self.0 >> 2
    }
}

/// A weekly schedule: what the pump relay and the thermostat setpoint follow.
///
/// Each day type (Monday ..= Sunday, holiday) starts at 00:00 local time with the pump off and
/// the pool unoccupied, unless it has a point at minute 0; each point holds until the next
/// point of the same day type or the end of the day. A day listed in [`Config::holidays`]
/// follows the holiday day type instead of its weekday. While occupied, the thermostat keeps
/// [`Thermostat::setpoint_cc`]; while unoccupied, `unoccupied_cc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Water setpoint while unoccupied, 0.01 °C.
    pub unoccupied_cc: i16,
    /// Switching points in increasing (day type, minute) order, at most one per minute.
    pub points: Vec<SwitchPoint, MAX_POINTS>,
}

impl Schedule {
    /// Whether the points are valid and in order, and the setpoint in range.
    pub fn is_valid(&self) -> bool {
        range::SETPOINT_CC.contains(&self.unoccupied_cc)
            && self.points.iter().all(|p| p.minute() < 1440)
            && self.points.windows(2).all(|w| w[0].key() < w[1].key())
    }
}

/// Freeze protection: the pump is forced on while the air is colder than `limit_cc`, until it is
/// warmer than `limit_cc + hysteresis_cc` — whatever the schedule or a manual override says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freeze {
    /// Air temperature below which the pump is forced on, 0.01 °C.
    pub limit_cc: i16,
    /// How much warmer the air must get before the pump is released, 0.01 °C.
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
    /// Weekly schedule of the pump and the setpoint; `None`: the pump runs all the time and the
    /// setpoint is [`Thermostat::setpoint_cc`] (as before schedules existed).
    pub schedule: Option<Schedule>,
    /// Holiday dates, days since 1970-01-01 (local calendar), strictly increasing.
    pub holidays: Vec<u16, MAX_HOLIDAYS>,
    /// The local-time rule of the site, a POSIX TZ string (see [`crate::tz`]); empty: UTC.
    pub time_zone: String<MAX_TZ>,
    /// Freeze protection.
    pub freeze: Freeze,
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
            .field("schedule", &self.schedule)
            .field("holidays", &self.holidays)
            .field("time_zone", &self.time_zone)
            .field("freeze", &self.freeze)
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
        schedule: None,
        holidays: Vec::new(),
        time_zone: String::new(),
        freeze: DEFAULT_FREEZE,
    };
}

/// The factory freeze protection: pump on below 3.00 °C of air, off again above 4.00 °C.
pub const DEFAULT_FREEZE: Freeze = Freeze {
    limit_cc: 300,
    hysteresis_cc: 100,
};

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
    /// Freeze protection limit (air), 0.01 °C.
    pub const FREEZE_LIMIT_CC: RangeInclusive<i16> = -1000..=1000;
    /// Freeze protection hysteresis, 0.01 °C.
    pub const FREEZE_HYSTERESIS_CC: RangeInclusive<u16> = 10..=1000;
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
            && range::ROLLBACK_S.contains(&self.rollback_s)
            && self.schedule.as_ref().is_none_or(Schedule::is_valid)
            && self.holidays.windows(2).all(|w| w[0] < w[1])
            && (self.time_zone.is_empty() || crate::tz::Rule::parse(&self.time_zone).is_ok())
            && range::FREEZE_LIMIT_CC.contains(&self.freeze.limit_cc)
            && range::FREEZE_HYSTERESIS_CC.contains(&self.freeze.hysteresis_cc);
        if ok {
            Ok(())
        } else {
            Err(MessageError::Range)
        }
    }

    /// The local-time rule of [`time_zone`](Self::time_zone) (UTC when empty). A configuration
    /// that passed [`validate`](Self::validate) always has one; anything else reads as UTC.
    pub fn time_zone_rule(&self) -> crate::tz::Rule {
        crate::tz::Rule::parse(&self.time_zone).unwrap_or(crate::tz::Rule {
            std_offset_s: 0,
            dst: None,
        })
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
            if tag_byte != tag::SERVER && (tag::LOG_INTERVAL..=tag::LAST).contains(&tag_byte) {
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
                tag::SCHEDULE => {
                    if value.len() < 2 || value.len() % 2 != 0 {
                        return Err(MessageError::Range);
                    }
                    let mut schedule = Schedule {
                        unoccupied_cc: i16::from_be_bytes([value[0], value[1]]),
                        points: Vec::new(),
                    };
                    for p in value[2..].chunks_exact(2) {
                        let point = SwitchPoint(u16::from_be_bytes([p[0], p[1]]));
                        schedule
                            .points
                            .push(point)
                            .map_err(|_| MessageError::Range)?;
                    }
                    if !schedule.is_valid() {
                        return Err(MessageError::Range);
                    }
                    cfg.schedule = Some(schedule);
                }
                tag::HOLIDAYS => {
                    if value.len() % 2 != 0 {
                        return Err(MessageError::Range);
                    }
                    for d in value.chunks_exact(2) {
                        let day = u16::from_be_bytes([d[0], d[1]]);
                        if cfg.holidays.last().is_some_and(|&last| last >= day) {
                            return Err(MessageError::Range);
                        }
                        cfg.holidays.push(day).map_err(|_| MessageError::Range)?;
                    }
                }
                tag::TIME_ZONE => {
                    let tz = core::str::from_utf8(value).map_err(|_| MessageError::Range)?;
                    if tz.is_empty() || crate::tz::Rule::parse(tz).is_err() {
                        return Err(MessageError::Range);
                    }
                    cfg.time_zone = String::try_from(tz).map_err(|_| MessageError::Range)?;
                }
                tag::FREEZE => {
                    if value.len() != 4 {
                        return Err(MessageError::Range);
                    }
                    let freeze = Freeze {
                        limit_cc: i16::from_be_bytes([value[0], value[1]]),
                        hysteresis_cc: u16::from_be_bytes([value[2], value[3]]),
                    };
                    if !range::FREEZE_LIMIT_CC.contains(&freeze.limit_cc)
                        || !range::FREEZE_HYSTERESIS_CC.contains(&freeze.hysteresis_cc)
                    {
                        return Err(MessageError::Range);
                    }
                    cfg.freeze = freeze;
                }
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
            + self
                .schedule
                .as_ref()
                .map_or(0, |s| 2 + 2 + 2 * s.points.len())
            + if self.holidays.is_empty() {
                0
            } else {
                2 + 2 * self.holidays.len()
            }
            + text(&self.time_zone)
            + if self.freeze == DEFAULT_FREEZE { 0 } else { 6 }
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
        // The items schedules added are written only when they differ from their defaults, so
        // a configuration without them encodes exactly as it did before they existed.
        if let Some(s) = &self.schedule {
            let mut v = [0u8; 2 + 2 * MAX_POINTS];
            v[0..2].copy_from_slice(&s.unoccupied_cc.to_be_bytes());
            for (i, p) in s.points.iter().enumerate() {
                v[2 + 2 * i..4 + 2 * i].copy_from_slice(&p.0.to_be_bytes());
            }
            put(tag::SCHEDULE, &v[..2 + 2 * s.points.len()])?;
        }
        if !self.holidays.is_empty() {
            let mut v = [0u8; 2 * MAX_HOLIDAYS];
            for (i, d) in self.holidays.iter().enumerate() {
                v[2 * i..2 * i + 2].copy_from_slice(&d.to_be_bytes());
            }
            put(tag::HOLIDAYS, &v[..2 * self.holidays.len()])?;
        }
        if !self.time_zone.is_empty() {
            put(tag::TIME_ZONE, self.time_zone.as_bytes())?;
        }
        if self.freeze != DEFAULT_FREEZE {
            let mut v = [0u8; 4];
            v[0..2].copy_from_slice(&self.freeze.limit_cc.to_be_bytes());
            v[2..4].copy_from_slice(&self.freeze.hysteresis_cc.to_be_bytes());
            put(tag::FREEZE, &v)?;
        }
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
        // ... also with the largest schedule, every holiday, the longest time zone, freeze
        // settings: exactly MAX_ITEMS_LEN, with room to spare for later items.
        let mut points = Vec::new();
        for i in 0..MAX_POINTS as u16 {
            let p = SwitchPoint::new((i / 6) as u8, (i % 6) * 200, i % 2 == 0, i % 3 == 0);
            points.push(p.unwrap()).unwrap();
        }
        c.schedule = Some(Schedule {
            unoccupied_cc: 2400,
            points,
        });
        for d in 0..MAX_HOLIDAYS as u16 {
            c.holidays.push(20_000 + d).unwrap();
        }
        c.time_zone = String::try_from("<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/03:45:00").unwrap();
        assert_eq!(c.time_zone.len(), MAX_TZ);
        c.freeze = Freeze {
            limit_cc: -500,
            hysteresis_cc: 200,
        };
        c.validate().unwrap();
        assert_eq!(c.items_len(), MAX_ITEMS_LEN);
        let mut buf = [0u8; crate::wire::data::MAX_MESSAGE];
        let n = c.emit_items(&mut buf).unwrap();
        assert_eq!(n, MAX_ITEMS_LEN);
        assert_eq!(Config::parse_items(&buf[..n]).unwrap(), c);
        const { assert!(1 + 4 + MAX_ITEMS_LEN + 50 <= crate::wire::data::MAX_MESSAGE) };
    }

    fn scheduled() -> Config {
        let mut c = Config::default();
        let mut points = Vec::new();
        for (day, minute, pump, occupied) in [
            (0, 360, true, false),
            (0, 420, true, true),
            (0, 1260, true, false),
            (0, 1320, false, false),
            (HOLIDAY, 0, true, true),
        ] {
            points
                .push(SwitchPoint::new(day, minute, pump, occupied).unwrap())
                .unwrap();
        }
        c.schedule = Some(Schedule {
            unoccupied_cc: 2400,
            points,
        });
        c.holidays.push(20_447).unwrap();
        c.holidays.push(20_448).unwrap();
        c.time_zone = String::try_from("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        c.freeze = Freeze {
            limit_cc: 200,
            hysteresis_cc: 150,
        };
        c
    }

    #[test]
    fn schedule_items_round_trip() {
        let c = scheduled();
        c.validate().unwrap();
        let mut buf = [0u8; 1000];
        let n = c.emit_items(&mut buf).unwrap();
        assert_eq!(n, c.items_len());
        assert_eq!(Config::parse_items(&buf[..n]).unwrap(), c);
        let p = c.schedule.as_ref().unwrap().points[1];
        assert_eq!(
            (p.day(), p.minute(), p.pump(), p.occupied()),
            (0, 420, true, true)
        );
        assert_eq!(p.0, 420 << 2 | 3);
        assert_eq!(c.schedule.as_ref().unwrap().points[4].0, 0xE003);
        // Without the new items the encoding is the one from before schedules existed.
        let d = Config::default();
        let n = d.emit_items(&mut buf).unwrap();
        assert_eq!(n, 26);
        // An empty schedule is a schedule: the pump never runs (but for freeze protection).
        let e = Config {
            schedule: Some(Schedule {
                unoccupied_cc: 2000,
                points: Vec::new(),
            }),
            ..Config::default()
        };
        let n = e.emit_items(&mut buf).unwrap();
        assert_eq!(&buf[n - 4..n], &[tag::SCHEDULE, 2, 0x07, 0xD0]);
        assert_eq!(Config::parse_items(&buf[..n]).unwrap(), e);
    }

    #[test]
    fn bad_schedule_items_refused() {
        let cases: &[&[u8]] = &[
            &[tag::SCHEDULE, 0],                                           // no setpoint
            &[tag::SCHEDULE, 3, 0x09, 0x60, 0],                            // odd length
            &[tag::SCHEDULE, 2, 0x0F, 0xA1],                               // 40.01 °C
            &[tag::SCHEDULE, 4, 0x09, 0x60, 0x16, 0x80],                   // minute 1440
            &[tag::SCHEDULE, 6, 0x09, 0x60, 0x05, 0xA0, 0x05, 0xA3],       // same minute twice
            &[tag::SCHEDULE, 6, 0x09, 0x60, 0x20, 0x00, 0x05, 0xA0],       // Tuesday before Monday
            &[tag::SCHEDULE, 2, 0x09, 0x60, tag::SCHEDULE, 2, 0x09, 0x60], // twice
            &[tag::HOLIDAYS, 3, 0x4F, 0xDF, 0],                            // odd length
            &[tag::HOLIDAYS, 4, 0x4F, 0xDF, 0x4F, 0xDF],                   // not increasing
            &[tag::TIME_ZONE, 0],                                          // empty
            &[tag::TIME_ZONE, 4, b'C', b'E', b'T', b'x'],                  // no offset
            &[
                tag::TIME_ZONE,
                9,
                b'C',
                b'E',
                b'T',
                b'-',
                b'1',
                b'C',
                b'E',
                b'S',
                b'T',
            ], // no dates
            &[tag::FREEZE, 4, 0x03, 0xE9, 0, 100],                         // 10.01 °C
            &[tag::FREEZE, 4, 0, 200, 0, 9],                               // hysteresis 0.09 °C
            &[tag::FREEZE, 2, 0, 200],                                     // wrong length
        ];
        for case in cases {
            assert!(Config::parse_items(case).is_err(), "{case:?}");
        }
        let mut too_many = std::vec![tag::SCHEDULE, 84, 0x09, 0x60];
        for i in 0..41u16 {
            too_many.extend_from_slice(&(i << 2).to_be_bytes());
        }
        too_many[1] = (too_many.len() - 2) as u8;
        assert!(Config::parse_items(&too_many).is_err(), "41 points");
        // `validate` applies the same rules to a value built by hand (the server's path).
        let mut c = scheduled();
        c.holidays.swap(0, 1);
        assert!(c.validate().is_err());
        let mut c = scheduled();
        c.time_zone = String::try_from("Europe/Paris").unwrap();
        assert!(c.validate().is_err());
        let mut c = scheduled();
        c.schedule.as_mut().unwrap().points.swap(0, 1);
        assert!(c.validate().is_err());
        let mut c = scheduled();
        c.schedule.as_mut().unwrap().points[0] = SwitchPoint(1440 << 2);
        assert!(c.validate().is_err());
        assert!(SwitchPoint::new(8, 0, true, true).is_none());
        assert!(SwitchPoint::new(0, 1440, true, true).is_none());
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
    /// tags just above the last known one (16..=31), which a later version is most likely to use.
    #[test]
    fn unknown_tags_may_repeat() {
        for t in [0u8, 16, 17, 31, 32, 255] {
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

    proptest::proptest! {
        /// The fuzz target's properties on schedule-shaped input: tags 12..=15 with arbitrary
        /// values, mixed with the rest. Whatever decodes passes `validate` and re-encodes to a
        /// fixed point that fits a datagram.
        #[test]
        fn schedule_items_decode_validate_reencode(
            items in proptest::collection::vec(
                (12u8..=16, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..90)),
                0..6,
            ),
            tz in "[A-Z]{3}[-+]?[0-9]{1,2}([A-Z]{3,4}(,M[0-9]{1,2}\\.[0-9]\\.[0-9](/[0-9]{1,3})?){2})?",
        ) {
            let mut bytes = std::vec::Vec::new();
            for (t, v) in &items {
                // Mostly plausible values: even lengths, small minutes, sorted holidays.
                let mut v = v.clone();
                if *t == tag::TIME_ZONE {
                    v = tz.as_bytes().to_vec();
                }
                bytes.push(*t);
                bytes.push(v.len() as u8);
                bytes.extend_from_slice(&v);
            }
            if let Ok(cfg) = Config::parse_items(&bytes) {
                proptest::prop_assert!(cfg.validate().is_ok());
                let mut buf = [0u8; 1100];
                let n = cfg.emit_items(&mut buf).unwrap();
                proptest::prop_assert_eq!(n, cfg.items_len());
                proptest::prop_assert!(n <= MAX_ITEMS_LEN);
                proptest::prop_assert_eq!(Config::parse_items(&buf[..n]).unwrap(), cfg);
            }
        }
    }

    #[test]
    fn debug_hides_password() {
        let shown = std::format!("{:?}", sample());
        assert!(!shown.contains("s3cret"));
    }
}
