//! MQTT end to end on loopback with a real broker: Debian's `mosquitto`, started here on a free
//! port with a configuration file written here (password authentication, no persistence).
//! Simulated controllers (tek-sim) send telemetry to an in-process `tek serve` that publishes to
//! the broker; a subscriber written here checks what arrives.
//!
//! * every stored record arrives exactly once, on its device's topic, with the stored values;
//!   each device is announced to Home Assistant and shown online;
//! * a command published with an authorised user's token reaches the simulated controller (it
//!   acknowledges it) and is audited; one with another site's token, a bad token, or the wrong
//!   site in the topic is refused with a published error and never queued;
//! * the broker killed under load: ingest goes on, nothing is missing from storage, and
//!   publishing resumes once the broker is back (this one over MQTT 5, the others 3.1.1);
//! * an alarm raised by a rule, then acknowledged through the JSON API, is published as
//!   `raised` then `acknowledged` on the device's alarm topic with the documented payload; a
//!   rename (`PATCH /api/devices/{id}`, then the Configure page's form) publishes the Home
//!   Assistant discovery documents again with the new name.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tek_server::storage::{
    AuditFilter, CommandState, DeviceStore, NewDevice, SiteStore, Storage, TelemetryQuery,
    TelemetryRow, UserStore, WebSessionStore,
};
use tek_sim::fleet::Device;
use tek_sim::{Fleet, Options};

const TEK_USER: (&str, &str) = ("tek", "tek-broker-password");
const CLIENT_USER: (&str, &str) = ("node-red", "client-broker-password");
const ALICE: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const BOB: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: install Debian's mosquitto (scripts/setup.sh does)");
}

/// A mosquitto process on 127.0.0.1:`port`.
struct Broker {
    child: Option<Child>,
    conf: PathBuf,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let passwd = dir.join("passwd");
        for (i, (user, pass)) in [TEK_USER, CLIENT_USER].into_iter().enumerate() {
            let mut c = Command::new(program("mosquitto_passwd"));
            if i == 0 {
                c.arg("-c");
            }
            let ok = c
                .arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg(pass)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(ok.success(), "mosquitto_passwd failed");
        }
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\nlog_dest stderr\n",
                passwd.display()
            ),
        )
        .unwrap();
        let mut b = Broker {
            child: None,
            conf,
            port,
        };
        b.restart();
        b
    }

    fn restart(&mut self) {
        let log = std::fs::File::create(self.conf.with_extension("log")).unwrap();
        let child = Command::new(program("mosquitto"))
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A received message.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
}

impl Msg {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// An MQTT client that subscribes to `filters` at every connection and keeps what arrives.
struct Client {
    client: AsyncClient,
    got: Arc<Mutex<Vec<Msg>>>,
}

impl Client {
    async fn connect(port: u16, id: &str, filters: &[&str]) -> Client {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_credentials(CLIENT_USER.0, CLIENT_USER.1);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(o, 100);
        let got = Arc::new(Mutex::new(Vec::new()));
        let subacks = Arc::new(Mutex::new(0));
        let (c, g, s) = (client.clone(), got.clone(), subacks.clone());
        let want = filters.len() as u32;
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            c.try_subscribe(f.clone(), QoS::AtLeastOnce).unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => *s.lock().unwrap() += 1,
                    Ok(Event::Incoming(Packet::Publish(p))) => g.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    }),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let sa = subacks.clone();
        wait_until("the subscriptions", Duration::from_secs(10), async || {
            (*sa.lock().unwrap() >= want).then_some(())
        })
        .await;
        Client { client, got }
    }

    fn messages(&self, topic_end: &str) -> Vec<Msg> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic.ends_with(topic_end))
            .cloned()
            .collect()
    }

    async fn publish(&self, topic: &str, body: Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body.to_string())
            .await
            .unwrap();
    }

    /// Publishes a command and waits for its result (matched by `id`).
    async fn command(&self, topic: &str, body: Value) -> Value {
        let id = body["id"].clone();
        self.publish(topic, body).await;
        let result_topic = format!("{topic}/result");
        wait_until("the command result", Duration::from_secs(20), async || {
            self.messages("/set/result")
                .into_iter()
                .filter(|m| m.topic == result_topic)
                .map(|m| m.json())
                .find(|v| v["id"] == id)
        })
        .await
    }
}

