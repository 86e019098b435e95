//! POSIX TZ rules: the local-time rule a device follows (configuration item 14).
//!
//! A controller has no time-zone database, so the server sends the rule of the site's zone in
//! the form POSIX defines for the `TZ` variable — exactly the footer line of a TZif file
//! (RFC 8536 section 3.3), e.g. `CET-1CEST,M3.5.0,M10.5.0/3`:
//!
//! ```text
//! std offset [dst [offset] [,start[/time],end[/time]]]
//! ```
//!
//! * `std`, `dst`: names, three or more letters, or `<...>` quoted (letters, digits, `+`, `-`);
//!   only their syntax matters here.
//! * `offset`: `[+|-]hh[:mm[:ss]]`, hours 0..=24, **west** of Greenwich positive (so `CET-1` is
//!   UTC+1). The DST offset defaults to one hour ahead of standard time.
//! * `start`, `end`: `Mm.w.d` (day `d`, 0 = Sunday, of week `w` 1..=5 of month `m`, 5 = the
//!   last), `Jn` (day 1..=365, February 29 never counted) or `n` (day 0..=365, counting it);
//!   `time` is `[+|-]hh[:mm[:ss]]` with hours 0..=167 (RFC 8536's extension), default `02:00:00`,
//!   in the local time in effect before the change. A rule with a DST name must give both dates
//!   (POSIX leaves the default to the implementation; TZif footers always give them).
//!
//! Parsing never panics; this module only reads the rule. The controller turns it into local
//! time (`tek-controller`'s `local_time`), the server checks configurations with it
//! ([`Config::validate`](crate::message::config::Config::validate)).

/// When in its year a daylight-saving change happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Date {
    /// `Mm.w.d`: weekday `day` (0 = Sunday) of week `week` (1..=5, 5 = last) of `month` (1..=12).
    MonthWeekDay {
        /// Month, 1..=12.
        month: u8,
        /// Week, 1..=5 (5 = the last such weekday of the month).
        week: u8,
        /// Weekday, 0 = Sunday ..= 6.
        day: u8,
    },
    /// `Jn`: day 1..=365 of the year, February 29 never counted.
    Julian1(u16),
    /// `n`: day 0..=365 of the year, February 29 counted in leap years.
    Julian0(u16),
}

/// A change of local time: a date and a time of day (seconds, may be negative or past 24 h) in
/// the local time in effect before the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The day.
    pub date: Date,
    /// Seconds after that day's local midnight, -167 h..=167 h.
    pub time_s: i32,
}

/// Daylight-saving time of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dst {
    /// Offset from UTC during DST, seconds **east** (UTC+2 = 7200).
    pub offset_s: i32,
    /// When DST starts (in standard time).
    pub start: Change,
    /// When DST ends (in DST).
    pub end: Change,
}

/// A parsed POSIX TZ rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Offset from UTC of standard time, seconds **east** (UTC+1 = 3600).
    pub std_offset_s: i32,
    /// Daylight-saving time, if the zone has it.
    pub dst: Option<Dst>,
}

/// Why a TZ string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TzError {
    /// A zone name is missing, shorter than three letters or badly quoted.
    Name,
    /// An offset or time is missing or out of range.
    Offset,
    /// A date (`Mm.w.d`, `Jn`, `n`) is malformed or out of range.
    Date,
    /// A DST name without both change dates, or characters after the rule.
    Syntax,
}

