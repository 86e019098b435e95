//! Tests of `task`.

use super::super::engine::NoticeKind;
use super::super::rules::{Condition, RuleSpec, Severity};
use super::*;
use crate::storage::sqlite::Sqlite;
use crate::storage::{AlarmStore, DestinationKind, DeviceStore, NewDestination, NewDevice};

fn offline(after_s: u32, lists: Vec<i64>) -> RuleSpec {
    RuleSpec {
        name: "offline".into(),
        severity: Severity::Critical,
        condition: Condition::Offline { after_s },
        raise_after_s: 0,
        clear_after_s: 0,
        lists,
        escalate_after_s: 0,
        enabled: true,
    }
}

/// Two servers on one database: A gets the device's records, B does not.
fn shared() -> (
    tempfile::TempDir,
    Arc<dyn Storage>,
    Arc<dyn Storage>,
    i64,
    i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let a = Sqlite::open_dir(dir.path()).unwrap();
    a.add_devices(
        &[NewDevice {
            id: 9,
            name: "p".into(),
            key: tek_proto::crypto::Key([9; 16]),
        }],
        0,
    )
    .unwrap();
    let d = a
        .create_destination(
            &NewDestination {
                name: "ops".into(),
                kind: DestinationKind::Email,
                target: "ops@example.com".into(),
                secret: None,
            },
            0,
        )
        .unwrap();
    let l = a.create_list("ops", 0).unwrap();
    a.set_list_members(l, &[d]).unwrap();
    let rule = a.create_rule(9, &offline(60, vec![l]), 0).unwrap();
    let b = Sqlite::open(a.path()).unwrap();
    (dir, Arc::new(a), Arc::new(b), rule, l)
}

fn engine_with(db: &dyn Storage, now: i64) -> Engine {
    let mut e = Engine::new(EngineOptions::default());
    e.set_device_rules(9, db.device_rules(9).unwrap(), &[], now);
    e
}

#[tokio::test]
async fn offline_raise_is_withdrawn_when_the_database_has_newer_records() {
    let (_dir, a, b, rule, _) = shared();
    let t0 = 1_000_000;
    // Server B never heard from device 9; its deadline fires at t0 + 60.
    let mut eng = engine_with(&*b, t0);
    let actions = eng.poll(t0 + 60);
    assert!(matches!(actions[0], Action::Raise { .. }), "{actions:?}");
    // Meanwhile server A stored a record of it at t0 + 50.
    a.insert_telemetry(&[TelemetryRow {
        device_id: 9,
        boot: 1,
        seq: 0,
        time: t0 + 50,
        channels: 1,
        values: [1; 8],
    }])
    .unwrap();
    // A's inbox folds it into the shared tables (on its own within the inbox's fold age, see
    // storage/sqlite/inbox.rs); only then can B see it.
    a.maintain(t0 + 50, 0).unwrap();
    let left = seen_elsewhere(&b, &mut eng, actions).await;
    assert!(left.is_empty(), "withdrawn: {left:?}");
    assert_eq!(eng.poll_at(), Some(t0 + 110), "re-armed from the record");
    // Nothing newer by then: raised for real.
    let actions = eng.poll(t0 + 110);
    let left = seen_elsewhere(&b, &mut eng, actions).await;
    assert!(
        left.iter()
            .any(|a| matches!(a, Action::Raise { rule_id, .. } if *rule_id == rule)),
        "{left:?}"
    );
}

#[tokio::test]
async fn only_the_server_that_records_an_event_notifies() {
    let (_dir, a, b, rule, list) = shared();
    let notice = |kind: NoticeKind| {
        Action::Notify(Notice {
            device_id: 9,
            list_id: list,
            rule_id: Some(rule),
            kind,
            severity: Severity::Critical,
            text: "offline".into(),
            at: 5,
        })
    };
    let raise = || {
        vec![
            Action::Raise {
                rule_id: rule,
                device_id: 9,
                rule_name: "offline".into(),
                severity: Severity::Critical,
                message: "no contact".into(),
                at: 5,
            },
            notice(NoticeKind::Raised),
        ]
    };
    let (tx, mut rx) = mpsc::channel(16);
    let qa = deliver::Queue::to(tx.clone(), a.clone());
    let qb = deliver::Queue::to(tx, b.clone());
    // Both servers raise the same rule (neither heard from the device): one alarm, one
    // notification.
    // ... and one MQTT event, from the server that recorded the raise.
    let from_a = execute(&a, &qa, raise()).await;
    let from_b = execute(&b, &qb, raise()).await;
    assert!(
        matches!(
            from_a.as_slice(),
            [crate::mqtt::Event::Alarm { device_id: 9, rule_id, event: crate::mqtt::AlarmEvent::Raised, severity, .. }]
                if *rule_id == rule && severity == "critical"
        ),
        "{from_a:?}"
    );
    assert!(from_b.is_empty(), "{from_b:?}");
    let job = rx.try_recv().unwrap();
    assert_eq!(job.destination.target, "ops@example.com");
    assert!(rx.try_recv().is_err(), "B sent nothing");
    // Both escalate and clear: each notified once.
    for q in [(&a, &qa), (&b, &qb)] {
        execute(
            q.0,
            q.1,
            vec![
                Action::Escalate {
                    rule_id: rule,
                    level: 1,
                },
                notice(NoticeKind::Escalated(1)),
            ],
        )
        .await;
    }
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err());
    let mut cleared = Vec::new();
    for q in [(&a, &qa), (&b, &qb)] {
        cleared.push(
            execute(
                q.0,
                q.1,
                vec![
                    Action::Clear {
                        rule_id: rule,
                        at: 9,
                    },
                    notice(NoticeKind::Cleared),
                ],
            )
            .await,
        );
    }
    assert!(
        matches!(
            cleared[0].as_slice(),
            [crate::mqtt::Event::Alarm {
                device_id: 9,
                event: crate::mqtt::AlarmEvent::Cleared,
                at: 9,
                ..
            }]
        ),
        "{cleared:?}"
    );
    assert!(cleared[1].is_empty(), "{cleared:?}");
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err());
    let log = a.notifications(None, None, 10).unwrap();
    assert_eq!(
        log.iter().map(|n| n.event.as_str()).collect::<Vec<_>>(),
        ["cleared", "escalated", "raised"]
    );
    assert_eq!(
        a.alarms(&AlarmFilter {
            devices: None,
            open_only: false,
            limit: 10
        })
        .unwrap()
        .len(),
        1
    );
}
