//! Home Assistant MQTT discovery: each controller becomes a device with sensors (power; energy
//! with `state_class: total_increasing` for the energy dashboard; water and air temperature) and
//! a thermostat (`climate`), all available while tek sees the controller online.
//!
//! The documents are retained on `{discovery_prefix}/{component}/tek_{device}/{object}/config`
//! and published again at every connection to the broker, when a device changes site (its
//! state topics change with it) and when it is renamed (the device's name is in them).
//!
//! A device with its own channel map in effect (`service::device_channels::in_effect`) gets one
//! sensor per channel of the map instead of the four pool sensors ([`channel_documents`]), read
//! from its `channels` topic; they are published with the others and again when the device
//! confirms a new configuration version (its map may have changed). The pool sensors' documents
//! and those of channels the map no longer has are then published empty, which removes them
//! from Home Assistant.

use super::payload::{channel_key, topic};
use crate::service::device_channels::unit_of;
use crate::storage::{ChannelKind, DeviceChannels};
use serde_json::{json, Value};

/// One discovery document: its topic and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where it is published (retained).
    pub topic: String,
    /// The document.
    pub payload: Value,
}

/// The sensors: object id, name, channel name in the record payload, device class, state
/// class, unit.
const SENSORS: [(&str, &str, &str, &str, &str, &str); 4] = [
    ("power", "Power", "power_w", "power", "measurement", "W"),
    (
        "energy",
        "Energy",
        "energy_wh",
        "energy",
        "total_increasing",
        "Wh",
    ),
    (
        "water_temperature",
        "Water temperature",
        "water_c",
        "temperature",
        "measurement",
        "°C",
    ),
    (
        "air_temperature",
        "Air temperature",
        "air_c",
        "temperature",
        "measurement",
        "°C",
    ),
];

/// The `device` block every document of a controller carries (Home Assistant groups them by it).
fn device_block(device_id: u32, name: &str) -> Value {
    json!({
        "identifiers": [format!("tek_{device_id}")],
        "name": name,
        "manufacturer": "TEK",
        "model": "Pool EMS controller",
    })
}

/// The topics of the four pool sensors' documents (emptied for a device with its own map).
pub fn pool_sensor_topics(discovery_prefix: &str, device_id: u32) -> Vec<String> {
    SENSORS
        .iter()
        .map(|(object, ..)| format!("{discovery_prefix}/sensor/tek_{device_id}/{object}/config"))
        .collect()
}

/// Home Assistant's device class and state class for a channel kind: power and temperature are
/// measurements, an energy counter only grows (the energy dashboard takes it); a state or any
/// other quantity gets neither.
fn classes(kind: ChannelKind) -> Option<(&'static str, &'static str)> {
    match kind {
        ChannelKind::Power => Some(("power", "measurement")),
        ChannelKind::Energy => Some(("energy", "total_increasing")),
        ChannelKind::Temperature => Some(("temperature", "measurement")),
        ChannelKind::State | ChannelKind::Other => None,
    }
}

/// One sensor per channel of the device's map `entry`, its state from the `channels` topic.
pub fn channel_documents(
    discovery_prefix: &str,
    prefix: &str,
    device_id: u32,
    name: &str,
    site: Option<i64>,
    entry: &DeviceChannels,
) -> Vec<Document> {
    let node = format!("tek_{device_id}");
    let device = device_block(device_id, name);
    let availability = topic(prefix, site, device_id, "availability");
    let state = topic(prefix, site, device_id, "channels");
    entry
        .channels
        .iter()
        .map(|c| {
            let key = channel_key(c);
            let mut payload = json!({
                "name": c.name,
                "unique_id": format!("{node}_{key}"),
                "object_id": format!("{node}_{key}"),
                "device": device,
                "availability_topic": availability,
                "state_topic": state,
                // `null` (no value) renders "None", which Home Assistant takes as unknown;
                // a record of another map without this key leaves the state as it was.
                "value_template": format!(
                    "{{% if '{key}' in value_json['values'] %}}{{{{ value_json['values']['{key}']['value'] }}}}{{% else %}}{{{{ this.state }}}}{{% endif %}}"
                ),
                "suggested_display_precision": c.decimals,
            });
            let unit = unit_of(c);
            if !unit.is_empty() {
                payload["unit_of_measurement"] = json!(unit);
            }
            if let Some((class, state_class)) = classes(c.kind) {
                payload["device_class"] = json!(class);
                payload["state_class"] = json!(state_class);
            }
            Document {
                topic: format!("{discovery_prefix}/sensor/{node}/{key}/config"),
                payload,
            }
        })
        .collect()
}

