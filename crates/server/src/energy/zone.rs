//! Site time zones: IANA names checked against the time zone database bundled into the program
//! (jiff's copy, so a result does not depend on the host's tzdata), and the local calendar
//! periods (days, months) energy is summed over, as Unix-second boundaries.
//!
//! A local day is from local midnight to the next local midnight, whatever its length: 23 hours
//! on the spring-forward day of a zone with daylight saving time, 25 hours on the fall-back day.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The time zone of a site that has none set.
pub const DEFAULT: &str = "UTC";

/// Looks up an IANA time zone name (e.g. `Europe/Berlin`, `UTC`); returns the zone and its
/// canonical spelling, or a message saying what is wrong.
pub fn parse(name: &str) -> Result<(TimeZone, String), String> {
    let name = name.trim();
    // The database also understands POSIX TZ strings and file paths in some modes; only
    // plain names are accepted here.
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        && !name.starts_with('/')
        && !name.contains("..");
    if !plain {
        return Err(format!(
            "{name:?} is not an IANA time zone name like Europe/Berlin"
        ));
    }
    let tz = TimeZone::get(name)
        .map_err(|_| format!("unknown time zone {name:?} (use an IANA name like Europe/Berlin)"))?;
    let canonical = tz.iana_name().unwrap_or(name).to_owned();
    Ok((tz, canonical))
}

/// The zone of a stored name; a name the database no longer knows (it was valid when saved)
/// falls back to UTC rather than failing every page of the site.
pub fn load(name: &str) -> TimeZone {
    parse(name).map_or(TimeZone::UTC, |(tz, _)| tz)
}

/// Unix seconds of local midnight starting `date` in `tz` (in the rare zone whose midnight
/// falls into a daylight-saving gap, the first instant of that day).
pub fn day_start(tz: &TimeZone, date: Date) -> i64 {
    date.to_zoned_datetime(tz.clone())
        .map_or(0, |z| z.timestamp().as_second())
}

/// The local date at Unix second `t`.
pub fn local_date(tz: &TimeZone, t: i64) -> Date {
    Timestamp::from_second(t)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(tz.clone())
        .date()
}

/// Weekday (0 = Monday) and minute of the day (0..1440) of Unix second `t`, local in `tz`.
pub fn local_week_minute(tz: &TimeZone, t: i64) -> (u8, u16) {
    let z = Timestamp::from_second(t)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(tz.clone());
    let wd = z.weekday().to_monday_zero_offset() as u8;
    let minute = z.hour() as u16 * 60 + z.minute() as u16;
    (wd, minute)
}

/// [`local_week_minute`] for many times in ascending order, without a zoned date per call: the
/// zone's offset is looked up once per transition (the next one cached), and the weekday and
/// minute follow from the local second by arithmetic. The figures are the same; a site's year
/// of 35,040 intervals priced by time of use needed as many time zone conversions per summary.
pub struct LocalClock<'a> {
    tz: &'a TimeZone,
    /// The offset, seconds, valid for `valid.0 <= t < valid.1`.
    offset: i64,
    valid: (i64, i64),
}

impl<'a> LocalClock<'a> {
    /// A clock of zone `tz` (nothing looked up yet).
    pub fn new(tz: &'a TimeZone) -> LocalClock<'a> {
        LocalClock {
            tz,
            offset: 0,
            valid: (0, 0),
        }
    }

    /// Weekday (0 = Monday) and minute of the day of Unix second `t`, local in the zone.
    pub fn week_minute(&mut self, t: i64) -> (u8, u16) {
        if t < self.valid.0 || t >= self.valid.1 {
            let ts = Timestamp::from_second(t).unwrap_or(Timestamp::UNIX_EPOCH);
            self.offset = i64::from(self.tz.to_offset(ts).seconds());
            let next = self
                .tz
                .following(ts)
                .next()
                .map_or(i64::MAX, |tr| tr.timestamp().as_second());
            self.valid = (ts.as_second(), next);
        }
        let local = t + self.offset;
        // 1970-01-01 was a Thursday: 3 days after a Monday.
        let wd = (local.div_euclid(86_400) + 3).rem_euclid(7) as u8;
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        (wd, minute)
    }
}

/// How figures are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// Per local day.
    Day,
    /// Per local calendar month.
    Month,
}

impl By {
    /// Parses `day` or `month`.
    pub fn parse(s: &str) -> Option<By> {
        match s {
            "day" => Some(By::Day),
            "month" => Some(By::Month),
            _ => None,
        }
    }

