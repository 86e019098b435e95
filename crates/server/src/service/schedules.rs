//! A device's weekly schedule (pump and occupied/unoccupied setpoint), holidays, the
//! schedule's time zone and freeze protection, as the faces edit it: one typed
//! [`ScheduleEdit`] that the Schedules page (`web::schedules::ScheduleForm::edit`) and
//! `PUT /api/devices/{id}/schedule` (`api::schedules::ScheduleChange`) build from their input,
//! and that [`ScheduleEdit::apply`] turns into configuration items once — switching points
//! (docs/PROTOCOL.md section 7.6.1), the zone's POSIX rule ([`crate::tzdb`]), ranges, limits,
//! [`Config::validate`] and the audit detail. [`save`] stores it as a new configuration version
//! (so the spinner and the green dot follow it) and keeps the zone's name
//! ([`crate::storage::ScheduleStore`]).
//!
//! The notation both faces show and read is here too: periods `HH:MM-HH:MM` (`24:00` may end
//! one), dates `YYYY-MM-DD`.

use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::devices::save_edited;
use crate::storage::schedules::DEFAULT_ZONE;
use std::collections::BTreeSet;
use tek_proto::message::config::{
    self as pc, Freeze, Schedule, SwitchPoint, MAX_HOLIDAYS, MAX_POINTS,
};
use tek_proto::message::Config;
use tek_proto::tz::{civil_from_days, days_from_civil};

/// Day types in schedule order: key (form field and JSON), label.
pub const DAYS: [(&str, &str); 8] = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
    ("holiday", "Holiday"),
];

