//! The alarm task in a running server, driven by a controller stand-in over UDP: escalation to
//! the next list when nobody acknowledges, flood suppression with a summary, shelving that
//! raises when the shelf ends, and an offline alarm from its deadline. Notifications go to
//! webhook receivers on 127.0.0.1 (one path per list).

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tek_server::alarms::rules::{Channel, Condition, RuleSpec, Severity};
use tek_server::alarms::task::Event;
use tek_server::storage::{AlarmFilter, DestinationKind, NewDestination, Storage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous: the alarm clock counts whole seconds, and CI machines are loaded.
const ALARM_WAIT: Duration = Duration::from_secs(20);

/// Records `(path, JSON body)` of every POST and answers 200.
async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<(String, Value)>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < i + 4 + len {
                        continue;
                    }
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let body = serde_json::from_slice(&buf[i + 4..i + 4 + len]).unwrap();
                    store.lock().unwrap().push((path, body));
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (addr, got)
}

/// A list with one webhook destination posting to `http://addr/{name}`.
fn list(db: &dyn Storage, addr: SocketAddr, name: &str) -> i64 {
    let d = db
        .create_destination(
            &NewDestination {
                name: name.into(),
                kind: DestinationKind::Webhook,
                target: format!("http://{addr}/{name}"),
                secret: Some("0123456789abcdef".into()),
            },
            0,
        )
        .unwrap();
    let l = db.create_list(name, 0).unwrap();
    db.set_list_members(l, &[d]).unwrap();
    l
}

fn water_above(limit: i32, lists: Vec<i64>) -> RuleSpec {
    RuleSpec {
        name: format!("water above {limit}"),
        severity: Severity::Warning,
        condition: Condition::Above {
            channel: Channel::WaterTempCc,
            limit,
            restore: limit - 100,
        },
        raise_after_s: 0,
        clear_after_s: 0,
        lists,
        escalate_after_s: 0,
        enabled: true,
    }
}

