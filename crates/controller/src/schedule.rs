//! The weekly schedule: whether the pump runs and the pool is occupied, at an instant.
//!
//! The schedule, the holidays and the time-zone rule come with the configuration (items 12..=14,
//! docs/PROTOCOL.md section 7.6.1), so the controller follows them offline as well. The state is
//! a pure function of the configuration and the time — no memory of past switching — so a
//! reboot, a clock correction or a missed evaluation cannot leave a relay in a stale state:
//!
//! * the local time is [`local_time::schedule_clock`] (held in the repeated hour when the clock
//!   goes back, so no switching time happens twice; jumping when it goes forward, so one inside
//!   the skipped hour happens once, at the change);
//! * the day type is the holiday type if the local date is a holiday, else the weekday;
//! * the state is that of the last point of that day type at or before the local minute, or
//!   pump off and unoccupied when there is none.
//!
//! Without a schedule, or before a server has told the time, the pump runs and the pool is
//! occupied (the behaviour before schedules existed, and the safe one for a heated pool).

use crate::local_time::{self, Local};
use tek_proto::message::config::{Config, HOLIDAY};

/// What the schedule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// The pump should run.
    pub pump: bool,
    /// The pool is occupied: the thermostat uses the occupied setpoint.
    pub occupied: bool,
}

/// Pump on, occupied: no schedule, or no time yet.
pub const UNSCHEDULED: Demand = Demand {
    pump: true,
    occupied: true,
};

/// The day type of a local date: 0 Monday ..= 6 Sunday, [`HOLIDAY`] if listed.
pub fn day_type(cfg: &Config, local: &Local) -> u8 {
    let day = local.day();
    let holiday = u16::try_from(day).is_ok_and(|d| cfg.holidays.binary_search(&d).is_ok());
    if holiday {
        HOLIDAY
    } else {
        local.weekday_monday0()
    }
}

