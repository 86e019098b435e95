//! A site's electricity tariff: a flat price per kWh, optional time-of-use periods with their own
//! price (by weekday and local time of day, possibly spanning midnight), a demand charge per kW
//! of the month's peak 15-minute demand, and a fixed charge per month.
//!
//! Stored as JSON (the [`Tariff`] value as given by the user, after [`Tariff::validate`]);
//! evaluated per 15-minute interval by [`Tariff::price_at`]. Period times are on the 15-minute
//! grid, so every interval lies wholly inside or outside a period.

use serde::{Deserialize, Serialize};

/// Most time-of-use periods in one tariff.
pub const MAX_PERIODS: usize = 24;
/// Highest price accepted (per kWh, per kW or per month): guards against unit mistakes.
pub const MAX_PRICE: f64 = 1_000_000.0;

/// A tariff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// ISO 4217 code the prices are in (only shown, never converted).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Price per kWh outside every time-of-use period (the flat price).
    pub energy_price: f64,
    /// Time-of-use periods; the first that matches an interval sets its price.
    #[serde(default)]
    pub periods: Vec<TouPeriod>,
    /// Price per kW of the month's peak 15-minute demand.
    #[serde(default)]
    pub demand_price: f64,
    /// Fixed charge per month.
    #[serde(default)]
    pub monthly_fixed: f64,
}

fn default_currency() -> String {
    "EUR".into()
}

/// One time-of-use period, e.g. peak `mon-fri 08:00-20:00`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouPeriod {
    /// Name shown to users (`peak`, `off-peak`, ...).
    pub name: String,
    /// Weekdays the period starts on: `mon-fri`, `sat,sun`, `all`, `mon,wed-fri`.
    pub days: String,
    /// Local start time `HH:MM` (minutes a multiple of 15).
    pub start: String,
    /// Local end time `HH:MM` (up to `24:00`); earlier than `start` means the period runs past
    /// midnight into the next day (which then need not be one of `days`).
    pub end: String,
    /// Price per kWh in this period.
    pub price: f64,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses a weekday list into a bit mask (bit 0 = Monday).
pub fn parse_days(s: &str) -> Result<u8, String> {
    let s = s.trim().to_ascii_lowercase();
    if s == "all" || s == "daily" {
        return Ok(0x7f);
    }
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| *x == d.trim())
            .ok_or_else(|| format!("{d:?} is not a weekday (mon, tue, ... sun)"))
    };
    let mut mask = 0u8;
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if b < a {
                    return Err(format!("{part:?}: a range runs forward, like mon-fri"));
                }
                (a..=b).for_each(|i| mask |= 1 << i);
            }
            None => mask |= 1 << day(part)?,
        }
    }
    if mask == 0 {
        return Err("no weekdays given (e.g. mon-fri, sat,sun or all)".into());
    }
    Ok(mask)
}

/// Parses `HH:MM` (00:00 to 24:00, minutes a multiple of 15) into minutes of the day.
pub fn parse_time(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time HH:MM on the quarter hour (00:00 to 24:00)");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || m % 15 != 0 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn price_ok(what: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && (0.0..=MAX_PRICE).contains(&v) {
        Ok(())
    } else {
        Err(format!("{what} must be a number from 0 to {MAX_PRICE}"))
    }
}

/// A period in the form `price_at` evaluates.
#[derive(Debug, Clone, Copy)]
struct Rule {
    days: u8,
    start: u16,
    end: u16,
    price: f64,
}

impl Rule {
    fn matches(&self, weekday: u8, minute: u16) -> bool {
        let on = |d: u8| self.days & (1 << (d % 7)) != 0;
        if self.start < self.end {
            on(weekday) && (self.start..self.end).contains(&minute)
        } else {
            // Runs past midnight: the evening of a listed day, or the morning after one.
            (on(weekday) && minute >= self.start) || (on(weekday + 6) && minute < self.end)
        }
    }
}

