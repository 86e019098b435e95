//! Energy: a site's intervals loaded once (`Loaded`), the periods a request asks for, the
//! device day totals the dashboards show, and the admin changes of a site's tariff and time
//! zone. The pages (`web::site`, `web::device`, `web::dashboard`, `web::admin`) and the JSON API
//! (`api::energy`) call them; the arithmetic itself is `crate::energy` (pure).
//!
//! A device's energy ([`device_energy`]): a pool controller (the factory map, or no registry
//! entry in effect) is its pool meter (`EnergyStore::meter_data`), exactly as before; a device
//! on another channel map adds to that (its history from before the map) the meters of its map
//! ([`crate::energy::meters::plan`], each read with `WideStore::channel_meter_data`), its total
//! being the map's energy-role meter.

use crate::energy::meters::{self, Breakdown, Reading};
use crate::energy::tariff::Tariff;
use crate::energy::zone::{self, By, Period};
use crate::energy::{self, Figures, Intervals};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::storage::channels::DeviceChannels;
use crate::storage::energy::MeterData;
use crate::storage::wide_rollup::Versions;
use crate::storage::{self, SiteRecord, Storage};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most days in one request (`by=day`).
pub const MAX_DAYS: usize = 400;

/// Most months in one request (`by=month`).
pub const MAX_MONTHS: usize = 36;

/// The name of a pool controller's meter in the breakdown (the factory map's energy channel).
pub const POOL_METER: &str = "Energy";

/// One meter of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMeter {
    /// Its channel in the device's map (`None`: a pool controller's meter).
    pub channel: Option<u8>,
    /// Its name (the channel's).
    pub name: String,
    /// Its intervals (shared: a pool controller's one meter is its total).
    pub intervals: Arc<Intervals>,
}

/// A device's energy over a range: its total and its meters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceEnergy {
    /// What adds into the site's total (empty for a map without an energy or power role).
    pub total: Arc<Intervals>,
    /// Which of [`DeviceEnergy::meters`] is the total (`None`: the device adds nothing to its
    /// site's total; a pool controller's meter always is).
    pub total_meter: Option<usize>,
    /// Its meters.
    pub meters: Vec<DeviceMeter>,
    /// Which of them are parts of the site in the breakdown
    /// ([`meters::Plan::parts`]), by index.
    pub parts: Vec<usize>,
    /// Why channels were not counted, and whether the device adds nothing to the total.
    pub notes: Vec<String>,
}

/// What a map without an energy or power role is told on the pages.
pub const NO_TOTAL_NOTE: &str =
    "its channel map has no energy or power role: its meters are shown but add nothing to the site's total";

/// Most registry entries of one device read for its energy: a device whose map changed more
/// often than this counts the energy of its latest maps only.
pub const MAX_MAPS: usize = 64;

/// The channel maps device `id` has run up to configuration `applied`, newest first, each with
/// the configuration versions its records were logged under (`[its version, the next map's)`;
/// the one in effect has no end). The stretches on the factory (pool) map are left out: a pool
/// controller's records are the narrow ones.
pub fn maps_run(
    db: &dyn Storage,
    id: u32,
    applied: u32,
) -> storage::Result<Vec<(DeviceChannels, Versions)>> {
    let mut out = Vec::new();
    let (mut at, mut below) = (Some(applied), None);
    for _ in 0..MAX_MAPS {
        let Some(v) = at else { break };
        let Some(entry) = db.device_channels(id, Some(v))? else {
            break;
        };
        let versions = Versions {
            from: Some(entry.version),
            below,
        };
        // Each step goes to an entry of a lower version: this ends.
        (at, below) = (entry.version.checked_sub(1), Some(entry.version));
        if !crate::udp::split::is_factory(&entry) {
            out.push((entry, versions));
        }
    }
    Ok(out)
}

/// One map's energy over `[from, to)`: its meters (only if `with_meters`) and its total.
struct MapEnergy {
    plan: meters::Plan,
    meters: Vec<DeviceMeter>,
    total: Option<Intervals>,
}

