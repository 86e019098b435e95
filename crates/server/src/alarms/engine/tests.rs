//! Tests of `engine`.

use super::super::rules::{Channel, RuleSpec, HEATER_BIT, PUMP_BIT};
use super::*;

const T0: i64 = 1_000_000;

fn rule(id: i64, condition: Condition) -> Rule {
    Rule {
        id,
        device_id: 7,
        spec: RuleSpec {
            name: format!("r{id}"),
            severity: Severity::Warning,
            condition,
            raise_after_s: 0,
            clear_after_s: 0,
            lists: vec![100],
            escalate_after_s: 0,
            enabled: true,
        },
        shelved_until: None,
        created_at: 0,
    }
}

fn water_high(id: i64) -> Rule {
    rule(
        id,
        Condition::Above {
            channel: Channel::WaterTempCc,
            limit: 3000,
            restore: 2900,
        },
    )
}

fn row(time: i64, water: i32, air: i32, power: i32, relays: i32) -> TelemetryRow {
    TelemetryRow {
        device_id: 7,
        boot: 1,
        seq: time as u32,
        time,
        channels: 0b1_1101,
        values: [power, 0, water, air, relays, 0, 0, 0],
    }
}

fn water(time: i64, w: i32) -> TelemetryRow {
    row(time, w, 1500, 1000, PUMP_BIT)
}

fn engine(rules: Vec<Rule>) -> Engine {
    let mut e = Engine::new(EngineOptions::default());
    assert!(e.set_device_rules(7, rules, &[], T0).is_empty());
    e
}

fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Raise { rule_id, .. } => format!("raise {rule_id}"),
            Action::Clear { rule_id, .. } => format!("clear {rule_id}"),
            Action::Escalate { rule_id, level } => format!("escalate {rule_id} {level}"),
            Action::Notify(n) => format!("notify {} {}", n.list_id, n.kind.label()),
        })
        .collect()
}

#[test]
fn threshold_with_hysteresis_raises_and_clears() {
    let mut e = engine(vec![water_high(1)]);
    assert!(e.telemetry(&[water(T0, 2950)], T0).is_empty());
    let a = e.telemetry(&[water(T0 + 10, 3050)], T0 + 10);
    assert_eq!(kinds(&a), ["raise 1", "notify 100 raised"]);
    match &a[0] {
        Action::Raise { message, at, .. } => {
            assert!(message.contains("30.50 °C"), "{message}");
            assert_eq!(*at, T0 + 10);
        }
        _ => unreachable!(),
    }
    // Still active, and inside the band: nothing.
    assert!(e.telemetry(&[water(T0 + 20, 3100)], T0 + 20).is_empty());
    assert!(e.telemetry(&[water(T0 + 30, 2950)], T0 + 30).is_empty());
    let a = e.telemetry(&[water(T0 + 40, 2900)], T0 + 40);
    assert_eq!(kinds(&a), ["clear 1", "notify 100 cleared"]);
    assert_eq!(e.poll_at(), None, "nothing left to time");
}

#[test]
fn hold_offs_for_raise_and_clear() {
    let mut r = water_high(1);
    r.spec.raise_after_s = 60;
    r.spec.clear_after_s = 120;
    let mut e = engine(vec![r]);
    assert!(e.telemetry(&[water(T0, 3100)], T0).is_empty());
    assert_eq!(e.poll_at(), Some(T0 + 60));
    // A dip below the restore threshold within the hold-off cancels it.
    assert!(e.telemetry(&[water(T0 + 30, 2800)], T0 + 30).is_empty());
    assert_eq!(e.poll_at(), None);
    assert!(e.poll(T0 + 100).is_empty());
    // Held long enough: raised by the deadline, without a new record.
    assert!(e.telemetry(&[water(T0 + 200, 3100)], T0 + 200).is_empty());
    assert!(e.poll(T0 + 259).is_empty());
    assert_eq!(kinds(&e.poll(T0 + 260)), ["raise 1", "notify 100 raised"]);
    // Restore must hold 120 s; coming back resets it.
    assert!(e.telemetry(&[water(T0 + 300, 2800)], T0 + 300).is_empty());
    assert!(e.telemetry(&[water(T0 + 350, 3100)], T0 + 350).is_empty());
    assert!(e.poll(T0 + 500).is_empty());
    assert!(e.telemetry(&[water(T0 + 510, 2800)], T0 + 510).is_empty());
    assert_eq!(e.poll_at(), Some(T0 + 630));
    assert_eq!(kinds(&e.poll(T0 + 630)), ["clear 1", "notify 100 cleared"]);
}

