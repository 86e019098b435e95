//! Local time from the server's UTC clock, by the POSIX TZ rule of the configuration.
//!
//! The controller has no time-zone database: its configuration carries the rule of the site's
//! zone (`tek_proto::tz`, e.g. `CET-1CEST,M3.5.0,M10.5.0/3`), and this module applies it. No
//! heap, no tables: for an instant it computes the changes of offset of the year before, the
//! year and the year after (six at most), and takes the latest one at or before the instant.
//!
//! [`schedule_clock`] is the local time the schedule follows. It differs from the wall clock
//! only in the repeated period after the clock goes back: there it stays at the last second
//! before the change, so a switching time in the repeated hour takes effect once (in the first
//! pass), not twice. After the clock goes forward the wall clock simply jumps, and the schedule
//! takes the state of the last point before the new time: a switching time inside the skipped
//! hour takes effect once, at the change.

use tek_proto::tz::{civil_from_days, Change, Rule};

const DAY_S: i64 = 86_400;

/// Local time at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Local wall-clock seconds since 1970-01-01 00:00 local (the UTC seconds plus the offset).
    pub seconds: i64,
    /// Offset from UTC in effect, seconds east.
    pub offset_s: i32,
    /// Whether it is the rule's daylight-saving time.
    pub dst: bool,
}

impl Local {
    /// Days since 1970-01-01 of the local date.
    pub fn day(&self) -> i64 {
        self.seconds.div_euclid(DAY_S)
    }

    /// Minute of the local day, 0..=1439.
    pub fn minute_of_day(&self) -> u16 {
        (self.seconds.rem_euclid(DAY_S) / 60) as u16
    }

    /// Day of the week, 0 = Monday ..= 6 = Sunday (1970-01-01 was a Thursday).
    pub fn weekday_monday0(&self) -> u8 {
        (self.day() + 3).rem_euclid(7) as u8
    }
}

/// A change of offset: when (UTC seconds), and the offsets before and after.
#[derive(Debug, Clone, Copy)]
struct Shift {
    at: i64,
    /// Ends DST (sorts first at an equal instant, so that a rule whose DST ends and starts at
    /// the same instant — RFC 8536's year-round DST — stays in DST).
    to_std: bool,
    before: i32,
    after: i32,
}

fn instant(change: &Change, year: i32, offset_before: i32) -> i64 {
    // The change's time is in the local time in effect before it.
    i64::from(change.date.day_in(year)) * DAY_S + i64::from(change.time_s)
        - i64::from(offset_before)
}

/// The latest change of offset at or before `utc`, if the rule has DST.
fn last_shift(rule: &Rule, utc: i64) -> Option<Shift> {
    let dst = rule.dst?;
    let std = rule.std_offset_s;
    let year = civil_from_days((utc + i64::from(std)).div_euclid(DAY_S) as i32).0;
    let mut best: Option<Shift> = None;
    for y in year - 1..=year + 1 {
        for s in [
            Shift {
                at: instant(&dst.start, y, std),
                to_std: false,
                before: std,
                after: dst.offset_s,
            },
            Shift {
                at: instant(&dst.end, y, dst.offset_s),
                to_std: true,
                before: dst.offset_s,
                after: std,
            },
        ] {
            let later = |b: &Shift| (s.at, !s.to_std) > (b.at, !b.to_std);
            if s.at <= utc && best.as_ref().is_none_or(later) {
                best = Some(s);
            }
        }
    }
    best
}

/// Local wall-clock time at `utc` (seconds since 1970-01-01 UTC).
pub fn local(rule: &Rule, utc: i64) -> Local {
    match last_shift(rule, utc) {
        None => Local {
            seconds: utc + i64::from(rule.std_offset_s),
            offset_s: rule.std_offset_s,
            dst: false,
        },
        Some(s) => Local {
            seconds: utc + i64::from(s.after),
            offset_s: s.after,
            dst: !s.to_std,
        },
    }
}