async fn wait_until<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn key(id: u32) -> [u8; 16] {
    [id as u8; 16]
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tek-mqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Devices 1..=n; sites A (devices 1, 2) and B (none); alice in A, bob in B. Returns the sites.
fn prepare(dir: &Path, n: u32) -> (i64, i64) {
    let db = tek_server::storage::sqlite::Sqlite::open_dir(&dir.join("data")).unwrap();
    let devices: Vec<NewDevice> = (1..=n)
        .map(|id| NewDevice {
            id,
            name: format!("Pool {id}"),
            key: tek_proto::crypto::Key(key(id)),
        })
        .collect();
    db.add_devices(&devices, 0).unwrap();
    let a = db.create_site("Site A", 0).unwrap();
    let b = db.create_site("Site B", 0).unwrap();
    db.assign_devices(&[1, 2], Some(a)).unwrap();
    let hash = tek_server::http::auth::hash_password("correct horse battery").unwrap();
    for (email, site, token) in [("alice@example.com", a, ALICE), ("bob@example.com", b, BOB)] {
        let u = db.create_user(email, &hash, false, 0).unwrap();
        db.grant_site(u, site).unwrap();
        db.create_token(u, "mqtt", &tek_server::http::auth::secret_hash(token), 0)
            .unwrap();
    }
    (a, b)
}

fn server_config(dir: &Path, port: u16) -> tek_server::Config {
    let mut cfg = tek_server::Config::for_tests(&dir.join("data"));
    cfg.mqtt.url = Some(format!("mqtt://127.0.0.1:{port}"));
    cfg.mqtt.username = Some(TEK_USER.0.into());
    cfg.mqtt.password = Some(TEK_USER.1.into());
    cfg.mqtt.retry_initial_ms = 100;
    cfg.mqtt.retry_max_ms = 1000;
    cfg.mqtt.commands = true;
    cfg
}

fn fleet_options(n: u32, udp: std::net::SocketAddr) -> Options {
    let devices = (1..=n)
        .map(|id| Device {
            id,
            key: key(id),
            name: None,
        })
        .collect();
    let mut opts = Options::new(devices, vec![udp.to_string()]);
    opts.speed = 20.0;
    opts.gsm = false;
    opts
}

fn stored(db: &dyn Storage, device_id: u32) -> Vec<TelemetryRow> {
    db.telemetry(&TelemetryQuery {
        device_id,
        from: 0,
        to: i64::MAX,
        limit: 1_000_000,
    })
    .unwrap()
}

fn stored_total(db: &dyn Storage, n: u32) -> u64 {
    (1..=n).map(|d| db.telemetry_count(d).unwrap()).sum()
}

/// The stored value of channel `name` as the record payload carries it.
fn expected(r: &TelemetryRow, name: &str) -> Option<Value> {
    let (ch, div) = match name {
        "power_w" => (0, 1),
        "energy_wh" => (1, 1),
        "water_c" => (2, 100),
        "air_c" => (3, 100),
        "relays" => (4, 1),
        _ => return None,
    };
    r.get(ch).map(|v| {
        if div == 1 {
            json!(v)
        } else {
            json!(f64::from(v) / 100.0)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_once_discovery_and_commands_with_access_control() {
    let dir = temp_dir("main");
    let n = 3;
    let (site_a, site_b) = prepare(&dir, n);
    let broker = Broker::start(&dir);
    let sub = Client::connect(broker.port, "test-sub", &["tek/#", "homeassistant/#"]).await;
    let server = tek_server::Server::start(server_config(&dir, broker.port))
        .await
        .unwrap();
    let db = server.api().storage_handle();
    let fleet = Fleet::start(fleet_options(n, server.udp_addr()))
        .await
        .unwrap();

    // Every device online and announced.
    for d in 1..=n {
        let site = if d <= 2 {
            site_a.to_string()
        } else {
            "none".into()
        };
        let avail = format!("tek/{site}/{d}/availability");
        wait_until(&avail, Duration::from_secs(30), async || {
            sub.messages("/availability")
                .iter()
                .any(|m| m.topic == avail && m.payload == b"online")
                .then_some(())
        })
        .await;
        let docs = sub.messages(&format!("/tek_{d}/energy/config"));
        let energy = docs.first().expect("energy discovery document").json();
        assert_eq!(energy["state_class"], "total_increasing", "{energy}");
        assert_eq!(energy["device_class"], "energy", "{energy}");
        assert_eq!(energy["state_topic"], format!("tek/{site}/{d}/record"));
        assert_eq!(energy["availability_topic"], avail);
        assert!(!sub
            .messages(&format!("/tek_{d}/thermostat/config"))
            .is_empty());
    }

    // Commands. The broker user is the same for every client; tek decides by the token.
    let topic = format!("tek/{site_a}/1/set");
    let ok = sub
        .command(
            &topic,
            json!({"token": ALICE, "command": "pump_on", "id": "a1"}),
        )
        .await;
    assert_eq!(ok["ok"], true, "{ok}");
    let cid = ok["command_id"].as_u64().unwrap() as u32;
    let db2 = db.clone();
    wait_until(
        "the controller's CommandAck",
        Duration::from_secs(30),
        async || {
            db2.commands(1, 10)
                .unwrap()
                .iter()
                .any(|c| c.id == cid && c.state == CommandState::Done)
                .then_some(())
        },
    )
    .await;
    let refused = [
        // bob is a member of site B only.
        (
            topic.clone(),
            json!({"token": BOB, "command": "pump_off", "id": "b1"}),
            "not found",
        ),
        (
            topic.clone(),
            json!({"token": "00".repeat(32), "command": "pump_off", "id": "x1"}),
            "unauthorized",
        ),
        // Alice's device, but the topic names another site.
        (
            format!("tek/{site_b}/1/set"),
            json!({"token": ALICE, "command": "pump_off", "id": "a2"}),
            "not found",
        ),
        (
            topic.clone(),
            json!({"token": ALICE, "command": "self_destruct", "id": "a3"}),
            "unknown command",
        ),
        (
            topic.clone(),
            json!({"token": ALICE, "setpoint": 55.0, "id": "a4"}),
            "setpoint",
        ),
    ];
    for (t, body, why) in refused {
        let r = sub.command(&t, body.clone()).await;
        assert_eq!(r["ok"], false, "{body} -> {r}");
        assert!(
            r["error"].as_str().unwrap_or("").contains(why),
            "{body} -> {r}"
        );
    }
    // Nothing but alice's command was queued.
    let cmds = db.commands(1, 10).unwrap();
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    // A setpoint: saved, pushed, applied by the controller.
    let r = sub
        .command(
            &topic,
            json!({"token": ALICE, "setpoint": 29.5, "id": "a5"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let version = r["config_version"].as_u64().unwrap() as u32;
    let db2 = db.clone();
    wait_until(
        "the configuration applied",
        Duration::from_secs(30),
        async || (db2.device(1).unwrap().config_applied >= version).then_some(()),
    )
    .await;
    let config_topic = format!("tek/{site_a}/1/config");
    wait_until(
        "the applied configuration",
        Duration::from_secs(10),
        async || {
            sub.messages("/config")
                .iter()
                .map(|m| (m.topic.clone(), m.json()))
                .any(|(t, v)| {
                    t == config_topic
                        && v["state"] == "applied"
                        && v["version"] == version
                        && v["setpoint_c"] == 29.5
                })
                .then_some(())
        },
    )
    .await;
    // A status report asked for over MQTT comes back on the status topic.
    let r = sub
        .command(
            &topic,
            json!({"token": ALICE, "command": "status", "id": "a6"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let status_topic = format!("tek/{site_a}/1/status");
    wait_until("a status report", Duration::from_secs(30), async || {
        sub.messages("/status")
            .iter()
            .map(|m| (m.topic.clone(), m.json()))
            .any(|(t, v)| t == status_topic && v["device"] == 1 && v["transport"] == "ethernet")
            .then_some(())
    })
    .await;
    // Audited as the web UI audits, under alice's name and this path.
    let audit = db
        .audit(&AuditFilter {
            sites: None,
            device_id: Some(1),
            before: None,
            limit: 100,
        })
        .unwrap();
    for action in ["command.queue", "config.save"] {
        assert!(
            audit
                .iter()
                .any(|a| a.entry.action == action && a.entry.actor == "alice@example.com (mqtt)"),
            "{action} in {audit:?}"
        );
    }
    assert_eq!(audit.len(), 3, "{audit:?}");

    // Records: a few from every controller, stop them, then every stored record arrives once,
    // with its values.
    let db2 = db.clone();
    wait_until(
        "records from every controller",
        Duration::from_secs(90),
        async || {
            (1..=n)
                .all(|d| db2.telemetry_count(d).unwrap() >= 3)
                .then_some(())
        },
    )
    .await;
    fleet.stop().await;
    let total = stored_total(&*db, n);
    assert!(total >= 3 * u64::from(n), "only {total} records stored");
    wait_until(
        "every record published",
        Duration::from_secs(30),
        async || (sub.messages("/record").len() as u64 >= total).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got: HashMap<(u64, u64, u64), (String, Value)> = HashMap::new();
    for m in sub.messages("/record") {
        let v = m.json();
        let k = (
            v["device"].as_u64().unwrap(),
            v["boot"].as_u64().unwrap(),
            v["seq"].as_u64().unwrap(),
        );
        assert!(got.insert(k, (m.topic, v)).is_none(), "record {k:?} twice");
    }
    assert_eq!(got.len() as u64, total);
    for d in 1..=n {
        for r in stored(&*db, d) {
            let k = (u64::from(d), u64::from(r.boot), u64::from(r.seq));
            let (topic, v) = got
                .get(&k)
                .unwrap_or_else(|| panic!("record {k:?} missing"));
            let site = if d <= 2 {
                site_a.to_string()
            } else {
                "none".into()
            };
            assert_eq!(*topic, format!("tek/{site}/{d}/record"));
            assert_eq!(v["time"], r.time, "{v}");
            for name in ["power_w", "energy_wh", "water_c", "air_c", "relays"] {
                assert_eq!(
                    v["values"].get(name).map(|x| x["value"].clone()),
                    expected(&r, name),
                    "{name} of {v}"
                );
            }
            assert_eq!(v["values"]["power_w"]["unit"], "W");
        }
    }
    let metrics = server.api().metrics_text().await;
    for line in [
        "tek_mqtt_dropped_total 0",
        "tek_mqtt_connected 1",
        "tek_mqtt_commands_accepted_total 3",
        "tek_mqtt_commands_refused_total 5",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    server.shutdown().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_nothing_and_publishing_resumes() {
    let dir = temp_dir("outage");
    let n = 2;
    prepare(&dir, n);
    let mut broker = Broker::start(&dir);
    let sub = Client::connect(broker.port, "test-sub", &["tek/+/+/record"]).await;
    let mut cfg = server_config(&dir, broker.port);
    cfg.mqtt.queue_capacity = 8;
    // This test speaks MQTT 5; the other one 3.1.1.
    cfg.mqtt.protocol = tek_server::mqtt::Protocol::V5;
    let server = tek_server::Server::start(cfg).await.unwrap();
    let db = server.api().storage_handle();
    let fleet = Fleet::start(fleet_options(n, server.udp_addr()))
        .await
        .unwrap();
    wait_until("records published", Duration::from_secs(30), async || {
        (sub.messages("/record").len() >= 4).then_some(())
    })
    .await;

    broker.kill();
    let before = stored_total(&*db, n);
    let db2 = db.clone();
    // Ingest goes on without the broker.
    wait_until(
        "records stored while the broker is away",
        Duration::from_secs(30),
        async || (stored_total(&*db2, n) >= before + 20).then_some(()),
    )
    .await;
    let down = server.api().metrics_text().await;
    assert!(down.contains("tek_mqtt_connected 0"), "{down}");

    broker.restart();
    let at_restart = stored_total(&*db, n);
    let seqs_at_restart: HashMap<u32, u32> = (1..=n)
        .map(|d| (d, stored(&*db, d).iter().map(|r| r.seq).max().unwrap_or(0)))
        .collect();
    wait_until(
        "a record published after the restart",
        Duration::from_secs(30),
        async || {
            sub.messages("/record")
                .iter()
                .map(|m| m.json())
                .any(|v| {
                    let d = v["device"].as_u64().unwrap_or(0) as u32;
                    seqs_at_restart
                        .get(&d)
                        .is_some_and(|s| v["seq"].as_u64().unwrap_or(0) > u64::from(*s))
                })
                .then_some(())
        },
    )
    .await;
    assert!(stored_total(&*db, n) > at_restart);
    let snap = fleet.stop().await;

    // Nothing lost in storage: every acknowledged record is there, each boot's sequence
    // numbers without a gap.
    assert!(stored_total(&*db, n) >= snap.records_acked, "{snap:?}");
    for d in 1..=n {
        let mut by_boot: HashMap<u32, Vec<u32>> = HashMap::new();
        for r in stored(&*db, d) {
            by_boot.entry(r.boot).or_default().push(r.seq);
        }
        for (boot, mut seqs) in by_boot {
            seqs.sort_unstable();
            for w in seqs.windows(2) {
                assert_eq!(w[1], w[0] + 1, "device {d} boot {boot}: gap after {}", w[0]);
            }
        }
    }
    let metrics = server.api().metrics_text().await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(value("tek_mqtt_connects_total") >= 2, "{metrics}");
    assert!(value("tek_mqtt_connection_errors_total") >= 1, "{metrics}");
    assert_eq!(value("tek_mqtt_connected"), 1, "{metrics}");
    server.shutdown().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A JSON API call with a bearer token to the in-process server.
async fn api_call(
    addr: std::net::SocketAddr,
    token: &str,
    method: hyper::Method,
    path: &str,
    body: Value,
) -> (hyper::StatusCode, Value) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let r = client.request(req).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Issue 22: alarm events on MQTT — an acknowledgement through the API is published on the
/// device's alarm topic (`api::alarms::acknowledge`) — and a rename republishes discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_acknowledgement_and_rename_are_published() {
    use hyper::{Method, StatusCode};
    let dir = temp_dir("ack");
    let (site_a, _) = prepare(&dir, 2);
    let broker = Broker::start(&dir);
    let sub = Client::connect(
        broker.port,
        "test-sub-ack",
        &["tek/+/+/alarm", "homeassistant/#"],
    )
    .await;
    let server = tek_server::Server::start_with(server_config(&dir, broker.port), None, |api| {
        tek_server::router::router(api, tek_server::http::WebOptions::default())
    })
    .await
    .unwrap();
    let http = server.http_addr();
    // Alice (a member of site A) sets a rule every pool breaks: water warmer than 10 °C.
    let (s, v) = api_call(
        http,
        ALICE,
        Method::POST,
        "/api/devices/1/alarm-rules",
        json!({"name": "Water warm", "severity": "critical",
               "condition": {"kind": "above", "channel": "water_temp_cc", "limit": 1000, "restore": 900}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rule_id = v["id"].as_i64().unwrap();
    let fleet = Fleet::start(fleet_options(1, server.udp_addr()))
        .await
        .unwrap();

    let topic = format!("tek/{site_a}/1/alarm");
    let raised = wait_until("the raised event", Duration::from_secs(60), async || {
        sub.messages("/alarm")
            .into_iter()
            .find(|m| m.topic == topic && m.json()["event"] == "raised")
            .map(|m| m.json())
    })
    .await;
    let alarm_id = raised["alarm"].as_i64().unwrap();
    assert_eq!(raised["rule"], rule_id, "{raised}");

    let (s, v) = api_call(
        http,
        ALICE,
        Method::POST,
        &format!("/api/alarms/{alarm_id}/ack"),
        Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "acknowledged", "{v}");
    let acked = wait_until(
        "the acknowledged event",
        Duration::from_secs(20),
        async || {
            sub.messages("/alarm")
                .into_iter()
                .find(|m| m.json()["event"] == "acknowledged")
        },
    )
    .await;
    assert_eq!(acked.topic, topic);
    let a = acked.json();
    let keys: std::collections::BTreeSet<&str> =
        a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["alarm", "device", "event", "message", "rule", "severity", "site", "time"]
            .into_iter()
            .collect(),
        "{a}"
    );
    assert_eq!(a["device"], 1);
    assert_eq!(a["site"], site_a);
    assert_eq!(a["alarm"], alarm_id);
    assert_eq!(a["rule"], rule_id);
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["message"], raised["message"]);
    assert!(a["message"].as_str().unwrap().contains("°C"), "{a}");
    assert!(a["time"].as_i64().unwrap() >= raised["time"].as_i64().unwrap());
    // A second acknowledgement changes nothing and publishes nothing.
    let (s, _) = api_call(
        http,
        ALICE,
        Method::POST,
        &format!("/api/alarms/{alarm_id}/ack"),
        Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // Rename: Home Assistant's device name is in every discovery document.
    let docs = |name: &str| {
        sub.messages("/config")
            .into_iter()
            .filter(|m| m.topic.starts_with("homeassistant/") && m.topic.contains("/tek_1/"))
            .filter(|m| m.json()["device"]["name"] == name)
            .count()
    };
    assert!(docs("Pool 1") >= 5, "announced under its first name");
    let (s, v) = api_call(
        http,
        ALICE,
        Method::PATCH,
        "/api/devices/1",
        json!({"name": "Kids' pool"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_until(
        "discovery with the new name",
        Duration::from_secs(20),
        async || (docs("Kids' pool") >= 5).then_some(()),
    )
    .await;
    // The Configure page's rename form (the same function) too.
    let form = |path: &str, cookie: Option<&str>, body: String| {
        let (path, cookie) = (path.to_owned(), cookie.map(str::to_owned));
        async move {
            use http_body_util::BodyExt;
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let mut req = hyper::Request::builder()
                .method(Method::POST)
                .uri(format!("http://{http}{path}"))
                .header("host", http.to_string())
                .header("content-type", "application/x-www-form-urlencoded");
            if let Some(c) = &cookie {
                req = req.header("cookie", c.as_str());
            }
            let r = client
                .request(req.body(http_body_util::Full::new(body.into())).unwrap())
                .await
                .unwrap();
            let (status, headers) = (r.status(), r.headers().clone());
            let _ = r.into_body().collect().await;
            (status, headers)
        }
    };
    let (s, h) = form(
        "/login",
        None,
        "email=alice%40example.com&password=correct+horse+battery".into(),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = h["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = {
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let req = hyper::Request::builder()
            .uri(format!("http://{http}/devices/1/configure"))
            .header("host", http.to_string())
            .header("cookie", cookie.as_str())
            .body(http_body_util::Full::default())
            .unwrap();
        let r = client.request(req).await.unwrap();
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    let csrf = page
        .split("data-csrf=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page's CSRF token")
        .to_owned();
    let (s, h) = form(
        "/devices/1/rename",
        Some(&cookie),
        format!("csrf={csrf}&name=Pool+one"),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{h:?}");
    wait_until(
        "discovery with the name from the form",
        Duration::from_secs(20),
        async || (docs("Pool one") >= 5).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acks = sub
        .messages("/alarm")
        .into_iter()
        .filter(|m| m.json()["event"] == "acknowledged")
        .count();
    assert_eq!(acks, 1, "one acknowledgement, one event");
    fleet.stop().await;
    server.shutdown().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
