//! Tests of `alarms_page`.

use super::*;
use crate::web::alarms_admin::members_of;

fn form(kind: &str) -> RuleForm {
    RuleForm {
        csrf: String::new(),
        kind: kind.into(),
        template: Some("freeze_risk".into()),
        name: Some("Hot".into()),
        channel: Some("water_temp_cc".into()),
        op: Some("above".into()),
        limit: Some("31.5".into()),
        restore: Some("31".into()),
        severity: Some("critical".into()),
        raise_after_s: Some("60".into()),
        clear_after_s: None,
        list1: Some("3".into()),
        list2: Some("4".into()),
        escalate_min: Some("15".into()),
        json: Some(
            r#"{"name":"Off","severity":"critical","condition":{"kind":"offline","after_s":120}}"#
                .into(),
        ),
    }
}

#[test]
fn rule_forms() {
    let s = spec_from(&form("threshold"), None).unwrap();
    assert_eq!(
        s.condition,
        Condition::Above {
            channel: Channel::WaterTempCc,
            limit: 3150,
            restore: 3100
        }
    );
    assert_eq!((s.raise_after_s, s.escalate_after_s), (60, 900));
    assert_eq!(s.lists, vec![3, 4]);
    s.validate().unwrap();
    let t = spec_from(&form("template"), None).unwrap();
    assert!(matches!(t.condition, Condition::FreezeRisk { .. }));
    let mut bad = form("threshold");
    bad.limit = Some("warm".into());
    assert!(spec_from(&bad, None).is_err());
    assert!(spec_from(&form("nope"), None).is_err());
    let j = spec_from(&form("json"), None).unwrap();
    assert_eq!(j.condition, Condition::Offline { after_s: 120 });
    let mut bad = form("json");
    bad.json = Some("{".into());
    assert!(spec_from(&bad, None).is_err());
}

/// A threshold on a device's own channel: limits in the channel's unit, stored as logged
/// integers; a channel the map does not have, or no map, is refused.
#[test]
fn threshold_on_a_devices_own_channel() {
    use crate::storage::channels::builtin;
    let meter = builtin::sdm120();
    let entry = DeviceChannels {
        device_id: 1,
        version: 1,
        template_id: None,
        map: meter.map(),
        roles: meter.roles_value(),
        saved_at: 0,
        channels: crate::storage::channels::validate(&crate::storage::ChannelSet {
            map: meter.map(),
            roles: meter.roles_value(),
            channels: meter.labels(),
        })
        .unwrap(),
    };
    let mut f = form("threshold");
    f.channel = Some("ch:0".into());
    f.limit = Some("253".into());
    f.restore = Some("250.04".into());
    // Voltage is logged in 0.1 V.
    assert_eq!(
        spec_from(&f, Some(&entry)).unwrap().condition,
        Condition::ChannelAbove {
            index: 0,
            limit: 2530,
            restore: 2500
        }
    );
    f.op = Some("below".into());
    f.restore = Some("255".into());
    let s = spec_from(&f, Some(&entry)).unwrap();
    assert!(matches!(
        s.condition,
        Condition::ChannelBelow {
            index: 0,
            limit: 2530,
            restore: 2550
        }
    ));
    s.validate().unwrap();
    assert!(spec_from(&f, None).is_err(), "no map in effect");
    f.channel = Some("ch:99".into());
    assert!(
        spec_from(&f, Some(&entry)).is_err(),
        "not a channel of the map"
    );
    f.channel = Some("ch:x".into());
    assert!(spec_from(&f, Some(&entry)).is_err());
}

#[test]
fn shelf_ends() {
    let now = 1_780_000_000;
    assert_eq!(al::shelf_end(Some(0), None, now).unwrap(), None);
    assert_eq!(al::shelf_end(None, None, now).unwrap(), None);
    assert_eq!(
        al::shelf_end(Some(30), None, now).unwrap(),
        Some(now + 1800)
    );
    assert!(al::shelf_end(Some(al::MAX_SHELVE_MINUTES + 1), None, now).is_err());
    let t = now + 7200;
    assert_eq!(
        al::shelf_end(None, Some(&t.to_string()), now).unwrap(),
        Some(t)
    );
    let text = timefmt::datetime(t);
    assert_eq!(al::shelf_end(None, Some(&text), now).unwrap(), Some(t));
    assert!(
        al::shelf_end(None, Some("2001-01-01 00:00"), now).is_err(),
        "past"
    );
    assert!(al::shelf_end(None, Some("soon"), now).is_err());
    assert!(al::shelf_end(Some(5), Some(&text), now).is_err(), "both");
}

#[test]
fn members_are_read_from_repeated_fields() {
    assert_eq!(
        members_of(b"csrf=x&name=a&member=3&member=5").unwrap(),
        vec![3, 5]
    );
    assert!(members_of(b"member=x").is_err());
}
