//! Home Assistant MQTT discovery: each controller becomes a device with sensors (power; energy
//! with `state_class: total_increasing` for the energy dashboard; water and air temperature) and
//! a thermostat (`climate`), all available while tek sees the controller online.
//!
//! The documents are retained on `{discovery_prefix}/{component}/tek_{device}/{object}/config`
//! and published again at every connection to the broker, when a device changes site (its
//! state topics change with it) and when it is renamed (the device's name is in them).

use super::payload::topic;
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

/// The documents of one device.
pub fn documents(
    discovery_prefix: &str,
    prefix: &str,
    device_id: u32,
    name: &str,
    site: Option<i64>,
) -> Vec<Document> {
    let node = format!("tek_{device_id}");
    let device = json!({
        "identifiers": [node],
        "name": name,
        "manufacturer": "TEK",
        "model": "Pool EMS controller",
    });
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
}
