//! Energy: a site's intervals loaded once (`Loaded`), the periods a request asks for, the
//! device day totals the dashboards show, and the admin changes of a site's tariff and time
//! zone. The pages (`web::site`, `web::device`, `web::dashboard`, `web::admin`) and the JSON API
//! (`api::energy`) call them; the arithmetic itself is `crate::energy` (pure).

use crate::energy::tariff::Tariff;
use crate::energy::zone::{self, By, Period};
use crate::energy::{self, Figures, Intervals};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::storage::{self, SiteRecord, Storage};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Deserialize;

/// Most days in one request (`by=day`).
pub const MAX_DAYS: usize = 400;

/// Most months in one request (`by=month`).
pub const MAX_MONTHS: usize = 36;

/// A site's intervals, loaded once and summarized as often as needed.
pub struct Loaded {
    /// The site.
    pub site: SiteRecord,
    /// Its zone.
    pub tz: TimeZone,
    /// Its tariff.
    pub tariff: Option<Tariff>,
    /// Each device's intervals, by id.
    pub devices: Vec<(u32, Intervals)>,
    /// The site's (the devices' summed).
    pub total: Intervals,
    /// Time of the site's first record (any device, ever), if any: the fixed monthly charge
    /// starts with its month.
    pub first_data: Option<i64>,
}

impl Loaded {
    /// Figures of the site per period.
    pub fn site_figures(&self, by: By, periods: &[Period]) -> Vec<Figures> {
        let mut f = energy::summarize(&self.total, &self.tz, by, periods, self.tariff.as_ref());
        energy::fixed_from(&mut f, self.first_data);
        f
    }

    /// Figures of one device per period: its energy at the site's prices; the demand and fixed
    /// charges are the site's and are not split ([`energy::energy_cost_only`]).
    pub fn device_figures(&self, i: usize, by: By, periods: &[Period]) -> Vec<Figures> {
        let mut f = energy::summarize(
            &self.devices[i].1,
            &self.tz,
            by,
            periods,
            self.tariff.as_ref(),
        );
        energy::energy_cost_only(&mut f);
        f
    }
}

/// Reads everything a site's figures over `[from, to)` need: one meter query per device.
pub fn load(db: &dyn Storage, site: SiteRecord, from: i64, to: i64) -> storage::Result<Loaded> {
    let tz = zone::load(&site.time_zone);
    let tariff = db.site_tariff(site.id)?;
    let (from, to) = (energy::floor(from), energy::ceil(to));
    let mut devices = Vec::new();
    let mut total = Intervals::new();
    let mut first_data: Option<i64> = None;
    for id in db.site_device_ids(site.id)? {
        let first = db.telemetry(&storage::TelemetryQuery {
            device_id: id,
            from: i64::MIN,
            to: i64::MAX,
            limit: 1,
        })?;
        if let Some(r) = first.first() {
            first_data = Some(first_data.map_or(r.time, |t| t.min(r.time)));
        }
        let data = db.meter_data(id, from, to)?;
        let i = energy::device_intervals(&data, from, to);
        energy::add(&mut total, &i);
        devices.push((id, i));
    }
    Ok(Loaded {
        site,
        tz,
        tariff,
        devices,
        total,
        first_data,
    })
}

/// Energy per local day of one device for the last `days` days up to `now`, in the zone
/// `time_zone` (its site's; UTC for a device without a site): the device page's chart.
pub fn device_days(
    db: &dyn Storage,
    device: u32,
    time_zone: &str,
    days: usize,
    now: i64,
) -> storage::Result<Vec<Figures>> {
    let tz = zone::load(time_zone);
    let today = zone::local_date(&tz, now);
    let first = today
        .checked_sub(jiff::Span::new().days(days.saturating_sub(1) as i64))
        .unwrap_or(today);
    let periods = zone::periods(&tz, By::Day, first, days);
    let (from, to) = (periods[0].start, periods[periods.len() - 1].end);
    let data = db.meter_data(device, energy::floor(from), energy::ceil(to))?;
    let i = energy::device_intervals(&data, energy::floor(from), energy::ceil(to));
    Ok(energy::summarize(&i, &tz, By::Day, &periods, None))
}

/// The range of an energy request.
#[derive(Debug, Default, Deserialize)]
pub struct EnergyQuery {
    /// First day (`YYYY-MM-DD`) or month (`YYYY-MM`), local; default 30 days or 12 months ago.
    pub from: Option<String>,
    /// End, exclusive (same forms); default: after today or this month.
    pub to: Option<String>,
    /// `day` (default) or `month`.
    pub by: Option<String>,
}

fn parse_date(s: &str, by: By, what: &str) -> Result<Date, WebError> {
    let s = s.trim();
    let d = if by == By::Month && s.len() == 7 {
        format!("{s}-01").parse::<Date>()
    } else {
        s.parse::<Date>()
    };
    let d = d.map_err(|_| {
        WebError::Invalid(format!(
            "{what} {s:?} is not a date YYYY-MM-DD{}",
            if by == By::Month {
                " or a month YYYY-MM"
            } else {
                ""
            }
        ))
    })?;
    Ok(match by {
        By::Day => d,
        By::Month => d.first_of_month(),
    })
}