impl TouPeriod {
    fn rule(&self) -> Result<Rule, String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 40 || name.chars().any(char::is_control) {
            return Err("a period name has 1 to 40 printable characters".into());
        }
        let days = parse_days(&self.days).map_err(|e| format!("period {name}: {e}"))?;
        let start = parse_time(&self.start).map_err(|e| format!("period {name}: {e}"))?;
        let end = parse_time(&self.end).map_err(|e| format!("period {name}: {e}"))?;
        if start == end || start == 1440 {
            return Err(format!(
                "period {name}: start and end must differ (and start before 24:00)"
            ));
        }
        price_ok(&format!("period {name}: price"), self.price)?;
        Ok(Rule {
            days,
            start,
            end,
            price: self.price,
        })
    }
}

impl Tariff {
    /// A flat tariff.
    pub fn flat(currency: &str, price: f64) -> Tariff {
        Tariff {
            currency: currency.into(),
            energy_price: price,
            periods: Vec::new(),
            demand_price: 0.0,
            monthly_fixed: 0.0,
        }
    }

    /// Checks every field; the message says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.currency;
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("currency {c:?} is not a code like EUR"));
        }
        price_ok("energy_price", self.energy_price)?;
        price_ok("demand_price", self.demand_price)?;
        price_ok("monthly_fixed", self.monthly_fixed)?;
        if self.periods.len() > MAX_PERIODS {
            return Err(format!("at most {MAX_PERIODS} time-of-use periods"));
        }
        for p in &self.periods {
            p.rule()?;
        }
        Ok(())
    }

    /// Price per kWh at local `weekday` (0 = Monday) and `minute` of the day: the first matching
    /// period's, else the flat price. Call on a validated tariff (invalid periods never match).
    pub fn price_at(&self, weekday: u8, minute: u16) -> f64 {
        self.periods
            .iter()
            .filter_map(|p| p.rule().ok())
            .find(|r| r.matches(weekday, minute))
            .map_or(self.energy_price, |r| r.price)
    }

    /// The price of every quarter hour of the week (index `weekday * 96 + minute / 15`), so a
    /// year of intervals costs one table lookup each instead of a walk over the periods.
    pub fn week_table(&self) -> Vec<f64> {
        (0..7u8)
            .flat_map(|d| (0..96u16).map(move |q| (d, q * 15)))
            .map(|(d, m)| self.price_at(d, m))
            .collect()
    }

    /// The tariff as one line per period, for the form on the site page:
    /// `name days HH:MM-HH:MM price`.
    pub fn periods_text(&self) -> String {
        self.periods
            .iter()
            .map(|p| format!("{} {} {}-{} {}\n", p.name, p.days, p.start, p.end, p.price))
            .collect()
    }

    /// Parses [`Tariff::periods_text`]'s format (blank lines ignored).
    pub fn parse_periods(text: &str) -> Result<Vec<TouPeriod>, String> {
        let mut out = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let bad = || {
                format!(
                    "line {}: {line:?} is not `name days HH:MM-HH:MM price` (e.g. peak mon-fri 08:00-20:00 0.32)",
                    n + 1
                )
            };
            let [name, days, times, price] = f[..] else {
                return Err(bad());
            };
            let (start, end) = times.split_once('-').ok_or_else(bad)?;
            out.push(TouPeriod {
                name: name.into(),
                days: days.into(),
                start: start.into(),
                end: end.into(),
                price: price.parse().map_err(|_| bad())?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(name: &str, days: &str, start: &str, end: &str, price: f64) -> TouPeriod {
        TouPeriod {
            name: name.into(),
            days: days.into(),
            start: start.into(),
            end: end.into(),
            price,
        }
    }

    #[test]
    fn periods_across_midnight() {
        let t = Tariff {
            periods: vec![
                // Night rate from Friday 22:00 to Saturday 06:00 (and every weekday night).
                period("night", "mon-fri", "22:00", "06:00", 0.10),
                period("peak", "mon-fri", "08:00", "20:00", 0.40),
            ],
            ..Tariff::flat("EUR", 0.25)
        };
        t.validate().unwrap();
        let h = |h: u16| h * 60;
        assert_eq!(
            t.price_at(0, h(3)),
            0.25,
            "Monday 03:00 follows Sunday: flat"
        );
        assert_eq!(
            t.price_at(1, h(3)),
            0.10,
            "Tuesday 03:00 follows Monday night"
        );
        assert_eq!(
            t.price_at(5, h(5) + 45),
            0.10,
            "Saturday 05:45 follows Friday night"
        );
        assert_eq!(t.price_at(5, h(6)), 0.25, "the period ends at 06:00");
        assert_eq!(t.price_at(5, h(23)), 0.25, "Saturday evening: flat");
        assert_eq!(t.price_at(4, h(22)), 0.10);
        assert_eq!(t.price_at(4, h(21) + 45), 0.25);
        assert_eq!(t.price_at(2, h(8)), 0.40);
        assert_eq!(t.price_at(2, h(19) + 45), 0.40);
        assert_eq!(t.price_at(2, h(20)), 0.25);
        assert_eq!(t.price_at(6, h(12)), 0.25, "Sunday noon: flat");
        let table = t.week_table();
        assert_eq!(table.len(), 7 * 96);
        assert_eq!(table[96 + 12], 0.10);
        // Round trip through the text form of the site page.
        let text = t.periods_text();
        assert_eq!(Tariff::parse_periods(&text).unwrap(), t.periods);
        // An end of 24:00 runs to midnight.
        let eve = period("eve", "sun", "18:00", "24:00", 1.0).rule().unwrap();
        assert!(eve.matches(6, 1439) && !eve.matches(0, 0));
    }

    #[test]
    fn bad_tariffs_are_refused_with_a_reason() {
        let base = Tariff::flat("EUR", 0.3);
        let cases: Vec<(Tariff, &str)> = vec![
            (Tariff::flat("eur", 0.3), "currency"),
            (Tariff::flat("EUR", -1.0), "energy_price"),
            (Tariff::flat("EUR", f64::NAN), "energy_price"),
            (
                Tariff {
                    demand_price: 1e9,
                    ..base.clone()
                },
                "demand_price",
            ),
            (
                Tariff {
                    periods: vec![period("p", "mon-fry", "08:00", "20:00", 1.0)],
                    ..base.clone()
                },
                "weekday",
            ),
            (
                Tariff {
                    periods: vec![period("p", "fri-mon", "08:00", "20:00", 1.0)],
                    ..base.clone()
                },
                "forward",
            ),
            (
                Tariff {
                    periods: vec![period("p", "all", "08:10", "20:00", 1.0)],
                    ..base.clone()
                },
                "quarter",
            ),
            (
                Tariff {
                    periods: vec![period("p", "all", "08:00", "08:00", 1.0)],
                    ..base.clone()
                },
                "differ",
            ),
            (
                Tariff {
                    periods: vec![period("p", "all", "8:00", "20:00", 1.0)],
                    ..base.clone()
                },
                "quarter",
            ),
            (
                Tariff {
                    periods: vec![period("", "all", "08:00", "20:00", 1.0)],
                    ..base.clone()
                },
                "name",
            ),
            (
                Tariff {
                    periods: vec![period("p", "all", "08:00", "25:00", 1.0)],
                    ..base.clone()
                },
                "quarter",
            ),
        ];
        for (t, word) in cases {
            let e = t.validate().unwrap_err();
            assert!(e.contains(word), "{e} should mention {word}");
        }
        assert!(Tariff::parse_periods("peak mon-fri 08:00 0.3").is_err());
        assert!(Tariff::parse_periods("peak mon-fri 08:00-20:00 x").is_err());
        let json: Result<Tariff, _> = serde_json::from_str(r#"{"energy_price":0.3,"extra":1}"#);
        assert!(json.is_err(), "unknown fields are refused");
        let json: Tariff = serde_json::from_str(r#"{"energy_price":0.3}"#).unwrap();
        assert_eq!(json, base);
    }
}