#[test]
fn escalation_until_acknowledged() {
    let mut r = water_high(1);
    r.spec.lists = vec![100, 200, 300];
    r.spec.escalate_after_s = 600;
    let mut e = engine(vec![r.clone()]);
    e.telemetry(&[water(T0, 3100)], T0);
    assert_eq!(e.poll_at(), Some(T0 + 600));
    assert!(e.poll(T0 + 599).is_empty());
    assert_eq!(
        kinds(&e.poll(T0 + 600)),
        ["escalate 1 1", "notify 200 escalated"]
    );
    e.acknowledge(1);
    assert_eq!(e.poll_at(), None, "acknowledged: no more escalation");
    assert!(e.poll(T0 + 5000).is_empty());
    // Cleared: every list notified so far hears of it.
    let a = e.telemetry(&[water(T0 + 6000, 2000)], T0 + 6000);
    assert_eq!(
        kinds(&a),
        ["clear 1", "notify 100 cleared", "notify 200 cleared"]
    );

    // Unacknowledged all the way: stops at the last list.
    let mut e = engine(vec![r]);
    e.telemetry(&[water(T0, 3100)], T0);
    assert_eq!(kinds(&e.poll(T0 + 600))[0], "escalate 1 1");
    assert_eq!(
        kinds(&e.poll(T0 + 1200)),
        ["escalate 1 2", "notify 300 escalated"]
    );
    assert_eq!(e.poll_at(), None);
}

#[test]
fn shelving_suppresses_then_raises_at_expiry() {
    let mut r = water_high(1);
    r.shelved_until = Some(T0 + 3600);
    let mut e = engine(vec![r]);
    assert!(e.telemetry(&[water(T0, 3100)], T0).is_empty());
    assert_eq!(e.poll_at(), Some(T0 + 3600));
    // Still active at expiry: raised then.
    assert_eq!(kinds(&e.poll(T0 + 3600)), ["raise 1", "notify 100 raised"]);

    // Shelved while active and unacknowledged: escalation waits for the shelf to end.
    let mut r = water_high(2);
    r.spec.lists = vec![100, 200];
    r.spec.escalate_after_s = 60;
    let mut e = engine(vec![r]);
    e.telemetry(&[water(T0, 3100)], T0);
    assert!(e.shelve(2, Some(T0 + 1000), T0 + 10).is_empty());
    assert!(e.poll(T0 + 999).is_empty());
    assert_eq!(kinds(&e.poll(T0 + 1000))[0], "escalate 2 1");
    // A clear while shelved is recorded but sends nothing.
    let mut e2 = engine(vec![water_high(3)]);
    e2.telemetry(&[water(T0, 3100)], T0);
    e2.shelve(3, Some(T0 + 100), T0);
    assert_eq!(
        kinds(&e2.telemetry(&[water(T0 + 5, 2000)], T0 + 5)),
        ["clear 3"]
    );
    // Unshelving an inactive rule: nothing.
    assert!(e2.shelve(3, None, T0 + 6).is_empty());
}