/// The periods a query asks for, in the site's zone; `now` decides the defaults.
pub fn periods(q: &EnergyQuery, tz: &TimeZone, now: i64) -> Result<(By, Vec<Period>), WebError> {
    let by = match q.by.as_deref().map(str::trim) {
        None | Some("") => By::Day,
        Some(s) => {
            By::parse(s).ok_or_else(|| WebError::Invalid("by must be day or month".into()))?
        }
    };
    let today = zone::local_date(tz, now);
    let (default_count, max) = match by {
        By::Day => (30, MAX_DAYS),
        By::Month => (12, MAX_MONTHS),
    };
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    let last = match &q.to {
        t if blank(t) => today,
        Some(t) => {
            let end = parse_date(t, by, "to")?;
            match by {
                By::Day => end
                    .yesterday()
                    .map_err(|_| WebError::Invalid("to is out of range".into()))?,
                By::Month => end
                    .checked_sub(jiff::Span::new().months(1))
                    .map_err(|_| WebError::Invalid("to is out of range".into()))?,
            }
        }
        None => today,
    };
    let first = match &q.from {
        f if blank(f) => {
            let back = default_count as i64 - 1;
            let span = match by {
                By::Day => jiff::Span::new().days(back),
                By::Month => jiff::Span::new().months(back),
            };
            last.checked_sub(span)
                .map_err(|_| WebError::Invalid("from is out of range".into()))?
        }
        Some(f) => parse_date(f, by, "from")?,
        None => today,
    };
    let n = zone::count_between(by, first, last);
    if n == 0 {
        return Err(WebError::Invalid("to must be after from".into()));
    }
    if n > max {
        return Err(WebError::Invalid(format!(
            "at most {max} {}s in one request",
            by.key()
        )));
    }
    Ok((by, zone::periods(tz, by, first, n)))
}

impl Web {
    /// The site `user` may see (an admin, or a member), else 404.
    pub async fn site_for(
        &self,
        user: &crate::storage::UserRecord,
        id: i64,
    ) -> Result<SiteRecord, WebError> {
        let (uid, admin) = (user.id, user.is_admin);
        self.db_call(move |db| {
            let Some(site) = db.site(id)? else {
                return Ok(None);
            };
            if !admin && !db.user_sites(uid)?.iter().any(|s| s.id == id) {
                return Ok(None);
            }
            Ok(Some(site))
        })
        .await?
        .ok_or(WebError::NotFound)
    }

    /// Loads a visible site's figures for `q`.
    pub async fn site_energy(
        &self,
        user: &crate::storage::UserRecord,
        id: i64,
        q: &EnergyQuery,
    ) -> Result<(Loaded, By, Vec<Period>), WebError> {
        let site = self.site_for(user, id).await?;
        let tz = zone::load(&site.time_zone);
        let (by, periods) = periods(q, &tz, crate::clock::unix_now())?;
        let (from, to) = (periods[0].start, periods[periods.len() - 1].end);
        let loaded = self.db_call(move |db| load(db, site, from, to)).await?;
        Ok((loaded, by, periods))
    }
}

/// Sets or removes a site's tariff (admins), with an audit entry.
pub async fn set_tariff(
    web: &Web,
    p: &Principal,
    id: i64,
    tariff: Option<Tariff>,
) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    web.site_for(&p.user, id).await?;
    if let Some(t) = &tariff {
        t.validate().map_err(WebError::Invalid)?;
    }
    let detail = match &tariff {
        Some(t) => format!(
            "site {id} tariff: {} {}/kWh, {} period(s), {}/kW demand, {}/month",
            t.currency,
            t.energy_price,
            t.periods.len(),
            t.demand_price,
            t.monthly_fixed
        ),
        None => format!("site {id} tariff removed"),
    };
    let now = crate::clock::unix_now();
    web.db_call(move |db| db.set_site_tariff(id, tariff.as_ref(), now))
        .await?;
    web.audit(p, "site.tariff", None, Some(id), detail).await
}

/// Sets a site's time zone (admins), with an audit entry; returns the canonical name.
pub async fn set_time_zone(
    web: &Web,
    p: &Principal,
    id: i64,
    name: &str,
) -> Result<String, WebError> {
    Web::require_admin(&p.user)?;
    web.site_for(&p.user, id).await?;
    let (_, name) = zone::parse(name).map_err(WebError::Invalid)?;
    let n = name.clone();
    web.db_call(move |db| db.set_site_time_zone(id, &n)).await?;
    web.audit(
        p,
        "site.time_zone",
        None,
        Some(id),
        format!("site {id} time zone {name}"),
    )
    .await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_and_are_bounded() {
        let tz = zone::load("Europe/Berlin");
        // 2026-03-30T10:00Z, a Monday.
        let now = 1_774_864_800;
        let q = |from: &str, to: &str, by: &str| EnergyQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            by: Some(by.into()),
        };
        let (by, p) = periods(&EnergyQuery::default(), &tz, now).unwrap();
        assert_eq!((by, p.len()), (By::Day, 30));
        assert_eq!(p[29].label, "2026-03-30");
        assert_eq!(p[28].end - p[28].start, 23 * 3600);
        let (_, p) = periods(&q("", "", "month"), &tz, now).unwrap();
        assert_eq!(
            (p.len(), p[0].label.as_str(), p[11].label.as_str()),
            (12, "2025-04", "2026-03")
        );
        let (_, p) = periods(&q("2026-01", "2026-04", "month"), &tz, now).unwrap();
        assert_eq!(
            p.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(),
            ["2026-01", "2026-02", "2026-03"]
        );
        let (_, p) = periods(&q("2026-03-28", "2026-03-30", "day"), &tz, now).unwrap();
        assert_eq!(p.len(), 2);
        for (f, t, by) in [
            ("2026-03-30", "2026-03-30", "day"),
            ("2020-01-01", "2026-01-01", "day"),
            ("2020-01", "2026-01", "month"),
            ("yesterday", "", "day"),
            ("2026-03", "", "day"),
            ("", "", "week"),
        ] {
            assert!(periods(&q(f, t, by), &tz, now).is_err(), "{f} {t} {by}");
        }
    }
}
