//! A device's own channels reach MQTT (issue 18 point 4), end to end with a real broker
//! (mosquitto on 127.0.0.1): a controller running the single-phase meter map sends a
//! WideTelemetry record over real UDP; the broker gets it on `tek/{site}/{device}/channels`
//! with each channel's value in its unit and `null` for the channel without a value, and Home
//! Assistant gets one sensor per channel (the pool sensors' documents emptied). A later batch
//! mixing a retransmission with a new record publishes the new record only.

mod common;

use common::broker::{free_port, Broker};
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tek_proto::channel::code;
use tek_proto::channel::wide::{ChannelSet, WideWriter};
use tek_proto::message::{Config, ConfigResult, Message};
use tek_server::storage::channels::builtin;

/// (topic, payload) of every message the subscriber got.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn wait_for(what: &str, received: &Received, f: impl Fn(&str, &[u8]) -> bool) -> Vec<u8> {
    let t = Instant::now();
    loop {
        if let Some((_, p)) = received
            .lock()
            .unwrap()
            .iter()
            .find(|(topic, p)| f(topic, p))
        {
            return p.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}; got {:?}",
            received
                .lock()
                .unwrap()
                .iter()
                .map(|(t, _)| t.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_record_reaches_the_broker_by_the_devices_channel_map() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(
        dir.path(),
        &format!(
            "allow_anonymous true\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\n"
        ),
        &[port],
    );

    let (client, mut el) = AsyncClient::new(MqttOptions::new("sub", "127.0.0.1", port), 100);
    let received: Received = Arc::default();
    let subscribed = Arc::new(Mutex::new(0));
    let (r2, s2, c2) = (received.clone(), subscribed.clone(), client.clone());
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    c2.try_subscribe("tek/#", QoS::AtLeastOnce).unwrap();
                    c2.try_subscribe("homeassistant/#", QoS::AtLeastOnce)
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => *s2.lock().unwrap() += 1,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    r2.lock().unwrap().push((p.topic, p.payload.to_vec()))
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let t = Instant::now();
    while *subscribed.lock().unwrap() < 2 {
        assert!(t.elapsed() < Duration::from_secs(10), "no subscription");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let h = start(|cfg| {
        cfg.mqtt.url = Some(format!("mqtt://127.0.0.1:{port}"));
        cfg.mqtt.retry_initial_ms = 100;
        cfg.mqtt.retry_max_ms = 500;
    })
    .await;
    let db = h.storage();
    let mut d = h.device(1).await;
    // Device 1 runs the single-phase meter map from the version it confirmed.
    let version = db.save_config(1, &Config::default(), 1_000).unwrap();
    let t = builtin::sdm120();
    let set = tek_server::storage::ChannelSet {
        map: t.map(),
        roles: t.roles_value(),
        channels: t.labels(),
    };
    db.save_device_channels(1, version, None, &set, 1_000)
        .unwrap();
    db.config_acked(1, version, ConfigResult::Applied, 1_010)
        .unwrap();

    d.handshake().await;
    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: version,
    })
    .await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));
    // One record: 231.4 V, 5.120 A, 1182 W, no frequency, 123456 / 0 / 123456 Wh.
    let values = [
        Some(2_314),
        Some(5_120),
        Some(1_182),
        None,
        Some(123_456),
        Some(0),
        Some(123_456),
    ];
    let seven = (0..7).fold(ChannelSet(0), |s, c| s.with(c));
    let mut buf = vec![0u8; 512];
    buf[0] = code::WIDE_TELEMETRY;
    let mut w = WideWriter::new(&mut buf[1..], 0, seven, 10_000).unwrap();
    assert!(w.push(9_940, &values));
    let n = 1 + w.len();
    buf.truncate(n);
    let bytes = d.seal_bytes(&buf);
    d.send_raw(&bytes).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 0 }));

    let state = wait_for("the wide record", &received, |t, _| {
        t.starts_with("tek/") && t.ends_with("/1/channels")
    })
    .await;
    let v: Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(
        (v["device"].as_u64(), v["seq"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(v["version"].as_u64(), Some(u64::from(version)));
    let value = |key: &str| v["values"][key]["value"].clone();
    assert_eq!(value("voltage_0"), serde_json::json!(231.4));
    assert_eq!(v["values"]["voltage_0"]["unit"], "V");
    assert_eq!(value("current_1"), serde_json::json!(5.12));
    assert_eq!(value("power_2"), serde_json::json!(1182));
    assert_eq!(value("frequency_3"), Value::Null, "no value, never 0");
    assert!(v["values"]["frequency_3"].is_object(), "{v}");
    assert_eq!(value("export_energy_5"), serde_json::json!(0));
    assert_eq!(value("total_energy_6"), serde_json::json!(123_456));

    // A batch mixing a retransmission (seq 0 again) with a new record (seq 1): only the new one
    // is published.
    let mut buf = vec![0u8; 512];
    buf[0] = code::WIDE_TELEMETRY;
    let mut w = WideWriter::new(&mut buf[1..], 0, seven, 10_070).unwrap();
    assert!(w.push(9_940, &values));
    let mut later = values;
    later[2] = Some(1_250);
    assert!(w.push(10_000, &later));
    let n = 1 + w.len();
    buf.truncate(n);
    let bytes = d.seal_bytes(&buf);
    d.send_raw(&bytes).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 1 }));
    let seq_of = |p: &[u8]| serde_json::from_slice::<Value>(p).unwrap()["seq"].as_u64();
    let second = wait_for("the new wide record", &received, |t, p| {
        t.ends_with("/1/channels") && seq_of(p) == Some(1)
    })
    .await;
    let second: Value = serde_json::from_slice(&second).unwrap();
    assert_eq!(
        second["values"]["power_2"]["value"],
        serde_json::json!(1250)
    );
    // Published in order with the new one if at all: give the broker a moment, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_again = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, p)| t.ends_with("/1/channels") && seq_of(p) == Some(0))
        .count();
    assert_eq!(
        first_again, 1,
        "the retransmitted record was published again"
    );
    assert_eq!(db.wide_count(1).unwrap(), 2);

    // Home Assistant: a sensor per channel, the pool power sensor removed (empty document).
    let power = wait_for("the power channel's discovery", &received, |t, p| {
        t == "homeassistant/sensor/tek_1/power_2/config" && !p.is_empty()
    })
    .await;
    let power: Value = serde_json::from_slice(&power).unwrap();
    assert_eq!(power["device_class"], "power");
    assert_eq!(power["state_class"], "measurement");
    assert!(power["state_topic"]
        .as_str()
        .unwrap()
        .ends_with("/1/channels"));
    let energy = wait_for("the energy channel's discovery", &received, |t, p| {
        t == "homeassistant/sensor/tek_1/total_energy_6/config" && !p.is_empty()
    })
    .await;
    let energy: Value = serde_json::from_slice(&energy).unwrap();
    assert_eq!(energy["state_class"], "total_increasing");
    wait_for("the pool power sensor emptied", &received, |t, p| {
        t == "homeassistant/sensor/tek_1/power/config" && p.is_empty()
    })
    .await;
    h.server.shutdown().await;
}
