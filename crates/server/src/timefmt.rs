//! Times as people read them and as forms send them: in UTC ([`datetime`], [`parse`]: the API
//! and the protocol) and local in a site's zone ([`local`], [`local_abbr`], [`iso`],
//! [`parse_local`]: the pages and CSV files). Pages name the zone their times are in.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
pub fn datetime(unix_s: i64) -> String {
    let (y, m, d) = civil(unix_s.div_euclid(86_400));
    let s = unix_s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `YYYY-MM-DD` (UTC).
pub fn date(unix_s: i64) -> String {
    let (y, m, d) = civil(unix_s.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM` (UTC).
pub fn hour_minute(unix_s: i64) -> String {
    let s = unix_s.rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, s / 60 % 60)
}

fn zoned(tz: &TimeZone, unix_s: i64) -> jiff::ZonedDateTime {
    Timestamp::from_second(unix_s)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(tz.clone())
}

/// `YYYY-MM-DD HH:MM:SS` local in `tz`.
pub fn local(tz: &TimeZone, unix_s: i64) -> String {
    zoned(tz, unix_s).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// `YYYY-MM-DD HH:MM:SS CET`: local in `tz` with the zone's abbreviation, for pages whose rows
/// are in different sites' zones.
pub fn local_abbr(tz: &TimeZone, unix_s: i64) -> String {
    zoned(tz, unix_s)
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// ISO 8601 with the offset of `tz` at that time: `2026-10-25T02:30:00+01:00`.
pub fn iso(tz: &TimeZone, unix_s: i64) -> String {
    zoned(tz, unix_s)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// `YYYY-MM-DDTHH:MM` local in `tz`, the value of a `datetime-local` field.
pub fn local_input(tz: &TimeZone, unix_s: i64) -> String {
    zoned(tz, unix_s).strftime("%Y-%m-%dT%H:%M").to_string()
}

/// Parses what [`parse`] accepts, dates and times being local in `tz` (Unix seconds are
/// absolute). A repeated local time takes the earlier offset, a skipped one moves forward.
pub fn parse_local(tz: &TimeZone, s: &str) -> Option<i64> {
    let s = s.trim();
    if s.parse::<i64>().is_ok() {
        return parse(s);
    }
    let wall = parse(s)?;
    let civil = Timestamp::from_second(wall)
        .ok()?
        .to_zoned_datetime(TimeZone::UTC)
        .datetime();
    civil
        .to_zoned_datetime(tz.clone())
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago".
pub fn ago(unix_s: i64, now: i64) -> String {
    let d = (now - unix_s).max(0);
    match d {
        0..=119 => format!("{d} s ago"),
        120..=7199 => format!("{} min ago", d / 60),
        7200..=172_799 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / 86_400),
    }
}

/// Parses a time given as Unix seconds, `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` or
/// `YYYY-MM-DD HH:MM[:SS]` (UTC).
pub fn parse(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return (-(1 << 40)..(1 << 40)).contains(&n).then_some(n);
    }
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=9999).contains(&y) || !(1..=12).contains(&m) {
        return None;
    }
    if !(1..=days_in_month(y, m)).contains(&d) {
        return None;
    }
    let mut secs = 0;
    if let Some(t) = time {
        let parts: Vec<&str> = t.trim_end_matches('Z').split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let h: i64 = parts[0].parse().ok()?;
        let mi: i64 = parts[1].parse().ok()?;
        let se: i64 = parts.get(2).map_or(Some(0), |x| x.parse().ok())?;
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..60).contains(&se) {
            return None;
        }
        secs = h * 3600 + mi * 60 + se;
    }
    Some(days_from_civil(y, m, d) * 86_400 + secs)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day number (inverse of [`days_from_civil`]).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(parse("2000-02-29"), Some(951_782_400));
        assert_eq!(parse("2000-02-29T01:02"), Some(951_782_400 + 3720));
        assert_eq!(parse("2000-02-29 01:02:03"), Some(951_782_400 + 3723));
        assert_eq!(parse("1767225600"), Some(1_767_225_600));
        for t in [0, 1_767_225_599, 1_767_225_600, 4_102_444_800] {
            assert_eq!(parse(&datetime(t)), Some(t));
        }
        for bad in [
            "",
            "2001-02-29",
            "2000-13-01",
            "2000-01-01T24:00",
            "x",
            "2000-01",
            "1e9",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(ago(100, 130), "30 s ago");
        assert_eq!(ago(0, 7200), "2 h ago");
        assert_eq!(hour_minute(3660), "01:01");
        assert_eq!(date(86_400), "1970-01-02");
    }

    #[test]
    fn local_times_name_their_offset() {
        let berlin = crate::energy::zone::load("Europe/Berlin");
        // 2026-10-25T00:30:00Z: 02:30 CEST; one hour later 02:30 again, CET.
        let t = 1_792_888_200;
        assert_eq!(local(&berlin, t), "2026-10-25 02:30:00");
        assert_eq!(iso(&berlin, t), "2026-10-25T02:30:00+02:00");
        assert_eq!(iso(&berlin, t + 3600), "2026-10-25T02:30:00+01:00");
        assert_eq!(local_abbr(&berlin, t + 3600), "2026-10-25 02:30:00 CET");
        assert_eq!(iso(&TimeZone::UTC, 0), "1970-01-01T00:00:00+00:00");
        assert_eq!(local_input(&berlin, t), "2026-10-25T02:30");
        // Form input is local: 2026-06-01 12:00 in Berlin is 10:00 UTC.
        assert_eq!(
            parse_local(&berlin, "2026-06-01T12:00"),
            parse("2026-06-01T10:00")
        );
        assert_eq!(parse_local(&berlin, "1767225600"), Some(1_767_225_600));
        assert_eq!(parse_local(&berlin, "2026-02-30"), None);
    }
}