#[test]
fn flood_suppression_with_summary() {
    let mut e = Engine::new(EngineOptions {
        flood_max: 2,
        flood_window_s: 100,
    });
    let rules: Vec<Rule> = (1..=5).map(water_high).collect();
    e.set_device_rules(7, rules, &[], T0);
    // Five rules raise at once: two notifications go out, three are held.
    let a = e.telemetry(&[water(T0, 3100)], T0);
    assert_eq!(
        a.iter()
            .filter(|a| matches!(a, Action::Raise { .. }))
            .count(),
        5
    );
    let sent: Vec<_> = a
        .iter()
        .filter(|a| matches!(a, Action::Notify(_)))
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(e.poll_at(), Some(T0 + 100));
    let a = e.poll(T0 + 100);
    assert_eq!(a.len(), 1);
    match &a[0] {
        Action::Notify(n) => match &n.kind {
            NoticeKind::Summary { count, lines } => {
                assert_eq!(*count, 3);
                assert_eq!(lines.len(), 3);
                assert!(lines[0].starts_with("raised: r"), "{lines:?}");
                assert_eq!(n.rule_id, None);
            }
            k => panic!("{k:?}"),
        },
        a => panic!("{a:?}"),
    }
    // The summary counts in the new window: one more goes out, the next is held.
    let a = e.telemetry(&[water(T0 + 110, 2000)], T0 + 110);
    assert_eq!(
        a.iter().filter(|a| matches!(a, Action::Notify(_))).count(),
        1
    );
    // A new window after that one: the limit applies afresh.
    let a = e.poll(T0 + 200);
    assert!(
        matches!(
            &a[..],
            [Action::Notify(Notice {
                kind: NoticeKind::Summary { count: 4, .. },
                ..
            })]
        ),
        "{a:?}"
    );
}

#[test]
fn offline_by_deadline_and_restored_by_contact() {
    let mut r = rule(1, Condition::Offline { after_s: 300 });
    r.spec.clear_after_s = 0;
    let mut e = engine(vec![r]);
    assert_eq!(
        e.poll_at(),
        Some(T0 + 300),
        "counts from load without contact"
    );
    e.contact(7, T0 + 100);
    assert_eq!(e.poll_at(), Some(T0 + 400));
    assert!(e.poll(T0 + 399).is_empty());
    let a = e.poll(T0 + 400);
    assert_eq!(kinds(&a), ["raise 1", "notify 100 raised"]);
    e.contact(7, T0 + 500);
    assert_eq!(kinds(&e.poll(T0 + 500)), ["clear 1", "notify 100 cleared"]);
    assert_eq!(e.poll_at(), Some(T0 + 800));
}

#[test]
fn offline_raise_withdrawn_when_seen_elsewhere() {
    let mut e = engine(vec![rule(1, Condition::Offline { after_s: 300 })]);
    e.contact(7, T0);
    assert_eq!(kinds(&e.poll(T0 + 300)), ["raise 1", "notify 100 raised"]);
    // Another server stored a record at T0 + 250: not offline after all.
    e.withdraw_offline(1, T0 + 250);
    assert_eq!(e.poll_at(), Some(T0 + 550));
    assert!(
        e.poll(T0 + 549).is_empty(),
        "no clear for a withdrawn raise"
    );
    assert_eq!(kinds(&e.poll(T0 + 550))[0], "raise 1");
}

#[test]
fn config_pending_withdrawn_when_confirmed_elsewhere() {
    let mut e = engine(vec![rule(1, Condition::ConfigPending { after_s: 60 })]);
    e.config_saved(7, T0);
    assert_eq!(kinds(&e.poll(T0 + 60))[0], "raise 1");
    e.withdraw_config_pending(1);
    assert_eq!(e.poll_at(), None);
    assert!(e.config_settled(7, T0 + 70).is_empty(), "nothing to clear");
    e.config_saved(7, T0 + 100);
    assert_eq!(kinds(&e.poll(T0 + 160))[0], "raise 1");
}