fn events(got: &Mutex<Vec<(String, Value)>>, path: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, v)| v.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_flood_suppression_shelving_and_offline() {
    let (addr, got) = receiver().await;
    let h = start(|c| {
        c.alarms.flood_max = 2;
        c.alarms.flood_window_s = 2;
        c.alarms.retry_initial_ms = 100;
    })
    .await;
    let db = h.storage();
    let api = h.server.api();
    let (l1, l2, l3, l4, l5) = (
        list(&*db, addr, "l1"),
        list(&*db, addr, "l2"),
        list(&*db, addr, "l3"),
        list(&*db, addr, "l4"),
        list(&*db, addr, "l5"),
    );
    // The stand-in's water is 26.50 °C.
    let mut d1 = h.device(1).await;
    let mut d2 = h.device(2).await;
    let mut d3 = h.device(3).await;
    let mut d4 = h.device(4).await;
    // Device 1: escalates from l1 to l2 after 1 s without an acknowledgement.
    let mut esc = water_above(2000, vec![l1, l2]);
    esc.escalate_after_s = 1;
    let r_esc = db.create_rule(1, &esc, 0).unwrap();
    // Device 2: five rules at once on l3, flood limit 2 per 2 s.
    for limit in [2000, 2100, 2200, 2300, 2400] {
        db.create_rule(2, &water_above(limit, vec![l3]), 0).unwrap();
    }
    // Device 3: shelved for 3 s.
    let r_shelf = db.create_rule(3, &water_above(2000, vec![l4]), 0).unwrap();
    // Device 4: offline after 2 s.
    let mut off = water_above(0, vec![l5]);
    off.condition = Condition::Offline { after_s: 2 };
    let r_off = db.create_rule(4, &off, 0).unwrap();
    for id in 1..=4 {
        api.alarm_event(Event::RulesChanged { device_id: id });
    }
    let shelf_end = tek_server::clock::unix_now() + 3;
    db.shelve_rule(r_shelf, Some(shelf_end)).unwrap();
    api.alarm_event(Event::Shelved {
        rule_id: r_shelf,
        until: Some(shelf_end),
    });

    for d in [&mut d1, &mut d2, &mut d3, &mut d4] {
        d.handshake().await;
        d.send_telemetry(0, 2).await;
    }

    // Escalation: raised to l1, then escalated to l2; the alarm records level 1. The two
    // deliveries run on separate workers, so the escalation may be received before the raise:
    // wait for both.
    assert!(
        eventually(ALARM_WAIT, async || {
            !events(&got, "/l2").is_empty() && !events(&got, "/l1").is_empty()
        })
        .await,
        "{:?}",
        got.lock().unwrap()
    );
    let raised = events(&got, "/l1");
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0]["event"], "raised");
    let escalated = &events(&got, "/l2")[0];
    assert_eq!(escalated["event"], "escalated");
    assert_eq!(escalated["level"], 1);
    assert_eq!(escalated["alarm_id"], raised[0]["alarm_id"]);
    let open = db
        .alarms(&AlarmFilter {
            devices: Some(vec![1]),
            open_only: true,
            limit: 10,
        })
        .unwrap();
    assert_eq!((open[0].rule_id, open[0].level), (r_esc, 1));

    // Flood: two notifications, then one summary of the three held back.
    assert!(
        eventually(ALARM_WAIT, async || events(&got, "/l3")
            .iter()
            .any(|e| e["event"] == "summary"))
        .await
    );
    let l3_events = events(&got, "/l3");
    assert_eq!(l3_events.len(), 3, "{l3_events:?}");
    assert_eq!(
        l3_events.iter().filter(|e| e["event"] == "raised").count(),
        2
    );
    let summary = l3_events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(summary["suppressed"], 3);
    assert_eq!(summary["lines"].as_array().unwrap().len(), 3);
    // All five alarms are recorded all the same.
    let d2_alarms = db
        .alarms(&AlarmFilter {
            devices: Some(vec![2]),
            open_only: true,
            limit: 10,
        })
        .unwrap();
    assert_eq!(d2_alarms.len(), 5);

    // Shelving: nothing while shelved; raised when the shelf ended.
    assert!(eventually(ALARM_WAIT, async || !events(&got, "/l4").is_empty()).await);
    let a = &db
        .alarms(&AlarmFilter {
            devices: Some(vec![3]),
            open_only: true,
            limit: 10,
        })
        .unwrap()[0];
    assert!(a.raised_at >= shelf_end, "{} < {shelf_end}", a.raised_at);

    // Offline: device 4 went quiet; raised from its deadline, not from any input.
    assert!(eventually(ALARM_WAIT, async || !events(&got, "/l5").is_empty()).await);
    let off_alarm = &db
        .alarms(&AlarmFilter {
            devices: Some(vec![4]),
            open_only: true,
            limit: 10,
        })
        .unwrap()[0];
    assert_eq!(off_alarm.rule_id, r_off);
    assert!(
        off_alarm.message.contains("no contact"),
        "{}",
        off_alarm.message
    );

    // Every notification is logged as sent.
    let log = db.notifications(None, None, 100).unwrap();
    assert!(log.len() >= 7, "{log:?}");
    assert!(
        eventually(ALARM_WAIT, async || db
            .notifications(None, None, 100)
            .unwrap()
            .iter()
            .all(|n| n.state == tek_server::storage::DeliveryState::Sent))
        .await
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_configuration_alarm_counts_from_the_save_across_a_restart() {
    let h = start(|_| {}).await;
    let db = h.storage();
    provision(&*db, 7);
    h.server
        .api()
        .save_config(7, tek_proto::message::Config::default())
        .await
        .unwrap();
    let mut rule = water_above(0, Vec::new());
    rule.condition = Condition::ConfigPending { after_s: 2 };
    let saved = tek_server::clock::unix_now();
    let r = db.create_rule(7, &rule, 0).unwrap();
    drop(db);
    let Harness { dir, server } = h;
    server.shutdown().await;

    // A new server on the same database: the rule and the pending configuration are loaded.
    let cfg = tek_server::Config::for_tests(dir.path());
    let server = tek_server::Server::start(cfg).await.unwrap();
    let db = server.api().storage_handle();
    let open = || {
        db.alarms(&AlarmFilter {
            devices: Some(vec![7]),
            open_only: true,
            limit: 10,
        })
        .unwrap()
    };
    assert!(eventually(ALARM_WAIT, async || !open().is_empty()).await);
    let a = &open()[0];
    assert_eq!(a.rule_id, r);
    assert!(
        a.raised_at >= saved + 2 && a.raised_at <= saved + 10,
        "{a:?}"
    );
    server.shutdown().await;
}

/// Issue 18 point 4, through the running server: a threshold on a channel of a device's own map
/// raised by its wide telemetry over UDP, and a sensor fault raised by the growth of a channel's
/// failed-sample counter between two ChannelFaults reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_on_any_channel_and_sensor_faults() {
    use tek_proto::channel::code;
    use tek_proto::channel::faults::{ChannelFaults, Fault, FaultEntry};
    use tek_proto::channel::wide::{ChannelSet, WideWriter};
    let (addr, got) = receiver().await;
    let h = start(|_| {}).await;
    let db = h.storage();
    let api = h.server.api();
    let l = list(&*db, addr, "channels");
    let mut d = h.device(1).await;
    let mut above = water_above(0, vec![l]);
    above.name = "voltage high".into();
    above.condition = Condition::ChannelAbove {
        index: 2,
        limit: 2_530,
        restore: 2_500,
    };
    let r_above = db.create_rule(1, &above, 0).unwrap();
    let mut fault = water_above(0, vec![l]);
    fault.name = "probe fault".into();
    fault.condition = Condition::SensorFault { index: 3 };
    let r_fault = db.create_rule(1, &fault, 0).unwrap();
    api.alarm_event(Event::RulesChanged { device_id: 1 });
    d.handshake().await;
    // Two records of four channels: channel 2 at 231.4 V, then 254.0 V; channel 3 without value.
    let set = (0..4).fold(ChannelSet(0), |s, c| s.with(c));
    let mut buf = vec![0u8; 256];
    buf[0] = code::WIDE_TELEMETRY;
    let mut w = WideWriter::new(&mut buf[1..], 0, set, 1000).unwrap();
    assert!(w.push(940, &[Some(1), Some(2), Some(2_314), None]));
    assert!(w.push(1000, &[Some(1), Some(2), Some(2_540), None]));
    let n = 1 + w.len();
    buf.truncate(n);
    let bytes = d.seal_bytes(&buf);
    d.send_raw(&bytes).await;
    let faults = |errors: u16| {
        let entries = [FaultEntry {
            channel: 3,
            errors,
            last: Fault::Timeout,
        }];
        let mut body = vec![code::CHANNEL_FAULTS; 1 + ChannelFaults::buffer_len(1)];
        ChannelFaults::emit(&entries, &mut body[1..]).unwrap();
        body
    };
    // The first report is a baseline; the second shows two more failed samples.
    let bytes = d.seal_bytes(&faults(5));
    d.send_raw(&bytes).await;
    assert!(
        eventually(ALARM_WAIT, async || db.channel_faults(1).unwrap().len()
            == 1)
        .await
    );
    let bytes = d.seal_bytes(&faults(7));
    d.send_raw(&bytes).await;

    assert!(
        eventually(ALARM_WAIT, async || events(&got, "/channels").len() >= 2).await,
        "{:?}",
        got.lock().unwrap()
    );
    let open = db
        .alarms(&AlarmFilter {
            devices: Some(vec![1]),
            open_only: true,
            limit: 10,
        })
        .unwrap();
    let mut rules: Vec<i64> = open.iter().map(|a| a.rule_id).collect();
    rules.sort_unstable();
    assert_eq!(rules, {
        let mut want = vec![r_above, r_fault];
        want.sort_unstable();
        want
    });
    let messages: Vec<String> = events(&got, "/channels")
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("channel #2 at 2540")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Modbus timeout: 2 failed samples")),
        "{messages:?}"
    );
    h.server.shutdown().await;
}
