//! Tests of `schedules`.

use super::*;

fn have_tzdata() -> bool {
    std::path::Path::new("/usr/share/zoneinfo/Europe/Paris").is_file()
}

#[test]
fn form_round_trip() {
    if !have_tzdata() {
        return;
    }
    let mut f = ScheduleForm::from_config(&Config::default(), "UTC");
    assert_eq!(f.enabled, None);
    f.enabled = Some("on".into());
    f.time_zone = "Europe/Paris".into();
    f.occupied = "28".into();
    f.unoccupied = "24.5".into();
    f.pump_mon = "06:00-22:00".into();
    f.occ_mon = "07:00-21:00".into();
    f.pump_holiday = "10:00-18:00".into();
    f.holidays = "2026-12-25\n2026-12-24".into();
    f.freeze_limit = "2".into();
    f.freeze_hysteresis = "1.5".into();
    let mut c = Config::default();
    let detail = apply_form(&mut c, &f).unwrap();
    assert!(detail.contains("schedule: 6 switching points"), "{detail}");
    c.validate().unwrap();
    assert_eq!(c.time_zone.as_str(), "CET-1CEST,M3.5.0,M10.5.0/3");
    assert_eq!(c.thermostat.setpoint_cc, 2800);
    assert_eq!(c.schedule.as_ref().unwrap().unoccupied_cc, 2450);
    assert_eq!(c.holidays.as_slice(), [20_811, 20_812]);
    assert_eq!(c.freeze.limit_cc, 200);
    let back = ScheduleForm::from_config(&c, "Europe/Paris");
    assert_eq!(back.pump_mon, "06:00-22:00");
    assert_eq!(back.occ_mon, "07:00-21:00");
    assert_eq!(back.pump_holiday, "10:00-18:00");
    assert_eq!(back.holidays, "2026-12-24\n2026-12-25");
    assert_eq!(
        (back.occupied.as_str(), back.unoccupied.as_str()),
        ("28.00", "24.50")
    );
    // Saving the shown form again changes nothing.
    let mut again = c.clone();
    assert_eq!(apply_form(&mut again, &back).unwrap(), "no change");
    assert_eq!(again, c);
    // UTC leaves the item out; turning the schedule off keeps the rest.
    let mut off = back.clone();
    off.enabled = None;
    off.time_zone = "UTC".into();
    apply_form(&mut again, &off).unwrap();
    assert_eq!(again.schedule, None);
    assert!(again.time_zone.is_empty());
    assert_eq!(again.holidays.len(), 2);
}

#[test]
fn invalid_input_is_explained() {
    if !have_tzdata() {
        return;
    }
    type Edit<'a> = &'a dyn Fn(&mut ScheduleForm);
    let cases: &[(&str, Edit<'_>, &str)] = &[
        (
            "zone",
            &|f| f.time_zone = "Mars/Olympus".into(),
            "unknown time zone",
        ),
        (
            "zone path",
            &|f| f.time_zone = "../../etc/passwd".into(),
            "not a time zone name",
        ),
        (
            "period",
            &|f| f.pump_tue = "22:00-06:00".into(),
            "Tuesday, pump",
        ),
        (
            "occ",
            &|f| f.occ_holiday = "noon".into(),
            "Holiday, occupied",
        ),
        (
            "setpoint",
            &|f| f.unoccupied = "45".into(),
            "Unoccupied setpoint",
        ),
        (
            "freeze",
            &|f| f.freeze_limit = "12".into(),
            "Freeze protection limit",
        ),
        ("hyst", &|f| f.freeze_hysteresis = "0".into(), "hysteresis"),
        (
            "date",
            &|f| f.holidays = "2026-13-01".into(),
            "Holiday \"2026-13-01\"",
        ),
        (
            "too many holidays",
            &|f| {
                f.holidays = (1..=17)
                    .map(|d| format!("2027-01-{d:02}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
            "at most 16",
        ),
        (
            "too many points",
            &|f| {
                for i in 0..8 {
                    *f.day_mut(i).0 = "01:00-02:00,03:00-04:00,05:00-06:00".into();
                }
            },
            "48 switching points",
        ),
    ];
    for (name, edit, want) in cases {
        let mut f = ScheduleForm::from_config(&Config::default(), "UTC");
        f.enabled = Some("on".into());
        edit(&mut f);
        let mut c = Config::default();
        let errs = apply_form(&mut c, &f).expect_err(name);
        assert!(errs.iter().any(|e| e.contains(want)), "{name}: {errs:?}");
    }
}