/// What the schedule of `cfg` asks for at `unix` (UTC seconds; `None`: time not known yet).
pub fn demand(cfg: &Config, unix: Option<i64>) -> Demand {
    let (Some(schedule), Some(t)) = (&cfg.schedule, unix) else {
        return UNSCHEDULED;
    };
    let local = local_time::schedule_clock(&cfg.time_zone_rule(), t);
    let day = day_type(cfg, &local);
    let minute = local.minute_of_day();
    let mut state = Demand {
        pump: false,
        occupied: false,
    };
    for p in schedule.points.iter() {
        if p.day() == day && p.minute() <= minute {
            state = Demand {
                pump: p.pump(),
                occupied: p.occupied(),
            };
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::{String, Vec};
    use tek_proto::message::config::{Schedule, SwitchPoint};
    use tek_proto::tz::days_from_civil;

    fn utc(y: i32, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        i64::from(days_from_civil(y, mo, d)) * 86_400 + h * 3600 + mi * 60
    }

    /// A configuration with these points in Central European time.
    pub(crate) fn config(points: &[(u8, u16, bool, bool)], holidays: &[u16]) -> Config {
        let mut v = Vec::new();
        for &(d, m, pump, occ) in points {
            v.push(SwitchPoint::new(d, m, pump, occ).unwrap()).unwrap();
        }
        let cfg = Config {
            schedule: Some(Schedule {
                unoccupied_cc: 2400,
                points: v,
            }),
            holidays: Vec::from_slice(holidays).unwrap(),
            time_zone: String::try_from("CET-1CEST,M3.5.0,M10.5.0/3").unwrap(),
            ..Config::default()
        };
        cfg.validate().unwrap();
        cfg
    }

    /// Pump transitions (UTC minute, on) while walking minute by minute from `start`.
    fn transitions(cfg: &Config, start: i64, minutes: i64) -> std::vec::Vec<(i64, bool)> {
        let mut out = std::vec::Vec::new();
        let mut last = demand(cfg, Some(start)).pump;
        for m in 1..=minutes {
            let t = start + m * 60;
            let now = demand(cfg, Some(t)).pump;
            if now != last {
                out.push((t, now));
                last = now;
            }
        }
        out
    }

    #[test]
    fn weekly_points() {
        // Monday 06:00 pump, 07:00 occupied, 21:00 pump only, 22:00 off; Tuesday nothing.
        let cfg = config(
            &[
                (0, 360, true, false),
                (0, 420, true, true),
                (0, 1260, true, false),
                (0, 1320, false, false),
            ],
            &[],
        );
        // 2026-06-01 is a Monday; CEST = UTC+2.
        let at = |h: i64, m: i64| demand(&cfg, Some(utc(2026, 6, 1, h - 2, m)));
        let off = Demand {
            pump: false,
            occupied: false,
        };
        assert_eq!(at(5, 59), off);
        assert_eq!(
            at(6, 0),
            Demand {
                pump: true,
                occupied: false
            }
        );
        assert_eq!(at(7, 0), UNSCHEDULED);
        assert_eq!(at(20, 59), UNSCHEDULED);
        assert_eq!(
            at(21, 0),
            Demand {
                pump: true,
                occupied: false
            }
        );
        assert_eq!(at(22, 0), off);
        // Tuesday has no points: off all day.
        assert_eq!(demand(&cfg, Some(utc(2026, 6, 2, 8, 0))), off);
        // No time yet, or no schedule: pump on, occupied.
        assert_eq!(demand(&cfg, None), UNSCHEDULED);
        assert_eq!(demand(&Config::default(), Some(0)), UNSCHEDULED);
    }

    #[test]
    fn holiday_uses_its_own_day_type() {
        // Every weekday 06:00-22:00; holidays 10:00-18:00. 2026-12-25 is a Friday.
        let mut points = std::vec::Vec::new();
        for d in 0..7 {
            points.push((d, 360, true, true));
            points.push((d, 1320, false, false));
        }
        points.push((HOLIDAY, 600, true, true));
        points.push((HOLIDAY, 1080, false, false));
        let christmas = days_from_civil(2026, 12, 25) as u16;
        let cfg = config(&points, &[christmas]);
        // Thursday 24th (UTC+1): runs from 06:00 local = 05:00 UTC.
        let t = transitions(&cfg, utc(2026, 12, 24, 0, 0), 3 * 24 * 60);
        assert_eq!(
            t,
            [
                (utc(2026, 12, 24, 5, 0), true),
                (utc(2026, 12, 24, 21, 0), false),
                // Friday 25th is a holiday: 10:00-18:00 local.
                (utc(2026, 12, 25, 9, 0), true),
                (utc(2026, 12, 25, 17, 0), false),
                // Saturday 26th: weekday again.
                (utc(2026, 12, 26, 5, 0), true),
                (utc(2026, 12, 26, 21, 0), false),
            ]
        );
    }

    #[test]
    fn spring_forward_point_in_the_skipped_hour_happens_once() {
        // Sunday 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00 UTC. Pump on at 02:30, off at 04:00.
        let cfg = config(&[(6, 150, true, false), (6, 240, false, false)], &[]);
        let t = transitions(&cfg, utc(2026, 3, 28, 20, 0), 12 * 60);
        assert_eq!(
            t,
            [
                (utc(2026, 3, 29, 1, 0), true),  // at the change (03:00 CEST)
                (utc(2026, 3, 29, 2, 0), false), // 04:00 CEST
            ]
        );
    }

    #[test]
    fn fall_back_point_in_the_repeated_hour_happens_once() {
        // Sunday 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC. Pump on at 01:00, off at
        // 02:30. A wall clock would switch it on again at 02:00 CET and off at 02:30 CET.
        let cfg = config(&[(6, 60, true, false), (6, 150, false, false)], &[]);
        let t = transitions(&cfg, utc(2026, 10, 24, 20, 0), 12 * 60);
        assert_eq!(
            t,
            [
                (utc(2026, 10, 24, 23, 0), true),  // 01:00 CEST
                (utc(2026, 10, 25, 0, 30), false), // 02:30 CEST, once
            ]
        );
        // A point at 02:30 switching on, off at 05:00: on once, through the repeated hour.
        let cfg = config(&[(6, 150, true, true), (6, 300, false, false)], &[]);
        let t = transitions(&cfg, utc(2026, 10, 24, 20, 0), 12 * 60);
        assert_eq!(
            t,
            [
                (utc(2026, 10, 25, 0, 30), true), // 02:30 CEST
                (utc(2026, 10, 25, 4, 0), false), // 05:00 CET
            ]
        );
    }
}