/// A configured fleet settles every device once: without rules that must not leave a memo per
/// device behind (100,000 devices in `tek bench fleet`), and a later save still counts from it.
#[test]
fn settling_an_unknown_device_keeps_no_memo() {
    let mut e = Engine::new(EngineOptions::default());
    for d in 1..=1000 {
        assert!(e.config_settled(d, T0).is_empty());
    }
    assert!(e.devices.is_empty(), "{} memos kept", e.devices.len());
    let mut e = engine(vec![rule(1, Condition::ConfigPending { after_s: 60 })]);
    assert!(e.config_settled(7, T0).is_empty());
    e.config_saved(7, T0 + 10);
    assert_eq!(kinds(&e.poll(T0 + 70))[0], "raise 1");
}

#[test]
fn config_pending_gsm_and_log_drops() {
    let mut e = engine(vec![
        rule(1, Condition::ConfigPending { after_s: 60 }),
        rule(2, Condition::OnGsm),
        rule(3, Condition::LogDrops),
    ]);
    assert!(e.config_saved(7, T0).is_empty());
    // A second save does not restart the clock.
    assert!(e.config_saved(7, T0 + 30).is_empty());
    assert_eq!(kinds(&e.poll(T0 + 60))[0], "raise 1");
    assert_eq!(kinds(&e.config_settled(7, T0 + 70))[0], "clear 1");

    assert!(e.status(7, Transport::Ethernet, 5, T0 + 80).is_empty());
    let a = e.status(7, Transport::Gsm, 9, T0 + 90);
    assert_eq!(
        kinds(&a),
        [
            "raise 2",
            "notify 100 raised",
            "raise 3",
            "notify 100 raised"
        ]
    );
    let a = e.status(7, Transport::Ethernet, 9, T0 + 100);
    assert_eq!(
        kinds(&a),
        [
            "clear 2",
            "notify 100 cleared",
            "clear 3",
            "notify 100 cleared"
        ]
    );
}

#[test]
fn pool_templates() {
    let mut e = engine(vec![
        rule(
            1,
            Condition::HeaterNoRise {
                window_s: 1800,
                min_rise_cc: 20,
            },
        ),
        rule(
            2,
            Condition::PumpPower {
                min_on_w: 100,
                max_off_w: 50,
            },
        ),
        rule(
            3,
            Condition::FreezeRisk {
                air_below_cc: 300,
                deadband_cc: 100,
            },
        ),
    ]);
    let heat = PUMP_BIT | HEATER_BIT;
    // Heater on, water rising 0.5 °C per half hour: fine.
    assert!(e
        .telemetry(&[row(T0, 2500, 1500, 3000, heat)], T0)
        .is_empty());
    let a = e.telemetry(&[row(T0 + 1800, 2550, 1500, 3000, heat)], T0 + 1800);
    assert!(a.is_empty(), "{a:?}");
    // The next half hour only 0.1 °C: raised.
    let a = e.telemetry(&[row(T0 + 3600, 2560, 1500, 3000, heat)], T0 + 3600);
    assert_eq!(kinds(&a)[0], "raise 1");
    // Heater off restores.
    let a = e.telemetry(&[row(T0 + 3700, 2560, 1500, 1000, PUMP_BIT)], T0 + 3700);
    assert_eq!(kinds(&a)[0], "clear 1");
    // Pump on without power.
    let a = e.telemetry(&[row(T0 + 3800, 2560, 1500, 20, PUMP_BIT)], T0 + 3800);
    assert_eq!(kinds(&a)[0], "raise 2");
    // Pump off and no power: agree again.
    let a = e.telemetry(&[row(T0 + 3900, 2560, 1500, 20, 0)], T0 + 3900);
    assert_eq!(kinds(&a)[0], "clear 2");
    // Power with the pump off.
    let a = e.telemetry(&[row(T0 + 4000, 2560, 1500, 900, 0)], T0 + 4000);
    assert_eq!(kinds(&a)[0], "raise 2");
    // Freezing air with the pump off; restored by the pump running (power fits too).
    let a = e.telemetry(&[row(T0 + 4100, 2560, 250, 10, 0)], T0 + 4100);
    assert_eq!(
        kinds(&a),
        [
            "clear 2",
            "notify 100 cleared",
            "raise 3",
            "notify 100 raised"
        ]
    );
    // Warmer but inside the deadband: still active.
    assert!(e
        .telemetry(&[row(T0 + 4200, 2560, 350, 10, 0)], T0 + 4200)
        .is_empty());
    let a = e.telemetry(&[row(T0 + 4300, 2560, 350, 900, PUMP_BIT)], T0 + 4300);
    assert_eq!(kinds(&a), ["clear 3", "notify 100 cleared"]);
}