/// Hundredths of a degree as `°C` text with two decimals.
pub fn celsius(cc: i32) -> String {
    let sign = if cc < 0 { "-" } else { "" };
    let a = cc.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A date of the local calendar as days since 1970-01-01, from `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<u16> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d))
        .then(|| u16::try_from(day).ok())
        .flatten()
}

/// `YYYY-MM-DD` of a day number.
pub fn format_date(day: u16) -> String {
    let (y, m, d) = civil_from_days(i32::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Periods of one day from text: `HH:MM-HH:MM`, separated by commas, spaces or new lines.
pub fn parse_periods(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let time = |t: &str, end: bool| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        let v = h.checked_mul(60)? + m;
        (m < 60 && (v < 1440 || end && v == 1440)).then_some(v)
    };
    let mut out = Vec::new();
    for p in s
        .split([',', '\n', '\r', ' ', ';'])
        .filter(|p| !p.trim().is_empty())
    {
        let bad = || format!("{p:?} is not a period like 06:00-22:00");
        let (a, b) = p.split_once('-').ok_or_else(bad)?;
        let (a, b) = (
            time(a, false).ok_or_else(bad)?,
            time(b, true).ok_or_else(bad)?,
        );
        if a >= b {
            return Err(format!("{p:?} ends before it starts"));
        }
        out.push((a, b));
    }
    Ok(out)
}

/// The switching points of one day type from its pump and occupancy periods: a point wherever
/// the state changes, the day starting off and unoccupied.
pub fn day_points(day: u8, pump: &[(u16, u16)], occupied: &[(u16, u16)]) -> Vec<SwitchPoint> {
    let covered = |ps: &[(u16, u16)], m: u16| ps.iter().any(|&(a, b)| a <= m && m < b);
    let bounds: BTreeSet<u16> = pump
        .iter()
        .chain(occupied)
        .flat_map(|&(a, b)| [a, b])
        .filter(|&m| m < 1440)
        .collect();
    let mut out = Vec::new();
    let mut prev = (false, false);
    for m in bounds {
        let state = (covered(pump, m), covered(occupied, m));
        if state != prev {
            out.extend(SwitchPoint::new(day, m, state.0, state.1));
            prev = state;
        }
    }
    out
}

/// The periods of one day type in which `on` holds.
pub fn periods(points: &[SwitchPoint], day: u8, on: fn(SwitchPoint) -> bool) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = None;
    for p in points.iter().filter(|p| p.day() == day) {
        match (on(*p), start) {
            (true, None) => start = Some(p.minute()),
            (false, Some(s)) => {
                out.push((s, p.minute()));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, 1440));
    }
    out
}

/// One period as text, `HH:MM-HH:MM`.
pub fn period_text((a, b): (u16, u16)) -> String {
    format!("{}-{}", hhmm(a), hhmm(b))
}

/// The periods of one day type in which `on` holds, as text.
pub fn periods_text(points: &[SwitchPoint], day: u8, on: fn(SwitchPoint) -> bool) -> String {
    let texts: Vec<String> = periods(points, day, on)
        .into_iter()
        .map(period_text)
        .collect();
    texts.join(", ")
}

/// The zone of a device's schedule: the one stored with it, else its site's time zone, else
/// `UTC`.
pub async fn zone_of(web: &Web, id: u32) -> Result<String, WebError> {
    web.db_call(move |db| effective_zone(db, id)).await
}

/// [`zone_of`], inside a storage call.
pub fn effective_zone(db: &dyn crate::storage::Storage, id: u32) -> crate::storage::Result<String> {
    if let Some(zone) = db.schedule_zone(id)? {
        return Ok(zone);
    }
    Ok(match db.device_site(id)? {
        Some(site) => db.site(site)?.map(|s| s.time_zone),
        None => None,
    }
    .unwrap_or_else(|| DEFAULT_ZONE.to_owned()))
}

/// The periods of one day type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayPeriods {
    /// When the pump runs, minutes of the day.
    pub pump: Vec<(u16, u16)>,
    /// When the pool is occupied.
    pub occupied: Vec<(u16, u16)>,
}

/// A whole schedule as a face edits it. A `None` keeps what the configuration has: a face
/// leaves out a field it could not read (after saying why), so every other problem is still
/// found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleEdit {
    /// The controller follows the schedule; otherwise the pump runs all the time at the
    /// occupied setpoint.
    pub enabled: bool,
    /// IANA zone name; blank: the device's site's zone (or UTC).
    pub time_zone: String,
    /// Occupied setpoint (the thermostat's), 0.01 °C.
    pub occupied_cc: Option<i32>,
    /// Unoccupied setpoint, 0.01 °C.
    pub unoccupied_cc: Option<i32>,
    /// Freeze protection: air below this, 0.01 °C.
    pub freeze_limit_cc: Option<i32>,
    /// Freeze protection hysteresis, 0.01 °C.
    pub freeze_hysteresis_cc: Option<i32>,
    /// Day types in [`DAYS`] order.
    pub days: [Option<DayPeriods>; 8],
    /// Holidays, days since 1970-01-01.
    pub holidays: Option<Vec<u16>>,
}

/// The message for a temperature that is not one within `lo..=hi` (also what a face says when
/// the text is not a temperature at all).
pub fn temperature_message(label: &str, lo: i32, hi: i32) -> String {
    format!(
        "{label} must be a temperature from {} to {} °C, like 27.5.",
        celsius(lo),
        celsius(hi)
    )
}

/// The temperature settings: label, range.
pub fn temperature_ranges() -> [(&'static str, i32, i32); 4] {
    let r = |x: std::ops::RangeInclusive<i16>| (i32::from(*x.start()), i32::from(*x.end()));
    let (sp_lo, sp_hi) = r(pc::range::SETPOINT_CC);
    let (fl_lo, fl_hi) = r(pc::range::FREEZE_LIMIT_CC);
    let fh = pc::range::FREEZE_HYSTERESIS_CC;
    [
        ("Occupied setpoint", sp_lo, sp_hi),
        ("Unoccupied setpoint", sp_lo, sp_hi),
        ("Freeze protection limit", fl_lo, fl_hi),
        (
            "Freeze protection hysteresis",
            i32::from(*fh.start()),
            i32::from(*fh.end()),
        ),
    ]
}

impl ScheduleEdit {
    /// The schedule of a configuration, in the zone named `zone`.
    pub fn from_config(c: &Config, zone: &str) -> ScheduleEdit {
        let mut days: [Option<DayPeriods>; 8] = Default::default();
        for (i, day) in days.iter_mut().enumerate() {
            let points = c.schedule.as_ref().map_or(&[][..], |s| &s.points[..]);
            *day = Some(DayPeriods {
                pump: periods(points, i as u8, SwitchPoint::pump),
                occupied: periods(points, i as u8, SwitchPoint::occupied),
            });
        }
        ScheduleEdit {
            enabled: c.schedule.is_some(),
            time_zone: zone.to_owned(),
            occupied_cc: Some(i32::from(c.thermostat.setpoint_cc)),
            unoccupied_cc: Some(i32::from(
                c.schedule
                    .as_ref()
                    .map_or(c.thermostat.setpoint_cc, |s| s.unoccupied_cc),
            )),
            freeze_limit_cc: Some(i32::from(c.freeze.limit_cc)),
            freeze_hysteresis_cc: Some(i32::from(c.freeze.hysteresis_cc)),
            days,
            holidays: Some(c.holidays.iter().copied().collect()),
        }
    }

    /// [`apply`](Self::apply), after a face found `reading` problems in its input: every
    /// problem is reported together.
    pub fn apply_after(&self, c: &mut Config, reading: Vec<String>) -> Result<String, Vec<String>> {
        crate::service::config_change::after_reading(reading, self.apply(c))
    }

    /// Applies the schedule to `c`; every problem is reported, and `c` is only meaningful if
    /// there is none. Returns the audit detail.
    pub fn apply(&self, c: &mut Config) -> Result<String, Vec<String>> {
        let mut errors = Vec::new();
        let current = ScheduleEdit::from_config(c, "");
        let mut temps = [0i32; 4];
        let given = [
            self.occupied_cc.or(current.occupied_cc),
            self.unoccupied_cc.or(current.unoccupied_cc),
            self.freeze_limit_cc.or(current.freeze_limit_cc),
            self.freeze_hysteresis_cc.or(current.freeze_hysteresis_cc),
        ];
        for ((slot, value), (label, lo, hi)) in
            temps.iter_mut().zip(given).zip(temperature_ranges())
        {
            let v = value.unwrap_or_default();
            if (lo..=hi).contains(&v) {
                *slot = v;
            } else {
                errors.push(temperature_message(label, lo, hi));
            }
        }
        let [occupied, unoccupied, limit, hysteresis] = temps;
        let zone = if self.time_zone.trim().is_empty() {
            DEFAULT_ZONE
        } else {
            self.time_zone.trim()
        };
        let rule = match crate::tzdb::posix_rule(zone) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(format!("Time zone: {e}."));
                None
            }
        };
        let mut points = Vec::new();
        for (i, (day, kept)) in self.days.iter().zip(&current.days).enumerate() {
            if let Some(d) = day.as_ref().or(kept.as_ref()) {
                points.extend(day_points(i as u8, &d.pump, &d.occupied));
            }
        }
        if points.len() > MAX_POINTS {
            errors.push(format!(
                "The week has {} switching points; a controller holds at most {MAX_POINTS}. \
                 Use fewer periods (a point is wherever the pump or occupancy changes).",
                points.len()
            ));
        }
        let holidays: BTreeSet<u16> = (self.holidays.as_ref())
            .or(current.holidays.as_ref())
            .into_iter()
            .flatten()
            .copied()
            .collect();
        if holidays.len() > MAX_HOLIDAYS {
            errors.push(format!(
                "{} holidays listed; a controller holds at most {MAX_HOLIDAYS}.",
                holidays.len()
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let before = c.clone();
        c.thermostat.setpoint_cc = occupied as i16;
        c.schedule = self.enabled.then(|| Schedule {
            unoccupied_cc: unoccupied as i16,
            points: heapless::Vec::from_slice(&points).unwrap_or_default(),
        });
        c.holidays = holidays.iter().copied().collect();
        c.time_zone = match rule.as_deref() {
            // UTC is the default; leaving it out keeps the configuration as small as before.
            Some("UTC0") | None => heapless::String::new(),
            Some(r) => heapless::String::try_from(r).unwrap_or_default(),
        };
        c.freeze = Freeze {
            limit_cc: limit as i16,
            hysteresis_cc: hysteresis as u16,
        };
        if let Err(e) = c.validate() {
            return Err(vec![format!("The configuration is not valid: {e}.")]);
        }
        Ok(changes(&before, c, zone))
    }
}

/// The audit detail of a schedule change.
fn changes(before: &Config, c: &Config, zone: &str) -> String {
    let mut changes = Vec::new();
    if before.schedule != c.schedule {
        changes.push(match &c.schedule {
            Some(s) => format!(
                "schedule: {} switching points, unoccupied {} °C",
                s.points.len(),
                celsius(i32::from(s.unoccupied_cc))
            ),
            None => "schedule off".to_owned(),
        });
    }
    if before.thermostat.setpoint_cc != c.thermostat.setpoint_cc {
        changes.push(format!(
            "occupied setpoint {} °C",
            celsius(i32::from(c.thermostat.setpoint_cc))
        ));
    }
    if before.holidays != c.holidays {
        changes.push(format!("{} holidays", c.holidays.len()));
    }
    if before.time_zone != c.time_zone {
        changes.push(format!("time zone {zone}"));
    }
    if before.freeze != c.freeze {
        changes.push(format!(
            "freeze protection below {} °C",
            celsius(i32::from(c.freeze.limit_cc))
        ));
    }
    if changes.is_empty() {
        "no change".into()
    } else {
        changes.join("; ")
    }
}

/// Saves a schedule as a new configuration version of device `id` and keeps its zone's name;
/// returns the version. `reading`: the problems the face found reading its input (nothing is
/// saved if there is any); on error, every problem.
pub async fn save(
    web: &Web,
    p: &Principal,
    id: u32,
    edit: &ScheduleEdit,
    reading: Vec<String>,
) -> Result<u32, (WebError, Vec<String>)> {
    // A blank zone means the site's time zone (or UTC): the controller's rule and the stored
    // name are both taken from it.
    let mut edit = edit.clone();
    if edit.time_zone.trim().is_empty() {
        edit.time_zone = zone_of(web, id).await.map_err(|e| (e, Vec::new()))?;
    }
    let mut errors = Vec::new();
    let saved = save_edited(web, p, id, |c| {
        edit.apply_after(c, reading).map_err(|e| {
            errors = e;
            WebError::Invalid("invalid input".into())
        })
    })
    .await;
    let version = saved.map_err(|e| (e, std::mem::take(&mut errors)))?;
    let zone = edit.time_zone.trim().to_owned();
    web.db_call(move |db| db.set_schedule_zone(id, &zone))
        .await
        .map_err(|e| (e, Vec::new()))?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_points() {
        assert_eq!(
            parse_periods("06:00-22:00, 23:30-24:00").unwrap(),
            [(360, 1320), (1410, 1440)]
        );
        for bad in [
            "6-22",
            "06:00",
            "22:00-06:00",
            "06:00-24:01",
            "24:00-24:00",
            "06:60-07:00",
        ] {
            assert!(parse_periods(bad).is_err(), "{bad}");
        }
        // Pump 06:00-22:00, occupied 07:00-12:00 and 14:00-21:00.
        let p = day_points(
            0,
            &[(360, 1320)],
            &parse_periods("07:00-12:00,14:00-21:00").unwrap(),
        );
        let got: Vec<_> = p
            .iter()
            .map(|p| (p.minute(), p.pump(), p.occupied()))
            .collect();
        assert_eq!(
            got,
            [
                (360, true, false),
                (420, true, true),
                (720, true, false),
                (840, true, true),
                (1260, true, false),
                (1320, false, false),
            ]
        );
        assert_eq!(periods_text(&p, 0, SwitchPoint::pump), "06:00-22:00");
        assert_eq!(
            periods_text(&p, 0, SwitchPoint::occupied),
            "07:00-12:00, 14:00-21:00"
        );
        // Overlapping and touching periods merge; a run to midnight needs no end point.
        let p = day_points(3, &[(0, 120), (60, 180), (1380, 1440)], &[]);
        assert_eq!(p.len(), 3);
        assert_eq!(
            periods_text(&p, 3, SwitchPoint::pump),
            "00:00-03:00, 23:00-24:00"
        );
        assert_eq!(parse_date("2026-12-25"), Some(20_812));
        assert_eq!(format_date(20_812), "2026-12-25");
        for bad in ["2026-02-30", "26-12-25", "2026-1-5", "1969-12-31", "x"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_edit_round_trips_through_a_configuration() {
        let mut edit = ScheduleEdit::from_config(&Config::default(), "UTC");
        edit.enabled = true;
        edit.days[0] = Some(DayPeriods {
            pump: vec![(360, 1320)],
            occupied: vec![(420, 720)],
        });
        edit.holidays = Some(vec![20_812]);
        let mut c = Config::default();
        let detail = edit.apply(&mut c).unwrap();
        assert!(detail.contains("schedule: 4 switching points"), "{detail}");
        assert!(detail.contains("1 holidays"), "{detail}");
        let back = ScheduleEdit::from_config(&c, "UTC");
        assert_eq!(back, edit);
        assert_eq!(back.apply(&mut c.clone()).unwrap(), "no change");
        // Out of range is named by its label.
        let mut bad = edit.clone();
        bad.occupied_cc = Some(4100);
        let errs = bad.apply(&mut Config::default()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("Occupied setpoint must be a temperature"),
            "{errs:?}"
        );
        // A field left out (None) keeps what the configuration has.
        let mut keep = c.clone();
        let partial = ScheduleEdit {
            enabled: true,
            time_zone: "UTC".into(),
            freeze_limit_cc: Some(500),
            ..ScheduleEdit::default()
        };
        let detail = partial.apply(&mut keep).unwrap();
        assert_eq!(detail, "freeze protection below 5.00 °C");
        assert_eq!(keep.schedule, c.schedule);
        assert_eq!(keep.holidays, c.holidays);
    }
}
