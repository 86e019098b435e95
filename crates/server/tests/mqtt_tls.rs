//! MQTT over TLS (`mqtts://`) to a real broker: mosquitto with a TLS listener whose certificate
//! comes from a CA made here. tek, trusting that CA through `mqtt.ca_file`, connects and publishes
//! its Home Assistant discovery documents (read back by a subscriber on the broker's plain
//! loopback listener); tek trusting another CA refuses the broker and publishes nothing.

mod common;

use common::broker::{free_port, Broker};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tek_server::storage::{DeviceStore, NewDevice};

/// A CA certificate (PEM) and a broker certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_owned());
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(p, ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (ca_file, cert_file, key_file)
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_the_brokers_ca_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "broker");
    let (other_ca, _, _) = certificates(dir.path(), "other");
    let (plain, tls) = (free_port(), free_port());
    let _broker = Broker::start(
        dir.path(),
        &format!(
            "allow_anonymous true\npersistence false\nlog_dest stderr\n\
             listener {plain} 127.0.0.1\n\
             listener {tls} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
            cert.display(),
            key.display()
        ),
        &[tls, plain],
    );

    // A subscriber on the plain listener.
    let (client, mut el) = AsyncClient::new(MqttOptions::new("sub", "127.0.0.1", plain), 10);
    let topics = Arc::new(Mutex::new(Vec::<String>::new()));
    let subscribed = Arc::new(Mutex::new(false));
    let (t2, s2, c2) = (topics.clone(), subscribed.clone(), client.clone());
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => c2
                    .try_subscribe("homeassistant/#", QoS::AtLeastOnce)
                    .unwrap(),
                Ok(Event::Incoming(Packet::SubAck(_))) => *s2.lock().unwrap() = true,
                Ok(Event::Incoming(Packet::Publish(p))) => t2.lock().unwrap().push(p.topic),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    wait_until("the subscription", Duration::from_secs(10), || {
        *subscribed.lock().unwrap()
    })
    .await;

    let start = |name: &str, ca_file: &Path, device: u32| {
        let data = dir.path().join(name);
        let db = tek_server::storage::sqlite::Sqlite::open_dir(&data).unwrap();
        db.add_devices(
            &[NewDevice {
                id: device,
                name: format!("Pool {device}"),
                key: tek_proto::crypto::Key([7; 16]),
            }],
            0,
        )
        .unwrap();
        drop(db);
        let mut cfg = tek_server::Config::for_tests(&data);
        cfg.mqtt.url = Some(format!("mqtts://127.0.0.1:{tls}"));
        cfg.mqtt.ca_file = Some(ca_file.to_owned());
        cfg.mqtt.retry_initial_ms = 100;
        cfg.mqtt.retry_max_ms = 500;
        tek_server::Server::start(cfg)
    };
    let trusting = start("trusting", &ca, 1).await.unwrap();
    let distrusting = start("distrusting", &other_ca, 2).await.unwrap();

    wait_until("discovery over TLS", Duration::from_secs(20), || {
        topics
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == "homeassistant/sensor/tek_1/energy/config")
    })
    .await;
    let m = trusting.api().metrics_text().await;
    assert_eq!(metric(&m, "tek_mqtt_connected"), 1, "{m}");
    // Meanwhile the server trusting another CA kept failing the handshake.
    let t = Instant::now();
    let m = loop {
        let m = distrusting.api().metrics_text().await;
        if metric(&m, "tek_mqtt_connection_errors_total") >= 2 {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(metric(&m, "tek_mqtt_connects_total"), 0, "{m}");
    assert!(
        !topics.lock().unwrap().iter().any(|t| t.contains("tek_2")),
        "nothing from the server that refused the broker"
    );

    // A CA file without a certificate is a start error, not a silent plain connection.
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let err = start("empty", &dir.path().join("empty.pem"), 3)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("no certificate"), "{err}");

    trusting.shutdown().await;
    distrusting.shutdown().await;
}