#[test]
fn restart_keeps_open_alarms_and_old_records_are_ignored() {
    let mut r = water_high(1);
    r.spec.lists = vec![100, 200];
    r.spec.escalate_after_s = 60;
    let mut e = Engine::new(EngineOptions::default());
    let open = [OpenAlarm {
        rule_id: 1,
        raised_at: T0 - 30,
        acked: false,
        level: 0,
    }];
    assert!(e.set_device_rules(7, vec![r], &open, T0).is_empty());
    // Still active: no second raise; escalation continues from the stored raise time.
    assert!(e.telemetry(&[water(T0 + 1, 3100)], T0 + 1).is_empty());
    assert_eq!(e.poll_at(), Some(T0 + 30));
    assert_eq!(kinds(&e.poll(T0 + 30))[0], "escalate 1 1");
    // A retransmitted older record changes nothing.
    assert!(e.telemetry(&[water(T0 - 100, 2000)], T0 + 40).is_empty());
    // Disabled rules do nothing; rules of other devices are not taken.
    let mut d = water_high(2);
    d.spec.enabled = false;
    let mut other = water_high(3);
    other.device_id = 8;
    let mut e = engine(vec![d, other]);
    assert_eq!(e.rule_count(), 1);
    assert!(e.telemetry(&[water(T0, 3100)], T0).is_empty());
}

fn wide(time: i64, values: &[Option<i32>]) -> WideRow {
    WideRow {
        device_id: 7,
        boot: 1,
        seq: time as u32,
        time,
        config_version: Some(2),
        values: crate::storage::WideValues::from_options(values),
    }
}

/// Thresholds on any channel of a device's own map: raised and cleared with hysteresis on wide
/// records; a record without a value for the channel changes nothing (no value is not 0); a
/// pool rule of the same device does not look at wide records.
#[test]
fn thresholds_on_any_channel() {
    let mut e = engine(vec![
        rule(
            1,
            Condition::ChannelAbove {
                index: 9,
                limit: 2_530,
                restore: 2_500,
            },
        ),
        rule(
            2,
            Condition::ChannelBelow {
                index: 9,
                limit: 2_000,
                restore: 2_100,
            },
        ),
        water_high(3),
    ]);
    let mut v = vec![None; 10];
    v[9] = Some(2_314);
    assert!(e.wide(&[wide(T0, &v)], T0).is_empty());
    v[9] = Some(2_540);
    let a = e.wide(&[wide(T0 + 10, &v)], T0 + 10);
    assert_eq!(kinds(&a), ["raise 1", "notify 100 raised"]);
    match &a[0] {
        Action::Raise { message, .. } => {
            assert!(message.contains("channel #9 at 2540"), "{message}")
        }
        _ => unreachable!(),
    }
    // No value: nothing changes (never read as 0, which would raise rule 2).
    assert!(e.wide(&[wide(T0 + 20, &[Some(1)])], T0 + 20).is_empty());
    // A retransmitted older record is not evaluated again.
    v[9] = Some(100);
    assert!(e.wide(&[wide(T0 + 5, &v)], T0 + 30).is_empty());
    v[9] = Some(2_510);
    assert!(
        e.wide(&[wide(T0 + 40, &v)], T0 + 40).is_empty(),
        "inside the band"
    );
    v[9] = Some(2_500);
    assert_eq!(
        kinds(&e.wide(&[wide(T0 + 50, &v)], T0 + 50)),
        ["clear 1", "notify 100 cleared"]
    );
    v[9] = Some(1_999);
    assert_eq!(
        kinds(&e.wide(&[wide(T0 + 60, &v)], T0 + 60)),
        ["raise 2", "notify 100 raised"]
    );
    // The pool rule reads only Telemetry 0x01 records, as before.
    assert_eq!(
        kinds(&e.telemetry(&[water(T0 + 70, 3050)], T0 + 70)),
        ["raise 3", "notify 100 raised"]
    );
}