    /// `day` or `month`.
    pub fn key(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Month => "month",
        }
    }
}

/// One local calendar period: its label (`2026-03-29` or `2026-03`) and `[start, end)` in Unix
/// seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `YYYY-MM-DD` (a day) or `YYYY-MM` (a month).
    pub label: String,
    /// Local date the period starts on.
    pub date: Date,
    /// First second.
    pub start: i64,
    /// First second after it.
    pub end: i64,
}

/// The next period's first date after the one starting on `d`.
fn next(by: By, d: Date) -> Option<Date> {
    match by {
        By::Day => d.tomorrow().ok(),
        By::Month => d
            .first_of_month()
            .checked_add(jiff::Span::new().months(1))
            .ok(),
    }
}

/// The `count` consecutive periods starting with the one containing `first` (a month starts on
/// its first day).
pub fn periods(tz: &TimeZone, by: By, first: Date, count: usize) -> Vec<Period> {
    let mut d = match by {
        By::Day => first,
        By::Month => first.first_of_month(),
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(n) = next(by, d) else { break };
        let label = match by {
            By::Day => d.to_string(),
            By::Month => format!("{:04}-{:02}", d.year(), d.month()),
        };
        out.push(Period {
            label,
            date: d,
            start: day_start(tz, d),
            end: day_start(tz, n),
        });
        d = n;
    }
    out
}

/// Number of periods from the one containing `first` to the one containing `last`, inclusive
/// (0 if `last` is before `first`).
pub fn count_between(by: By, first: Date, last: Date) -> usize {
    if last < first {
        return 0;
    }
    match by {
        By::Day => (first.until(last).map_or(0, |s| s.get_days()) + 1).max(0) as usize,
        By::Month => {
            let m = |d: Date| i64::from(d.year()) * 12 + i64::from(d.month());
            (m(last) - m(first) + 1).max(0) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn names_are_checked_and_canonical() {
        assert_eq!(parse("Europe/Berlin").unwrap().1, "Europe/Berlin");
        assert_eq!(parse(" UTC ").unwrap().1, "UTC");
        assert_eq!(parse("america/new_york").unwrap().1, "America/New_York");
        for bad in [
            "",
            "Mars/Olympus",
            "/etc/passwd",
            "../x",
            "EST5EDT,M3.2.0,M11.1.0",
            "Europe/ Berlin",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(load("nonsense"), TimeZone::UTC);
    }

    #[test]
    fn the_local_clock_agrees_with_a_zoned_date_at_every_quarter_hour() {
        for name in [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
        ] {
            let (tz, _) = parse(name).unwrap();
            let mut clock = LocalClock::new(&tz);
            // Two years of quarter hours (four changes of the clocks), then out of order.
            let start = 1_735_689_600 - 86_400;
            let times = (0..2 * 35_136).map(|k| start + k * 900);
            let back = [start + 5_000_000, start, start - 86_400 * 400, 0, -3_600];
            for t in times.chain(back) {
                assert_eq!(
                    clock.week_minute(t),
                    local_week_minute(&tz, t),
                    "{name} {t}"
                );
            }
        }
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let tz = load("Europe/Berlin");
        // 2026-03-29: clocks go 02:00 -> 03:00; 2026-10-25: 03:00 -> 02:00.
        let spring = periods(&tz, By::Day, date(2026, 3, 29), 1);
        assert_eq!(spring[0].end - spring[0].start, 23 * 3600);
        // Local midnight 2026-03-29 is 2026-03-28T23:00Z.
        assert_eq!(spring[0].start, 1_774_738_800);
        let fall = periods(&tz, By::Day, date(2026, 10, 25), 1);
        assert_eq!(fall[0].end - fall[0].start, 25 * 3600);
        let months = periods(&tz, By::Month, date(2026, 3, 15), 2);
        assert_eq!(months[0].label, "2026-03");
        // March: 31 days, one of them 23 hours long.
        assert_eq!(months[0].end - months[0].start, 31 * 86_400 - 3600);
        assert_eq!(months[1].start, months[0].end);
        assert_eq!(
            local_week_minute(&tz, spring[0].start + 2 * 3600),
            (6, 3 * 60)
        );
        assert_eq!(
            count_between(By::Day, date(2026, 3, 1), date(2026, 3, 31)),
            31
        );
        assert_eq!(
            count_between(By::Month, date(2025, 11, 30), date(2026, 2, 1)),
            4
        );
        assert_eq!(
            count_between(By::Month, date(2026, 2, 1), date(2025, 1, 1)),
            0
        );
    }
}