/// The documents of one device.
pub fn documents(
    discovery_prefix: &str,
    prefix: &str,
    device_id: u32,
    name: &str,
    site: Option<i64>,
) -> Vec<Document> {
    let node = format!("tek_{device_id}");
    let device = device_block(device_id, name);
    let availability = topic(prefix, site, device_id, "availability");
    let record = topic(prefix, site, device_id, "record");
    let mut out: Vec<Document> = SENSORS
        .iter()
        .map(|(object, label, channel, class, state_class, unit)| Document {
            topic: format!("{discovery_prefix}/sensor/{node}/{object}/config"),
            payload: json!({
                "name": label,
                "unique_id": format!("{node}_{object}"),
                "object_id": format!("{node}_{object}"),
                "device": device,
                "availability_topic": availability,
                "state_topic": record,
                // A record without this channel leaves the state as it was.
                "value_template": format!(
                    "{{% if '{channel}' in value_json['values'] %}}{{{{ value_json['values']['{channel}']['value'] }}}}{{% else %}}{{{{ this.state }}}}{{% endif %}}"
                ),
                "device_class": class,
                "state_class": state_class,
                "unit_of_measurement": unit,
            }),
        })
        .collect();
    out.push(Document {
        topic: format!("{discovery_prefix}/climate/{node}/thermostat/config"),
        payload: json!({
            "name": "Thermostat",
            "unique_id": format!("{node}_thermostat"),
            "object_id": format!("{node}_thermostat"),
            "device": device,
            "availability_topic": availability,
            "modes": ["heat"],
            "temperature_unit": "C",
            "precision": 0.1,
            "current_temperature_topic": record,
            "current_temperature_template":
                "{% if 'water_c' in value_json['values'] %}{{ value_json['values']['water_c']['value'] }}{% else %}{{ this.attributes.current_temperature }}{% endif %}",
            "temperature_state_topic": topic(prefix, site, device_id, "config"),
            "temperature_state_template": "{{ value_json.setpoint_c }}",
            "action_topic": topic(prefix, site, device_id, "status"),
            "action_template": "{{ 'heating' if value_json.heater else 'idle' }}",
        }),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_with_energy_sensor_thermostat_and_availability() {
        let docs = documents("homeassistant", "tek", 7, "Pool 7", Some(2));
        assert_eq!(docs.len(), 5);
        let energy = docs
            .iter()
            .find(|d| d.topic == "homeassistant/sensor/tek_7/energy/config")
            .unwrap();
        assert_eq!(energy.payload["state_class"], "total_increasing");
        assert_eq!(energy.payload["device_class"], "energy");
        assert_eq!(energy.payload["unit_of_measurement"], "Wh");
        assert_eq!(energy.payload["state_topic"], "tek/2/7/record");
        let climate = docs
            .iter()
            .find(|d| d.topic == "homeassistant/climate/tek_7/thermostat/config")
            .unwrap();
        assert_eq!(
            climate.payload["current_temperature_topic"],
            "tek/2/7/record"
        );
        for d in &docs {
            assert_eq!(d.payload["availability_topic"], "tek/2/7/availability");
            assert_eq!(d.payload["device"]["identifiers"][0], "tek_7");
            assert_eq!(d.payload["device"]["name"], "Pool 7");
        }
        let power = &docs[0].payload;
        assert_eq!(
            power["value_template"],
            "{% if 'power_w' in value_json['values'] %}{{ value_json['values']['power_w']['value'] }}{% else %}{{ this.state }}{% endif %}"
        );
    }

    #[test]
    fn one_sensor_per_channel_with_classes_from_the_kind() {
        let entry = crate::mqtt::payload::tests::meter_entry();
        let docs = channel_documents("homeassistant", "tek", 7, "Meter 7", Some(2), &entry);
        assert_eq!(docs.len(), entry.channels.len());
        let doc = |key: &str| {
            &docs
                .iter()
                .find(|d| d.topic == format!("homeassistant/sensor/tek_7/{key}/config"))
                .unwrap_or_else(|| panic!("{key} in {docs:?}"))
                .payload
        };
        let power = doc("power_2");
        assert_eq!(
            (
                &power["device_class"],
                &power["state_class"],
                &power["unit_of_measurement"]
            ),
            (&json!("power"), &json!("measurement"), &json!("W"))
        );
        assert_eq!(power["state_topic"], "tek/2/7/channels");
        assert_eq!(power["unique_id"], "tek_7_power_2");
        assert_eq!(power["name"], "Power");
        assert_eq!(
            power["value_template"],
            "{% if 'power_2' in value_json['values'] %}{{ value_json['values']['power_2']['value'] }}{% else %}{{ this.state }}{% endif %}"
        );
        let energy = doc("total_energy_6");
        assert_eq!(energy["device_class"], "energy");
        assert_eq!(energy["state_class"], "total_increasing");
        assert_eq!(energy["unit_of_measurement"], "Wh");
        // A voltage is plain: a unit, no classes.
        let voltage = doc("voltage_0");
        assert_eq!(voltage["unit_of_measurement"], "V");
        assert!(voltage.get("device_class").is_none() && voltage.get("state_class").is_none());
        for d in &docs {
            assert_eq!(d.payload["availability_topic"], "tek/2/7/availability");
            assert_eq!(d.payload["device"]["identifiers"][0], "tek_7");
            assert_eq!(d.payload["device"]["name"], "Meter 7");
        }
        // A temperature channel is a temperature measurement.
        assert_eq!(
            classes(ChannelKind::Temperature),
            Some(("temperature", "measurement"))
        );
        assert_eq!(classes(ChannelKind::State), None);
        assert_eq!(
            pool_sensor_topics("ha", 7)[0],
            "ha/sensor/tek_7/power/config"
        );
    }
}