/// A sensor fault: the channel's failed-sample counter grew since the previous ChannelFaults
/// report; the first report is a baseline; a smaller counter (a restart) counts whole.
#[test]
fn sensor_fault_from_the_per_channel_errors() {
    use tek_proto::channel::faults::Fault;
    let mut e = engine(vec![rule(1, Condition::SensorFault { index: 3 })]);
    let report = |errors: u16| {
        vec![
            FaultEntry {
                channel: 1,
                errors: 50,
                last: Fault::Crc,
            },
            FaultEntry {
                channel: 3,
                errors,
                last: Fault::Timeout,
            },
        ]
    };
    // The first report is a baseline, however many errors it names.
    assert!(e.channel_faults(7, &report(4), T0).is_empty());
    assert!(e.channel_faults(7, &report(4), T0 + 60).is_empty());
    let a = e.channel_faults(7, &report(6), T0 + 120);
    assert_eq!(kinds(&a), ["raise 1", "notify 100 raised"]);
    match &a[0] {
        Action::Raise { message, .. } => {
            assert!(
                message.contains("Modbus timeout: 2 failed samples"),
                "{message}"
            )
        }
        _ => unreachable!(),
    }
    assert!(
        e.channel_faults(7, &report(9), T0 + 180).is_empty(),
        "still failing"
    );
    assert_eq!(
        kinds(&e.channel_faults(7, &report(9), T0 + 240)),
        ["clear 1", "notify 100 cleared"]
    );
    // Channel 3 gone from the report (a restart cleared its counter): no new failures; then
    // it fails again, counted from nothing.
    assert!(e.channel_faults(7, &report(0)[..1], T0 + 300).is_empty());
    assert_eq!(
        kinds(&e.channel_faults(7, &report(1), T0 + 360)),
        ["raise 1", "notify 100 raised"]
    );
}

#[test]
fn channel_conditions_are_validated() {
    let spec = |condition| RuleSpec {
        name: "c".into(),
        severity: Severity::Info,
        condition,
        raise_after_s: 0,
        clear_after_s: 0,
        lists: vec![],
        escalate_after_s: 0,
        enabled: true,
    };
    assert!(spec(Condition::SensorFault { index: 127 })
        .validate()
        .is_ok());
    assert!(spec(Condition::SensorFault { index: 128 })
        .validate()
        .unwrap_err()
        .starts_with("index:"));
    let above = Condition::ChannelAbove {
        index: 0,
        limit: 10,
        restore: 11,
    };
    assert!(spec(above).validate().unwrap_err().contains("restore"));
    let below = Condition::ChannelBelow {
        index: 0,
        limit: 10,
        restore: 9,
    };
    assert!(spec(below).validate().unwrap_err().contains("restore"));
    // The JSON form the API and the database use.
    let json = serde_json::to_string(&Condition::ChannelAbove {
        index: 4,
        limit: 2_530,
        restore: 2_500,
    })
    .unwrap();
    assert_eq!(
        json,
        r#"{"kind":"channel_above","index":4,"limit":2530,"restore":2500}"#
    );
}
