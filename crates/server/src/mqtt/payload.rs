//! Topics and JSON payloads (the schema is documented in docs/MQTT.md; a change here is a change
//! there).
//!
//! Topic tree, `{site}` being the site id or `none` for a device in no site:
//!
//! | topic                               | retained | payload                         |
//! |-------------------------------------|----------|---------------------------------|
//! | `{prefix}/{site}/{device}/record`   | no       | one stored record               |
//! | `{prefix}/{site}/{device}/channels` | no       | one stored wide record, by the device's channel map |
//! | `{prefix}/{site}/{device}/status`   | yes      | the latest status report        |
//! | `{prefix}/{site}/{device}/availability` | yes  | `online` / `offline`            |
//! | `{prefix}/{site}/{device}/config`   | yes      | configuration version and state |
//! | `{prefix}/{site}/{device}/alarm`    | no       | alarm raised/acknowledged/cleared |
//! | `{prefix}/{site}/{device}/set`      | —        | commands in (see `commands`)    |
//! | `{prefix}/{site}/{device}/set/result` | no     | the answer to a command         |

use super::{AlarmEvent, ConfigEvent};
use crate::service::device_channels::{scaled, scales, unit_of};
use crate::storage::{ChannelInfo, DeviceChannels, TelemetryRow, WideRow};
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

/// A channel's key in the `channels` payload and in its discovery topic: the name as a slug
/// (lower-case ASCII letters and digits, anything else one `_`) and the index, so two channels
/// whose names slug alike still differ, and the key only changes when the map does.
pub fn channel_key(c: &ChannelInfo) -> String {
    let mut slug = String::new();
    for ch in c.name.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug = slug.trim_end_matches('_');
    if slug.is_empty() {
        format!("ch_{}", c.index)
    } else {
        format!("{slug}_{}", c.index)
    }
}

/// A value in its unit as JSON: rounded to the map's resolution (`scale`, a power of ten) so
/// 2314 × 0.1 reads 231.4, not 231.40000000000003; a whole number without a fraction.
fn unit_value(v: f64, scale: f64) -> Value {
    let decimals = if scale < 1.0 {
        (-scale.log10()).round() as usize
    } else {
        0
    };
    let rounded: f64 = format!("{v:.decimals$}").parse().unwrap_or(v);
    if rounded.fract() == 0.0 && rounded.abs() < 9.0e15 {
        json!(rounded as i64)
    } else {
        json!(rounded)
    }
}

/// A wide record: `{"device", "site", "time", "boot", "seq", "version", "values": {key:
/// {"value", "unit", "name", "index"}}}`. With the device's channel map (`entry`, the one the
/// record was logged under) every channel of the map appears, keyed by [`channel_key`], its
/// value in its unit or `null` when the record has none (never 0); without one (the factory
/// map, or no map known for the record's version) `version` is `null` and the channels the
/// record has appear as raw integers under `ch{n}`.
pub fn channels_record(r: &WideRow, entry: Option<&DeviceChannels>, site: Option<i64>) -> Value {
    let mut values = Map::new();
    match entry {
        Some(entry) => {
            let scales = scales(entry);
            for c in &entry.channels {
                let scale = scales.get(usize::from(c.index)).copied().unwrap_or(1.0);
                let value =
                    scaled(r, c.index, &scales).map_or(Value::Null, |v| unit_value(v, scale));
                values.insert(
                    channel_key(c),
                    json!({ "value": value, "unit": unit_of(c), "name": c.name, "index": c.index }),
                );
            }
        }
        None => {
            for (ch, v) in r.values.iter() {
                values.insert(
                    format!("ch{ch}"),
                    json!({ "value": v, "unit": "", "name": format!("ch{ch}"), "index": ch }),
                );
            }
        }
    }
    json!({
        "device": r.device_id,
        "site": site,
        "time": r.time,
        "boot": r.boot,
        "seq": r.seq,
        "version": entry.map(|e| e.version),
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
pub(crate) mod tests {
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
    }

    /// Device 7 running the single-phase meter template from version 3.
    pub(crate) fn meter_entry() -> DeviceChannels {
        let t = crate::storage::channels::builtin::sdm120();
        let set = crate::storage::ChannelSet {
            map: t.map(),
            roles: t.roles_value(),
            channels: t.labels(),
        };
        DeviceChannels {
            device_id: 7,
            version: 3,
            template_id: None,
            channels: crate::storage::channels::validate(&set).unwrap(),
            map: set.map,
            roles: set.roles,
            saved_at: 0,
        }
    }

    #[test]
    fn channel_keys_are_slugs_with_the_index() {
        let c = |name: &str, index| ChannelInfo {
            index,
            name: name.into(),
            unit: 0,
            kind: crate::storage::ChannelKind::Other,
            decimals: 0,
        };
        assert_eq!(channel_key(&c("Voltage L1", 0)), "voltage_l1_0");
        assert_eq!(
            channel_key(&c("  Température (eau) ", 12)),
            "temp_rature_eau_12"
        );
        assert_eq!(channel_key(&c("°C", 3)), "c_3");
        assert_eq!(channel_key(&c("° / °", 4)), "ch_4");
    }

    #[test]
    fn wide_record_payload_has_every_channel_in_its_unit_and_null_for_no_value() {
        let entry = meter_entry();
        let r = WideRow {
            device_id: 7,
            boot: 2,
            seq: 9,
            time: 1_700_000_000,
            config_version: Some(3),
            values: crate::storage::WideValues::from_options(&[
                Some(2_314),
                Some(5_120),
                Some(1_182),
                None,
                Some(123_456),
                Some(0),
                Some(123_456),
            ]),
        };
        let v = channels_record(&r, Some(&entry), Some(4));
        assert_eq!(
            v,
            json!({
                "device": 7, "site": 4, "time": 1_700_000_000, "boot": 2, "seq": 9, "version": 3,
                "values": {
                    "voltage_0": {"value": 231.4, "unit": "V", "name": "Voltage", "index": 0},
                    "current_1": {"value": 5.12, "unit": "A", "name": "Current", "index": 1},
                    "power_2": {"value": 1182, "unit": "W", "name": "Power", "index": 2},
                    "frequency_3": {"value": null, "unit": "Hz", "name": "Frequency", "index": 3},
                    "import_energy_4": {"value": 123456, "unit": "Wh", "name": "Import energy", "index": 4},
                    "export_energy_5": {"value": 0, "unit": "Wh", "name": "Export energy", "index": 5},
                    "total_energy_6": {"value": 123456, "unit": "Wh", "name": "Total energy", "index": 6},
                }
            })
        );
        // Without a map: the values it has, raw, and no version.
        let v = channels_record(&r, None, None);
        assert_eq!(v["version"], Value::Null);
        assert_eq!(
            v["values"]["ch0"],
            json!({"value": 2314, "unit": "", "name": "ch0", "index": 0})
        );
        assert!(v["values"].get("ch3").is_none());
        assert_eq!(v["values"].as_object().unwrap().len(), 6);
        assert_eq!(topic("x/y", Some(2), 7, "set"), "x/y/2/7/set");
    }
}