/// Reads the meters of `entry`'s map from the records `versions` counts: a map's channel
/// numbers mean nothing in another map's records.
fn map_energy(
    db: &dyn Storage,
    entry: &DeviceChannels,
    versions: Versions,
    with_meters: bool,
    from: i64,
    to: i64,
) -> storage::Result<MapEnergy> {
    let plan = meters::plan(entry);
    // Each channel read once, though it may be a meter and the total's demand.
    let mut data: BTreeMap<u8, MeterData> = BTreeMap::new();
    let mut read = |index: u8| -> storage::Result<MeterData> {
        if let Some(d) = data.get(&index) {
            return Ok(d.clone());
        }
        if from >= to {
            return Ok(MeterData::default());
        }
        let d = db.channel_meter_data(entry.device_id, usize::from(index), versions, from, to)?;
        data.insert(index, d.clone());
        Ok(d)
    };
    let mut meters_read = Vec::new();
    for m in plan.meters.iter().filter(|_| with_meters) {
        let d = read(m.index)?;
        let intervals = match m.reading {
            Reading::Counter => energy::meter_intervals(Some((&d, m.factor)), None, from, to),
            Reading::Power => energy::meter_intervals(None, Some((&d, m.factor)), from, to),
        };
        meters_read.push(DeviceMeter {
            channel: Some(m.index),
            name: m.name.clone(),
            intervals: Arc::new(intervals),
        });
    }
    let total = match plan.total {
        Some(t) => {
            let m = &plan.meters[t];
            let own = read(m.index)?;
            let demand = match plan.demand {
                Some((index, f)) => Some((read(index)?, f)),
                None => None,
            };
            Some(match m.reading {
                Reading::Counter => energy::meter_intervals(
                    Some((&own, m.factor)),
                    demand.as_ref().map(|(d, f)| (d, *f)),
                    from,
                    to,
                ),
                Reading::Power => energy::meter_intervals(None, Some((&own, m.factor)), from, to),
            })
        }
        None => None,
    };
    Ok(MapEnergy {
        plan,
        meters: meters_read,
        total,
    })
}

/// One device's energy over `[from, to)` (multiples of 15 minutes) for a device that confirmed
/// configuration `applied` (see the module documentation). Its total is its pool meter's
/// (records from before it had a channel map) plus the total of every channel map it has run,
/// each read from its own records; its meters are those of the map in effect.
pub fn device_energy(
    db: &dyn Storage,
    id: u32,
    applied: u32,
    from: i64,
    to: i64,
) -> storage::Result<DeviceEnergy> {
    // Lent, not copied: the storage may finish a remembered walk in place.
    let mut total = Intervals::new();
    db.with_meter_data(id, from, to, &mut |narrow| {
        total = energy::device_intervals(narrow, from, to)
    })?;
    let maps = maps_run(db, id, applied)?;
    // The map in effect is the newest, without an end; the others only add their totals.
    let in_effect = maps.first().filter(|(_, v)| v.below.is_none());
    for (entry, versions) in maps.iter().skip(usize::from(in_effect.is_some())) {
        if let Some(t) = map_energy(db, entry, *versions, false, from, to)?.total {
            energy::add(&mut total, &t);
        }
    }
    let Some((entry, versions)) = in_effect else {
        // The meter is the total: one map shared, not a copy of a year of intervals each.
        let total = Arc::new(total);
        return Ok(DeviceEnergy {
            meters: vec![DeviceMeter {
                channel: None,
                name: POOL_METER.into(),
                intervals: Arc::clone(&total),
            }],
            total,
            total_meter: Some(0),
            parts: vec![0],
            notes: Vec::new(),
        });
    };
    let now = map_energy(db, entry, *versions, true, from, to)?;
    let mut notes = now.plan.notes.clone();
    match &now.total {
        Some(t) => energy::add(&mut total, t),
        None if !now.plan.meters.is_empty() => notes.push(NO_TOTAL_NOTE.into()),
        None => {}
    }
    Ok(DeviceEnergy {
        total: Arc::new(total),
        total_meter: now.plan.total,
        parts: now.plan.parts(),
        meters: now.meters,
        notes,
    })
}

/// A part of the site in the breakdown: one meter of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteMeter {
    /// The device.
    pub device: u32,
    /// Its name.
    pub device_name: String,
    /// The meter's channel (`None`: a pool controller's meter).
    pub channel: Option<u8>,
    /// The meter's name.
    pub name: String,
    /// Whether its device adds into the site's total (else its energy is outside the total).
    pub in_total: bool,
    /// Its intervals (a pool controller's are its total's, shared).
    pub intervals: Arc<Intervals>,
}