impl core::fmt::Display for TzError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TzError::Name => "time zone: bad zone abbreviation",
            TzError::Offset => "time zone: bad UTC offset or change time",
            TzError::Date => "time zone: bad daylight-saving date",
            TzError::Syntax => "time zone: not a POSIX TZ rule with both DST dates",
        })
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Unsigned decimal of 1..=`max_digits` digits.
    fn number(&mut self, max_digits: usize) -> Option<u32> {
        let start = self.at;
        let mut v: u32 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.at - start == max_digits {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
            self.at += 1;
        }
        (self.at > start).then_some(v)
    }

    fn name(&mut self) -> Result<(), TzError> {
        if self.eat(b'<') {
            let start = self.at;
            while let Some(c) = self.peek() {
                if c == b'>' {
                    break;
                }
                if !(c.is_ascii_alphanumeric() || c == b'+' || c == b'-') {
                    return Err(TzError::Name);
                }
                self.at += 1;
            }
            let len = self.at - start;
            if !self.eat(b'>') || len < 3 {
                return Err(TzError::Name);
            }
        } else {
            let start = self.at;
            while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                self.at += 1;
            }
            if self.at - start < 3 {
                return Err(TzError::Name);
            }
        }
        Ok(())
    }

    /// `[+|-]hh[:mm[:ss]]` in seconds, hours at most `max_hours`.
    fn hms(&mut self, max_hours: u32) -> Result<i32, TzError> {
        let negative = if self.eat(b'-') {
            true
        } else {
            self.eat(b'+');
            false
        };
        let h = self.number(3).ok_or(TzError::Offset)?;
        let mut s = 0;
        let mut m = 0;
        if self.eat(b':') {
            m = self.number(2).ok_or(TzError::Offset)?;
            if self.eat(b':') {
                s = self.number(2).ok_or(TzError::Offset)?;
            }
        }
        if h > max_hours || m > 59 || s > 59 {
            return Err(TzError::Offset);
        }
        let v = (h * 3600 + m * 60 + s) as i32;
        Ok(if negative { -v } else { v })
    }

    fn change(&mut self) -> Result<Change, TzError> {
        let date = if self.eat(b'M') {
            let month = self.number(2).ok_or(TzError::Date)?;
            let week = if self.eat(b'.') {
                self.number(1).ok_or(TzError::Date)?
            } else {
                return Err(TzError::Date);
            };
            let day = if self.eat(b'.') {
                self.number(1).ok_or(TzError::Date)?
            } else {
                return Err(TzError::Date);
            };
            if !(1..=12).contains(&month) || !(1..=5).contains(&week) || day > 6 {
                return Err(TzError::Date);
            }
            Date::MonthWeekDay {
                month: month as u8,
                week: week as u8,
                day: day as u8,
            }
        } else if self.eat(b'J') {
            match self.number(3) {
                Some(n @ 1..=365) => Date::Julian1(n as u16),
                _ => return Err(TzError::Date),
            }
        } else {
            match self.number(3) {
                Some(n @ 0..=365) => Date::Julian0(n as u16),
                _ => return Err(TzError::Date),
            }
        };
        let time_s = if self.eat(b'/') {
            self.hms(167)?
        } else {
            2 * 3600
        };
        Ok(Change { date, time_s })
    }
}