/// The local time the schedule follows at `utc`: the wall clock, except in the repeated period
/// after the clock went back, where it stays at the last second before the change (see the
/// module documentation).
pub fn schedule_clock(rule: &Rule, utc: i64) -> Local {
    let wall = local(rule, utc);
    if let Some(s) = last_shift(rule, utc) {
        let back = i64::from(s.before) - i64::from(s.after);
        if back > 0 && utc < s.at + back {
            return Local {
                seconds: s.at + i64::from(s.before) - 1,
                ..wall
            };
        }
    }
    wall
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_proto::tz::days_from_civil;

    fn utc(y: i32, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        i64::from(days_from_civil(y, mo, d)) * DAY_S + h * 3600 + mi * 60
    }

    fn wall(l: Local) -> (i32, u32, u32, u16) {
        let (y, m, d) = civil_from_days(l.day() as i32);
        (y, m, d, l.minute_of_day())
    }

    #[test]
    fn central_europe_2026() {
        let r = Rule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // Winter: UTC+1.
        let l = local(&r, utc(2026, 1, 15, 12, 0));
        assert_eq!(
            (l.offset_s, l.dst, wall(l)),
            (3600, false, (2026, 1, 15, 13 * 60))
        );
        // March 29, 01:00 UTC: 02:00 CET becomes 03:00 CEST.
        let before = local(&r, utc(2026, 3, 29, 0, 59));
        assert_eq!((before.dst, wall(before)), (false, (2026, 3, 29, 60 + 59)));
        let after = local(&r, utc(2026, 3, 29, 1, 0));
        assert_eq!((after.dst, wall(after)), (true, (2026, 3, 29, 3 * 60)));
        // October 25, 01:00 UTC: 03:00 CEST becomes 02:00 CET.
        let before = local(&r, utc(2026, 10, 25, 0, 59));
        assert_eq!(
            (before.dst, wall(before)),
            (true, (2026, 10, 25, 2 * 60 + 59))
        );
        let after = local(&r, utc(2026, 10, 25, 1, 0));
        assert_eq!((after.dst, wall(after)), (false, (2026, 10, 25, 2 * 60)));
        // New Year's Eve around midnight, both sides of the year boundary.
        let l = local(&r, utc(2026, 12, 31, 23, 30));
        assert_eq!(wall(l), (2027, 1, 1, 30));
        assert_eq!(l.weekday_monday0(), 4, "2027-01-01 is a Friday");
    }

    #[test]
    fn other_rules() {
        // New York: 2026-03-08 07:00 UTC (02:00 EST -> 03:00 EDT), 2026-11-01 06:00 UTC.
        let ny = Rule::parse("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(local(&ny, utc(2026, 3, 8, 6, 59)).offset_s, -5 * 3600);
        assert_eq!(local(&ny, utc(2026, 3, 8, 7, 0)).offset_s, -4 * 3600);
        assert_eq!(local(&ny, utc(2026, 11, 1, 5, 59)).offset_s, -4 * 3600);
        assert_eq!(local(&ny, utc(2026, 11, 1, 6, 0)).offset_s, -5 * 3600);
        // Sydney (southern hemisphere: DST across the new year).
        let syd = Rule::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert!(local(&syd, utc(2026, 1, 10, 0, 0)).dst);
        assert!(!local(&syd, utc(2026, 7, 10, 0, 0)).dst);
        assert!(local(&syd, utc(2026, 12, 31, 20, 0)).dst);
        // Ireland: "negative DST", winter is the rule's DST at UTC+0.
        let ie = Rule::parse("IST-1GMT0,M10.5.0,M3.5.0/1").unwrap();
        assert_eq!(local(&ie, utc(2026, 1, 10, 12, 0)).offset_s, 0);
        assert_eq!(local(&ie, utc(2026, 7, 10, 12, 0)).offset_s, 3600);
        // No DST, half-hour offsets.
        let india = Rule::parse("IST-5:30").unwrap();
        assert_eq!(
            wall(local(&india, utc(2026, 6, 1, 20, 0))),
            (2026, 6, 2, 90)
        );
        // Year-round DST (RFC 8536): always UTC-4, also at the year boundary.
        let all = Rule::parse("EST5EDT4,0/0,J365/25").unwrap();
        for t in [
            utc(2026, 1, 1, 5, 0),
            utc(2026, 6, 1, 0, 0),
            utc(2026, 12, 31, 23, 59),
            utc(2027, 1, 1, 4, 59),
            utc(2027, 1, 1, 5, 0),
        ] {
            assert_eq!(local(&all, t).offset_s, -4 * 3600, "{t}");
        }
    }

    #[test]
    fn schedule_clock_holds_through_the_repeated_hour() {
        let r = Rule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 00:00..01:00 UTC on Oct 25 is 02:00..03:00 CEST (first pass); 01:00..02:00 UTC is
        // 02:00..03:00 CET (second pass), during which the schedule clock stays at 02:59:59.
        let first = schedule_clock(&r, utc(2026, 10, 25, 0, 30));
        assert_eq!(wall(first), (2026, 10, 25, 150));
        for m in [0, 1, 30, 59] {
            let held = schedule_clock(&r, utc(2026, 10, 25, 1, m));
            assert_eq!(held.seconds.rem_euclid(DAY_S), 3 * 3600 - 1, "{m}");
        }
        let after = schedule_clock(&r, utc(2026, 10, 25, 2, 0));
        assert_eq!(wall(after), (2026, 10, 25, 180));
        // Elsewhere it is the wall clock.
        for t in [utc(2026, 3, 29, 1, 0), utc(2026, 7, 1, 9, 0)] {
            assert_eq!(schedule_clock(&r, t), local(&r, t));
        }
        // Never goes back, minute by minute over both changes of 2026.
        for start in [utc(2026, 3, 28, 12, 0), utc(2026, 10, 24, 12, 0)] {
            let mut last = i64::MIN;
            for m in 0..24 * 60 {
                let s = schedule_clock(&r, start + m * 60).seconds;
                assert!(s >= last);
                last = s;
            }
        }
    }
}