/// A site's intervals, loaded once and summarized as often as needed.
pub struct Loaded {
    /// The site.
    pub site: SiteRecord,
    /// Its zone.
    pub tz: TimeZone,
    /// Its tariff.
    pub tariff: Option<Tariff>,
    /// Each device's intervals (its total), by id.
    pub devices: Vec<(u32, Arc<Intervals>)>,
    /// The site's (the devices' summed).
    pub total: Intervals,
    /// Time of the site's first record (any device, ever), if any: the fixed monthly charge
    /// starts with its month.
    pub first_data: Option<i64>,
    /// The parts of the breakdown by meter, device by device.
    pub meters: Vec<SiteMeter>,
    /// What the pages say about a device's meters: `(device, its name, note)`.
    pub notes: Vec<(u32, String, String)>,
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

    /// [`Loaded::device_figures`] of every device, in order, computed on up to
    /// [`LOAD_THREADS`] threads (a site's year: 100 walks over 35,040 intervals each).
    pub fn all_device_figures(&self, by: By, periods: &[Period]) -> Vec<Vec<Figures>> {
        in_parallel(self.devices.len(), |i| self.device_figures(i, by, periods))
    }

    /// The breakdown by meter over `period` (one period; [`span`] makes one of several), the
    /// parts' figures computed on up to [`LOAD_THREADS`] threads: the same as
    /// [`meters::breakdown`] gives.
    pub fn breakdown(&self, period: &Period) -> Breakdown {
        let figures =
            |i: &Intervals| meters::part_figures(i, &self.tz, period, self.tariff.as_ref());
        let parts = in_parallel(self.meters.len(), |k| figures(&self.meters[k].intervals));
        meters::breakdown_of(figures(&self.total), parts)
    }
}

/// `f(0)`, …, `f(n - 1)` in order, computed in contiguous runs on up to [`LOAD_THREADS`]
/// threads (at most the machine's parallelism); each value is what `f` gives on one thread.
fn in_parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, LOAD_THREADS)
        .min(n.max(1));
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    let per_thread = n.div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..n)
            .step_by(per_thread)
            .map(|a| s.spawn(move || (a..(a + per_thread).min(n)).map(f).collect::<Vec<T>>()))
            .collect();
        let mut out = Vec::with_capacity(n);
        for run in runs {
            match run.join() {
                Ok(v) => out.extend(v),
                // `f` panicked on that thread: carry the panic on here, as the loop would.
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        out
    })
}

/// One period from the first of `periods` to the end of the last, labelled `first/last` (or
/// the one label): the span a breakdown covers.
pub fn span(periods: &[Period]) -> Option<Period> {
    let (first, last) = (periods.first()?, periods.last()?);
    Some(Period {
        label: if periods.len() == 1 {
            first.label.clone()
        } else {
            format!("{}/{}", first.label, last.label)
        },
        date: first.date,
        start: first.start,
        end: last.end,
    })
}

/// Reads everything a site's figures over `[from, to)` need: one meter query per device (and
/// one per meter channel of a device on a channel map). The devices are read on up to
/// [`LOAD_THREADS`] threads (each read is a database query and a decode, independent of the
/// others) and added up in the order of their ids, so the sums are those of one thread.
pub fn load(db: &dyn Storage, site: SiteRecord, from: i64, to: i64) -> storage::Result<Loaded> {
    let tz = zone::load(&site.time_zone);
    let tariff = db.site_tariff(site.id)?;
    let (from, to) = (energy::floor(from), energy::ceil(to));
    let ids = db.site_device_ids(site.id)?;
    // Where the site's data begins: index seeks, asked once for all its devices.
    let first_data = db.earliest_record_time(&ids)?;
    let in_order = in_parallel(ids.len(), |k| load_device(db, ids[k], from, to))
        .into_iter()
        .collect::<storage::Result<Vec<_>>>()?;
    let mut devices = Vec::new();
    let mut total = energy::SiteSum::new(from, to);
    let mut site_meters = Vec::new();
    let mut notes = Vec::new();
    for d in in_order {
        let LoadedDevice {
            id,
            name,
            energy: mut e,
        } = d;
        total.add(&e.total);
        for n in &e.notes {
            notes.push((id, name.clone(), n.clone()));
        }
        for &k in &e.parts {
            let m = &mut e.meters[k];
            site_meters.push(SiteMeter {
                device: id,
                device_name: name.clone(),
                channel: m.channel,
                name: m.name.clone(),
                in_total: e.total_meter.is_some(),
                // Each part is listed once: its intervals move instead of being copied.
                intervals: std::mem::take(&mut m.intervals),
            });
        }
        devices.push((id, e.total));
    }
    Ok(Loaded {
        site,
        tz,
        tariff,
        devices,
        total: total.into_intervals(),
        first_data,
        meters: site_meters,
        notes,
    })
}