impl Rule {
    /// Parses a POSIX TZ rule (see the module documentation). Leading `:` forms (file names) are
    /// refused: a device has no files.
    pub fn parse(s: &str) -> Result<Rule, TzError> {
        let mut c = Cursor {
            s: s.as_bytes(),
            at: 0,
        };
        c.name()?;
        // POSIX offsets count west; keep east-positive seconds, as everything else does.
        let std_offset_s = -c.hms(24)?;
        if c.peek().is_none() {
            return Ok(Rule {
                std_offset_s,
                dst: None,
            });
        }
        c.name()?;
        let dst_offset_s = match c.peek() {
            Some(b',') | None => std_offset_s + 3600,
            _ => -c.hms(24)?,
        };
        if !c.eat(b',') {
            return Err(TzError::Syntax);
        }
        let start = c.change()?;
        if !c.eat(b',') {
            return Err(TzError::Syntax);
        }
        let end = c.change()?;
        if c.peek().is_some() {
            return Err(TzError::Syntax);
        }
        Ok(Rule {
            std_offset_s,
            dst: Some(Dst {
                offset_s: dst_offset_s,
                start,
                end,
            }),
        })
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1..=12, `day` 1..=31; not
/// checked against the month's length). Howard Hinnant's `days_from_civil`.
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1..=12, day 1..=31) of a day number since 1970-01-01. Howard Hinnant's
/// `civil_from_days`.
pub const fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// Whether `year` has a February 29.
pub const fn is_leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Weekday of a day number since 1970-01-01, 0 = Sunday (1970-01-01 was a Thursday).
pub const fn weekday_sunday0(days: i32) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

impl Date {
    /// The day number (since 1970-01-01) of this date in `year`.
    pub fn day_in(&self, year: i32) -> i32 {
        let jan1 = days_from_civil(year, 1, 1);
        match *self {
            Date::Julian0(n) => jan1 + i32::from(n),
            Date::Julian1(n) => {
                let n = i32::from(n);
                // Day 60 is March 1 in every year: February 29 is skipped.
                jan1 + n - 1 + i32::from(is_leap(year) && n >= 60)
            }
            Date::MonthWeekDay { month, week, day } => {
                let first = days_from_civil(year, u32::from(month), 1);
                let shift = (i32::from(day) - weekday_sunday0(first) as i32).rem_euclid(7);
                let mut d = first + shift + 7 * (i32::from(week) - 1);
                let next_month = if month == 12 {
                    days_from_civil(year + 1, 1, 1)
                } else {
                    days_from_civil(year, u32::from(month) + 1, 1)
                };
                while d >= next_month {
                    d -= 7; // week 5 = the last one
                }
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_footers() {
        let cet = Rule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(cet.std_offset_s, 3600);
        let dst = cet.dst.unwrap();
        assert_eq!(dst.offset_s, 7200);
        assert_eq!(
            dst.start,
            Change {
                date: Date::MonthWeekDay {
                    month: 3,
                    week: 5,
                    day: 0
                },
                time_s: 7200
            }
        );
        assert_eq!(dst.end.time_s, 3 * 3600);
        let ny = Rule::parse("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(
            (ny.std_offset_s, ny.dst.unwrap().offset_s),
            (-18000, -14400)
        );
        assert_eq!(Rule::parse("UTC0").unwrap().dst, None);
        let lh = Rule::parse("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0").unwrap();
        assert_eq!((lh.std_offset_s, lh.dst.unwrap().offset_s), (37800, 39600));
        // Ireland: "negative DST" (winter is the DST of the rule).
        let ie = Rule::parse("IST-1GMT0,M10.5.0,M3.5.0/1").unwrap();
        assert_eq!((ie.std_offset_s, ie.dst.unwrap().offset_s), (3600, 0));
        // Greenland: change times past midnight and negative.
        let gl = Rule::parse("<-02>2<-01>,M3.5.0/-1,M10.5.0/0").unwrap();
        assert_eq!(gl.dst.unwrap().start.time_s, -3600);
        // Year-round DST (RFC 8536 section 3.3.1).
        let all = Rule::parse("EST5EDT4,0/0,J365/25").unwrap();
        assert_eq!(all.dst.unwrap().end.date, Date::Julian1(365));
        assert_eq!(all.dst.unwrap().end.time_s, 25 * 3600);
    }

    #[test]
    fn refuses_bad_rules() {
        for bad in [
            "",
            "CE-1",
            "CET",
            "CET-25",
            "CET-1:60",
            "CET-1CEST",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M13.5.0,M10.5.0",
            "CET-1CEST,M3.6.0,M10.5.0",
            "CET-1CEST,M3.5.7,M10.5.0",
            "CET-1CEST,M3.5.0,M10.5.0/168",
            "CET-1CEST,J0,J365",
            "CET-1CEST,366,J365",
            "CET-1CEST,M3.5.0,M10.5.0x",
            "<+1>-1",
            "<+01-1",
            ":Europe/Paris",
            "CET-1 ",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        for d in [-1000, 0, 59, 365, 10_957, 20_000, 65_535] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(weekday_sunday0(0), 4, "1970-01-01 was a Thursday");
        let m = |month, week, day| Date::MonthWeekDay { month, week, day };
        // EU summer time 2026: March 29 and October 25 (last Sundays).
        assert_eq!(m(3, 5, 0).day_in(2026), days_from_civil(2026, 3, 29));
        assert_eq!(m(10, 5, 0).day_in(2026), days_from_civil(2026, 10, 25));
        // US 2026: second Sunday of March (8th), first Sunday of November (1st).
        assert_eq!(m(3, 2, 0).day_in(2026), days_from_civil(2026, 3, 8));
        assert_eq!(m(11, 1, 0).day_in(2026), days_from_civil(2026, 11, 1));
        // December's last week and the Julian forms around February 29.
        assert_eq!(m(12, 5, 3).day_in(2026), days_from_civil(2026, 12, 30));
        assert_eq!(Date::Julian1(60).day_in(2024), days_from_civil(2024, 3, 1));
        assert_eq!(Date::Julian1(60).day_in(2025), days_from_civil(2025, 3, 1));
        assert_eq!(Date::Julian0(59).day_in(2024), days_from_civil(2024, 2, 29));
    }
}
