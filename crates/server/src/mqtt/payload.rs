//! Topics and JSON payloads (the schema is documented in docs/MQTT.md; a change here is a change
//! there).
//!
//! Topic tree, `{site}` being the site id or `none` for a device in no site:
//!
//! | topic                               | retained | payload                         |
//! |-------------------------------------|----------|---------------------------------|
//! | `{prefix}/{site}/{device}/record`   | no       | one stored record               |
//! | `{prefix}/{site}/{device}/status`   | yes      | the latest status report        |
//! | `{prefix}/{site}/{device}/availability` | yes  | `online` / `offline`            |
//! | `{prefix}/{site}/{device}/config`   | yes      | configuration version and state |
//! | `{prefix}/{site}/{device}/alarm`    | no       | alarm raised/acknowledged/cleared |
//! | `{prefix}/{site}/{device}/set`      | —        | commands in (see `commands`)    |
//! | `{prefix}/{site}/{device}/set/result` | no     | the answer to a command         |

use super::{AlarmEvent, ConfigEvent};
use crate::storage::TelemetryRow;
use serde_json::{json, Map, Value};
use tek_proto::message::status::{Radio, Transport};
use tek_proto::message::telemetry::channel;
use tek_proto::message::Status;

/// One channel as published: its name in payloads, its unit, and the divisor from the stored
/// integer (e.g. hundredths of a degree) to the published number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Channel number.
    pub ch: u8,
    /// Name in payloads.
    pub name: &'static str,
    /// Unit (empty for a bit field).
    pub unit: &'static str,
    /// Stored value / divisor = published value.
    pub divisor: i32,
}

/// The channels, one registry for payloads and discovery.
pub const CHANNELS: [Channel; 5] = [
    Channel {
        ch: channel::POWER_W,
        name: "power_w",
        unit: "W",
        divisor: 1,
    },
    Channel {
        ch: channel::ENERGY_WH,
        name: "energy_wh",
        unit: "Wh",
        divisor: 1,
    },
    Channel {
        ch: channel::WATER_TEMP_CC,
        name: "water_c",
        unit: "°C",
        divisor: 100,
    },
    Channel {
        ch: channel::AIR_TEMP_CC,
        name: "air_c",
        unit: "°C",
        divisor: 100,
    },
    Channel {
        ch: channel::RELAYS,
        name: "relays",
        unit: "",
        divisor: 1,
    },
];

/// The `{site}` topic level.
pub fn site_level(site: Option<i64>) -> String {
    site.map_or_else(|| "none".to_owned(), |s| s.to_string())
}

/// `{prefix}/{site}/{device}/{leaf}`.
pub fn topic(prefix: &str, site: Option<i64>, device_id: u32, leaf: &str) -> String {
    format!("{prefix}/{}/{device_id}/{leaf}", site_level(site))
}

fn number(v: i32, divisor: i32) -> Value {
    if divisor == 1 {
        json!(v)
    } else {
        json!(f64::from(v) / f64::from(divisor))
    }
}

/// A record: `{"device", "site", "time", "boot", "seq", "values": {name: {"value", "unit"}}}`.
pub fn record(r: &TelemetryRow, site: Option<i64>) -> Value {
    let mut values = Map::new();
    for c in CHANNELS {
        if let Some(v) = r.get(c.ch) {
            values.insert(
                c.name.into(),
                json!({ "value": number(v, c.divisor), "unit": c.unit }),
            );
        }
    }
    // Channels without a registry entry (reserved slots 5..7) as raw integers.
    for ch in CHANNELS.len() as u8..channel::COUNT as u8 {
        if let Some(v) = r.get(ch) {
            values.insert(format!("ch{ch}"), json!({ "value": v, "unit": "" }));
        }
    }
    json!({
        "device": r.device_id,
        "site": site,
        "time": r.time,
        "boot": r.boot,
        "seq": r.seq,
        "values": values,
    })
}

/// A status report.
pub fn status(device_id: u32, site: Option<i64>, s: &Status, at: i64) -> Value {
    let ip = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_string();
    json!({
        "device": device_id,
        "site": site,
        "time": at,
        "transport": match s.transport { Transport::Ethernet => "ethernet", Transport::Gsm => "gsm" },
        "ip": ip(s.ip),
        "uptime_s": s.uptime_s,
        "firmware": format!("{}.{}.{}", s.firmware[0], s.firmware[1], s.firmware[2]),
        "config_version": s.config_version,
        "log_drops": s.log_drops,
        "log_backlog": s.log_backlog,
        "gsm_signal": s.gsm_signal,
        "radio": match s.radio {
            Radio::Off => "off",
            Radio::Searching => "searching",
            Radio::Registered => "registered",
            Radio::Data => "data",
            Radio::NoSim => "no_sim",
        },
        "relays": s.relays,
        "pump": s.relays & 1 != 0,
        "heater": s.relays & 2 != 0,
    })
}

/// A configuration event.
pub fn config(
    device_id: u32,
    site: Option<i64>,
    version: u32,
    state: ConfigEvent,
    at: i64,
) -> Value {
    json!({
        "device": device_id,
        "site": site,
        "time": at,
        "version": version,
        "state": match state {
            ConfigEvent::Pending => "pending",
            ConfigEvent::Applied => "applied",
            ConfigEvent::RolledBack => "rolled_back",
        },
    })
}

/// An alarm event.
#[allow(clippy::too_many_arguments)]
pub fn alarm(
    device_id: u32,
    site: Option<i64>,
    alarm_id: i64,
    rule_id: i64,
    event: AlarmEvent,
    severity: &str,
    message: &str,
    at: i64,
) -> Value {
    json!({
        "device": device_id,
        "site": site,
        "time": at,
        "alarm": alarm_id,
        "rule": rule_id,
        "event": match event {
            AlarmEvent::Raised => "raised",
            AlarmEvent::Acknowledged => "acknowledged",
            AlarmEvent::Cleared => "cleared",
        },
        "severity": severity,
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_payload_has_names_units_and_scaled_values() {
        let r = TelemetryRow {
            device_id: 7,
            boot: 2,
            seq: 41,
            time: 1_700_000_000,
            channels: 0b1_1111,
            values: [1500, 123_456, 2750, -125, 3, 0, 0, 0],
        };
        let v = record(&r, Some(3));
        assert_eq!(
            v,
            json!({
                "device": 7, "site": 3, "time": 1_700_000_000, "boot": 2, "seq": 41,
                "values": {
                    "power_w": {"value": 1500, "unit": "W"},
                    "energy_wh": {"value": 123456, "unit": "Wh"},
                    "water_c": {"value": 27.5, "unit": "°C"},
                    "air_c": {"value": -1.25, "unit": "°C"},
                    "relays": {"value": 3, "unit": ""},
                }
            })
        );
        let only_power = TelemetryRow { channels: 1, ..r };
        assert_eq!(
            record(&only_power, None)["values"],
            json!({"power_w": {"value": 1500, "unit": "W"}})
        );
        assert_eq!(topic("tek", None, 7, "record"), "tek/none/7/record");
        assert_eq!(topic("x/y", Some(2), 7, "set"), "x/y/2/7/set");
    }
}