/// Most threads [`load`] reads a site's devices on.
pub const LOAD_THREADS: usize = 4;

/// What [`load`] reads of one device.
struct LoadedDevice {
    id: u32,
    name: String,
    energy: DeviceEnergy,
}

fn load_device(db: &dyn Storage, id: u32, from: i64, to: i64) -> storage::Result<LoadedDevice> {
    let device = db.device(id)?;
    let energy = device_energy(db, id, device.config_applied, from, to)?;
    Ok(LoadedDevice {
        id,
        name: device.name,
        energy,
    })
}

/// Energy per local day of one device for the last `days` days up to `now`, in the zone
/// `time_zone` (its site's; UTC for a device without a site): the device page's chart. The
/// device's total ([`device_energy`]); a map without a total has none: no periods (no value,
/// rather than 0 kWh).
pub fn device_days(
    db: &dyn Storage,
    device: u32,
    time_zone: &str,
    days: usize,
    now: i64,
) -> storage::Result<Vec<Figures>> {
    let (periods, tz, e) = device_days_energy(db, device, time_zone, days, now)?;
    if e.total_meter.is_none() {
        return Ok(Vec::new());
    }
    Ok(energy::summarize(&e.total, &tz, By::Day, &periods, None))
}

/// [`device_days`] with the device's meters: the periods, the zone and the device's energy
/// over them.
pub fn device_days_energy(
    db: &dyn Storage,
    device: u32,
    time_zone: &str,
    days: usize,
    now: i64,
) -> storage::Result<(Vec<Period>, TimeZone, DeviceEnergy)> {
    let tz = zone::load(time_zone);
    let today = zone::local_date(&tz, now);
    let first = today
        .checked_sub(jiff::Span::new().days(days.saturating_sub(1) as i64))
        .unwrap_or(today);
    let periods = zone::periods(&tz, By::Day, first, days);
    let (from, to) = (periods[0].start, periods[periods.len() - 1].end);
    let applied = db.device(device)?.config_applied;
    let e = device_energy(db, device, applied, energy::floor(from), energy::ceil(to))?;
    Ok((periods, tz, e))
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
    /// CSV only: `meter` for the breakdown by meter instead of the site's and devices' lines.
    pub breakdown: Option<String>,
}

impl EnergyQuery {
    /// Whether the CSV asked for is the breakdown by meter; anything but blank or `meter` is
    /// refused.
    pub fn breakdown(&self) -> Result<bool, WebError> {
        match self.breakdown.as_deref().map(str::trim) {
            None | Some("") => Ok(false),
            Some("meter") => Ok(true),
            Some(_) => Err(WebError::Invalid("breakdown must be meter".into())),
        }
    }
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

    /// The values come back in order, each computed once, whatever the count and the
    /// machine's threads.
    #[test]
    fn in_parallel_keeps_the_order_of_a_loop() {
        for n in [0usize, 1, 2, 3, 7, 100, 101] {
            let calls = std::sync::atomic::AtomicUsize::new(0);
            let got = in_parallel(n, |i| {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i * i + 1
            });
            assert_eq!(got, (0..n).map(|i| i * i + 1).collect::<Vec<_>>());
            assert_eq!(calls.into_inner(), n);
        }
    }

    #[test]
    fn ranges_default_and_are_bounded() {
        let tz = zone::load("Europe/Berlin");
        // 2026-03-30T10:00Z, a Monday.
        let now = 1_774_864_800;
        let q = |from: &str, to: &str, by: &str| EnergyQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            by: Some(by.into()),
            breakdown: None,
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
