//! Energy and cost: kWh per local day and month, peak 15-minute demand, and cost from a tariff,
//! for one device or a whole site. Pure functions over what [`crate::storage::energy`] returns
//! (readings already reduced to 15-minute intervals by the database); no I/O, no clock.
//!
//! The pipeline, per request:
//! 1. per device, [`device_intervals`]: energy and demand of every clock-aligned 15-minute
//!    interval (meter steps as the storage attributed them, gaps spread evenly);
//! 2. per site, [`SiteSum`] (or [`add`]): the devices' intervals summed (demand is the site's,
//!    at the same time);
//! 3. [`summarize`]: the intervals grouped into local days or months of the site's time zone
//!    ([`zone::periods`]: a day is 23 or 25 hours long when the clocks change), each with its
//!    kWh, peak demand and, with a [`tariff::Tariff`], its cost.
//!
//! Definitions:
//! * **Energy** comes from the meter counter (the `energy_wh` channel); a device that never
//!   reports a counter has its energy estimated from its mean power (`power_w` × 15 min).
//! * **Demand** of an interval is its mean power: the mean of the `power_w` records in it (each
//!   is the mean over one logging interval), or, without a power channel, the interval's energy
//!   over 15 minutes — the utility definition. A site's demand is the sum of its devices'.
//! * **Peak demand** of a day or month is the highest interval demand in it.
//! * **Cost** of a day is its energy at the price of each interval's local time (time-of-use, else
//!   flat). A month adds the demand charge (price per kW × the month's peak) and the fixed
//!   monthly charge — the latter only from the month of the site's first record on
//!   ([`fixed_from`]): a site is not billed for months before it was metered. An interval
//!   belongs to the local period its start lies in.
//! * A **device's cost** is its energy cost alone ([`energy_cost_only`]): the demand and fixed
//!   charges are the site's (one meter, one bill) and are not split between its devices.

mod intervals;
pub mod meters;
pub mod tariff;
pub mod zone;

use crate::storage::energy::{MeterData, INTERVAL_S};
pub use intervals::Intervals;
use jiff::tz::TimeZone;
use tariff::Tariff;
use zone::{By, Period};

/// Energy and demand of one 15-minute interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Interval {
    /// Energy, Wh.
    pub wh: f64,
    /// Mean power, W.
    pub demand_w: f64,
}

/// Start of the interval holding `t`.
pub fn floor(t: i64) -> i64 {
    t.div_euclid(INTERVAL_S) * INTERVAL_S
}

/// First interval start at or after `t`.
pub fn ceil(t: i64) -> i64 {
    floor(t + INTERVAL_S - 1)
}

/// One device's intervals in `[from, to)` from its meter data (see the module documentation).
pub fn device_intervals(data: &MeterData, from: i64, to: i64) -> Intervals {
    meter_intervals(Some((data, 1.0)), Some((data, 1.0)), from, to)
}

/// The intervals in `[from, to)` of a meter read from two sources, each with the factor that
/// turns its raw values into Wh and W: `counter`'s steps (`wh` and spans) are the energy and
/// `power`'s means (`power_w`) the demand, as [`device_intervals`] reads the pool meter (which
/// is both, factor 1). Without counter steps the energy is estimated from the mean power
/// (`power_w` × 15 min); without power the demand is the interval's energy over 15 minutes.
/// A counter's `power_w` (the mean of its readings) and a power channel's steps mean nothing
/// and are not read.
pub fn meter_intervals(
    counter: Option<(&MeterData, f64)>,
    power: Option<(&MeterData, f64)>,
    from: i64,
    to: i64,
) -> Intervals {
    let in_range = |i: &&crate::storage::energy::MeterInterval| i.start >= from && i.start < to;
    let has_counter = counter
        .is_some_and(|(d, _)| !d.spans.is_empty() || d.intervals.iter().any(|i| i.wh.is_some()));
    // One slot per interval of the range (a year is 35,040): each interval is found by an
    // index instead of a tree search.
    let mut out = Intervals::over(from, to);
    if let Some((data, wh_per_unit)) = counter {
        for i in data.intervals.iter().filter(in_range) {
            let mut e = Interval::default();
            if let (true, Some(wh)) = (has_counter, i.wh) {
                e.wh += wh as f64 * wh_per_unit;
            }
            // As a map built from the list would: a start listed twice keeps its last entry.
            *out.entry(i.start) = e;
        }
        for s in &data.spans {
            let (a, b) = (s.from.max(from), s.to.min(to));
            if a >= b || s.to <= s.from {
                continue;
            }
            let per_s = s.wh as f64 * wh_per_unit / (s.to - s.from) as f64;
            let mut k = floor(a);
            while k < b {
                let overlap = (k + INTERVAL_S).min(b) - k.max(a);
                out.entry(k).wh += per_s * overlap as f64;
                k += INTERVAL_S;
            }
        }
    }
    // The mean power by start, ordered (the storage's order), searched by start below.
    let mut demand: Vec<(i64, f64)> = Vec::new();
    if let Some((data, w_per_unit)) = power {
        // Reserved once: grown by doubling, a year's list was copied about 17 times.
        demand.reserve(data.intervals.len());
        for i in &data.intervals {
            if let Some(p) = i.power_w {
                demand.push((i.start, p * w_per_unit));
            }
            if !in_range(&i) {
                continue;
            }
            let e = out.entry(i.start);
            if let (false, Some(p)) = (has_counter, i.power_w) {
                e.wh += p * w_per_unit * INTERVAL_S as f64 / 3600.0;
            }
        }
    }
    demand.sort_by_key(|d| d.0);
    // Both ordered by start: one walk instead of a search per interval.
    let mut next = demand.iter().peekable();
    out.for_each_mut(|start, i| {
        while next.next_if(|d| d.0 < start).is_some() {}
        i.demand_w = match next.peek() {
            Some(&&(s, w)) if s == start => w,
            _ => i.wh * 3600.0 / INTERVAL_S as f64,
        };
    });
    out
}

/// Adds `device`'s intervals into `site`'s.
pub fn add(site: &mut Intervals, device: &Intervals) {
    // Each sum is `site + device` (`0 + device` where the site had none), as an in-place
    // addition into a map gives; on the same slots, a walk over the device's slots.
    site.add(device);
}

/// A site's intervals summed device by device over a range known in advance: one slot per
/// interval of the range, so adding a device is a walk over its intervals with an array index
/// each, instead of the merge and rebuild of a map that [`add`] does (a site of 100 devices
/// adds 3.5 million intervals a year). The sums are those of [`add`] called in the same order,
/// bit for bit: a slot starts empty (no value, not zero) and its first addition is `0 + x`,
/// as [`add`]'s is. Intervals outside the range (none come from [`meter_intervals`] asked for
/// the same range) are kept in a map beside the slots.
pub struct SiteSum(Intervals);

impl SiteSum {
    /// An empty sum over `[from, to)` (rounded out to whole intervals).
    pub fn new(from: i64, to: i64) -> SiteSum {
        SiteSum(Intervals::over(from, to))
    }

    /// Adds `device`'s intervals.
    pub fn add(&mut self, device: &Intervals) {
        self.0.add(device);
    }

    /// The sum as intervals.
    pub fn into_intervals(self) -> Intervals {
        self.0
    }
}

/// The cost of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Energy at the price of each interval.
    pub energy: f64,
    /// Demand charge (months only).
    pub demand: f64,
    /// Fixed charge (months only).
    pub fixed: f64,
    /// The sum.
    pub total: f64,
}

/// Figures of one local day or month.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// The period.
    pub period: Period,
    /// Energy, kWh.
    pub kwh: f64,
    /// Highest 15-minute demand, kW (0 without data).
    pub peak_kw: f64,
    /// Start of the interval with that demand.
    pub peak_at: Option<i64>,
    /// Intervals with data.
    pub intervals: usize,
    /// With a tariff.
    pub cost: Option<Cost>,
}

/// Groups `intervals` into `periods` (from [`zone::periods`]) and prices them with `tariff`.
pub fn summarize(
    intervals: &Intervals,
    tz: &TimeZone,
    by: By,
    periods: &[Period],
    tariff: Option<&Tariff>,
) -> Vec<Figures> {
    let prices = tariff.map(Tariff::week_table);
    let mut clock = zone::LocalClock::new(tz);
    periods
        .iter()
        .map(|p| {
            let mut wh = 0.0;
            let mut energy_cost = 0.0;
            let mut peak: Option<(i64, f64)> = None;
            let mut n = 0;
            intervals.each_in(p.start..p.end, |start, i| {
                n += 1;
                wh += i.wh;
                if peak.is_none_or(|(_, d)| i.demand_w > d) {
                    peak = Some((start, i.demand_w));
                }
                if let Some(table) = &prices {
                    let (wd, minute) = clock.week_minute(start);
                    let q = usize::from(wd) * 96 + usize::from(minute / 15);
                    energy_cost += i.wh / 1000.0 * table.get(q).copied().unwrap_or(0.0);
                }
            });
            let peak_kw = peak.map_or(0.0, |p| p.1 / 1000.0);
            let cost = tariff.map(|t| {
                let (demand, fixed) = match by {
                    By::Day => (0.0, 0.0),
                    By::Month => (t.demand_price * peak_kw, t.monthly_fixed),
                };
                Cost {
                    energy: energy_cost,
                    demand,
                    fixed,
                    total: energy_cost + demand + fixed,
                }
            });
            Figures {
                period: p.clone(),
                kwh: wh / 1000.0,
                peak_kw,
                peak_at: peak.map(|p| p.0),
                intervals: n,
                cost,
            }
        })
        .collect()
}

/// Drops the fixed monthly charge from every period that ended at or before `first_data` (the
/// site's first record), or from all of them when the site has no data: no bill for months
/// before the site was metered.
pub fn fixed_from(list: &mut [Figures], first_data: Option<i64>) {
    for f in list {
        if first_data.is_none_or(|t| f.period.end <= t) {
            if let Some(c) = &mut f.cost {
                c.total -= c.fixed;
                c.fixed = 0.0;
            }
        }
    }
}

/// Keeps only the energy part of each period's cost: a device's share of the site's bill
/// without the site's demand and fixed charges.
pub fn energy_cost_only(list: &mut [Figures]) {
    for f in list {
        if let Some(c) = &mut f.cost {
            *c = Cost {
                energy: c.energy,
                total: c.energy,
                ..Cost::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::energy::{MeterInterval, MeterSpan};
    use jiff::civil::date;
    use std::collections::BTreeMap;
    use tariff::TouPeriod;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn iv(start: i64, wh: Option<i64>, power_w: Option<f64>) -> MeterInterval {
        MeterInterval { start, wh, power_w }
    }

    /// [`meter_intervals`] as it was before its slots: one map entry per interval, the
    /// reference the slots are checked against.
    fn meter_intervals_by_map(
        counter: Option<(&MeterData, f64)>,
        power: Option<(&MeterData, f64)>,
        from: i64,
        to: i64,
    ) -> BTreeMap<i64, Interval> {
        let in_range = |i: &&crate::storage::energy::MeterInterval| i.start >= from && i.start < to;
        let has_counter = counter.is_some_and(|(d, _)| {
            !d.spans.is_empty() || d.intervals.iter().any(|i| i.wh.is_some())
        });
        let mut out = BTreeMap::new();
        if let Some((data, wh_per_unit)) = counter {
            // The storage gives the intervals ordered by start, each once: the map is built in one
            // pass from them (a bulk build) rather than by one tree insertion each.
            out = data
                .intervals
                .iter()
                .filter(in_range)
                .map(|i| {
                    let mut e = Interval::default();
                    if let (true, Some(wh)) = (has_counter, i.wh) {
                        e.wh += wh as f64 * wh_per_unit;
                    }
                    (i.start, e)
                })
                .collect();
            for s in &data.spans {
                let (a, b) = (s.from.max(from), s.to.min(to));
                if a >= b || s.to <= s.from {
                    continue;
                }
                let per_s = s.wh as f64 * wh_per_unit / (s.to - s.from) as f64;
                let mut k = floor(a);
                while k < b {
                    let overlap = (k + INTERVAL_S).min(b) - k.max(a);
                    out.entry(k).or_default().wh += per_s * overlap as f64;
                    k += INTERVAL_S;
                }
            }
        }
        // The mean power by start, ordered (the storage's order), searched by start below.
        let mut demand: Vec<(i64, f64)> = Vec::new();
        if let Some((data, w_per_unit)) = power {
            for i in &data.intervals {
                if let Some(p) = i.power_w {
                    demand.push((i.start, p * w_per_unit));
                }
                if !in_range(&i) {
                    continue;
                }
                let e = out.entry(i.start).or_default();
                if let (false, Some(p)) = (has_counter, i.power_w) {
                    e.wh += p * w_per_unit * INTERVAL_S as f64 / 3600.0;
                }
            }
        }
        demand.sort_by_key(|d| d.0);
        // Both ordered by start: one walk instead of a search per interval.
        let mut next = demand.iter().peekable();
        for (start, i) in out.iter_mut() {
            while next.next_if(|d| d.0 < *start).is_some() {}
            i.demand_w = match next.peek() {
                Some(&&(s, w)) if s == *start => w,
                _ => i.wh * 3600.0 / INTERVAL_S as f64,
            };
        }
        out
    }

    proptest::proptest! {
        /// [`add`] gives what one tree update per interval gave, bit for bit, on the same
        /// slots (a site and its device over one range) or not.
        #[test]
        fn adding_equals_adding_one_by_one_into_a_map(
            a in proptest::collection::btree_map(0i64..200, (-1e6f64..1e6, 0f64..1e5), 0..60),
            b in proptest::collection::btree_map(0i64..200, (-1e6f64..1e6, 0f64..1e5), 0..60),
            slots in 0u8..3,
        ) {
            let pairs = |m: &BTreeMap<i64, (f64, f64)>| -> Vec<(i64, Interval)> {
                m.iter()
                    .map(|(k, &(wh, demand_w))| (k * INTERVAL_S, Interval { wh, demand_w }))
                    .collect()
            };
            let dense = |m: &BTreeMap<i64, (f64, f64)>, slotted: bool| -> Intervals {
                let mut out = if slotted {
                    Intervals::over(0, 200 * INTERVAL_S)
                } else {
                    Intervals::new()
                };
                for (k, i) in pairs(m) {
                    out.insert(k, i);
                }
                out
            };
            let mut expected: BTreeMap<i64, Interval> = pairs(&a).into_iter().collect();
            for (k, i) in pairs(&b) {
                let s = expected.entry(k).or_default();
                s.wh += i.wh;
                s.demand_w += i.demand_w;
            }
            let mut got = dense(&a, slots != 0);
            add(&mut got, &dense(&b, slots == 1));
            proptest::prop_assert_eq!(bits(&got), map_bits(&expected));
        }
    }

    /// Random meter data: intervals mostly on the grid (some off it, some twice), spans of
    /// any length, some reversed.
    fn meter_data() -> impl proptest::strategy::Strategy<Value = MeterData> {
        use proptest::prelude::*;
        (
            proptest::collection::vec(
                (
                    -10i64..120,
                    prop::bool::weighted(0.05),
                    prop::option::of(-50i64..5000),
                    prop::option::of(-1e4f64..1e5),
                ),
                0..60,
            ),
            proptest::collection::vec((-20_000i64..120_000, -900i64..20_000, 1i64..9000), 0..4),
            any::<bool>(),
        )
            .prop_map(|(mut ivs, spans, sorted)| {
                if sorted {
                    ivs.sort_by_key(|v| v.0);
                }
                MeterData {
                    intervals: ivs
                        .into_iter()
                        .map(|(k, odd, wh, power_w)| MeterInterval {
                            start: k * INTERVAL_S + i64::from(odd) * 300,
                            wh,
                            power_w,
                        })
                        .collect(),
                    spans: spans
                        .into_iter()
                        .map(|(from, len, wh)| MeterSpan {
                            from,
                            to: from + len,
                            wh,
                        })
                        .collect(),
                }
            })
    }

    /// The bits of every figure, to compare floats exactly.
    fn bits(m: &Intervals) -> Vec<(i64, u64, u64)> {
        m.iter()
            .map(|(k, i)| (k, i.wh.to_bits(), i.demand_w.to_bits()))
            .collect()
    }

    fn map_bits(m: &BTreeMap<i64, Interval>) -> Vec<(i64, u64, u64)> {
        m.iter()
            .map(|(&k, i)| (k, i.wh.to_bits(), i.demand_w.to_bits()))
            .collect()
    }

    proptest::proptest! {
        /// The slots of [`meter_intervals`] give what one map entry per interval gave, bit for
        /// bit, for every combination of counter and power sources and any range.
        #[test]
        fn meter_intervals_by_slots_equal_those_by_map(
            a in meter_data(),
            b in meter_data(),
            which in 0u8..4,
            same in proptest::bool::ANY,
            fa in 0.001f64..1000.0,
            fb in 0.001f64..1000.0,
            from in -30i64..100,
            len in -3i64..150,
            odd_range in proptest::bool::weighted(0.1),
        ) {
            let from = from * INTERVAL_S + i64::from(odd_range) * 450;
            let to = from + len * INTERVAL_S;
            let power_data = if same { &a } else { &b };
            let counter = (which & 1 != 0).then_some((&a, fa));
            let power = (which & 2 != 0).then_some((power_data, fb));
            proptest::prop_assert_eq!(
                bits(&meter_intervals(counter, power, from, to)),
                map_bits(&meter_intervals_by_map(counter, power, from, to))
            );
        }

        /// A [`SiteSum`] gives what [`add`] gives device after device, bit for bit, with
        /// intervals inside, outside and off the grid of its range, and empty devices.
        #[test]
        fn a_site_sum_equals_adding_device_after_device(
            devices in proptest::collection::vec(
                proptest::collection::btree_map(
                    (-20i64..220, proptest::bool::weighted(0.05)),
                    (-1e6f64..1e6, 0f64..1e5),
                    0..80,
                ),
                0..6,
            ),
            from in -5i64..50,
            len in 0i64..200,
        ) {
            let (from, to) = (from * INTERVAL_S, (from + len) * INTERVAL_S);
            let maps: Vec<Intervals> = devices
                .iter()
                .map(|m| {
                    m.iter()
                        .map(|(&(k, odd), &(wh, demand_w))| {
                            (k * INTERVAL_S + i64::from(odd) * 7, Interval { wh, demand_w })
                        })
                        .collect()
                })
                .collect();
            let mut expected = Intervals::new();
            let mut sum = SiteSum::new(from, to);
            for m in &maps {
                add(&mut expected, m);
                sum.add(m);
            }
            let got = sum.into_intervals();
            proptest::prop_assert_eq!(bits(&got), bits(&expected));
        }
    }

    /// 1 kWh in every hour of the local day (250 Wh per interval, 1 kW demand): 23 kWh on the
    /// spring-forward day, 25 kWh on the fall-back day, 24 otherwise.
    #[test]
    fn days_across_daylight_saving_changes() {
        let tz = zone::load("Europe/Berlin");
        let days = zone::periods(&tz, By::Day, date(2026, 3, 28), 3);
        let fall = zone::periods(&tz, By::Day, date(2026, 10, 25), 1);
        let mut data = MeterData::default();
        for p in days.iter().chain(&fall) {
            let mut t = p.start;
            while t < p.end {
                data.intervals.push(iv(t, Some(250), None));
                t += INTERVAL_S;
            }
        }
        let all = device_intervals(&data, days[0].start, fall[0].end);
        let f = summarize(&all, &tz, By::Day, &days, None);
        let kwh: Vec<f64> = f.iter().map(|f| f.kwh).collect();
        assert_eq!(kwh, vec![24.0, 23.0, 24.0]);
        assert_eq!(f[1].period.label, "2026-03-29");
        assert!(close(f[1].peak_kw, 1.0));
        let f = summarize(&all, &tz, By::Day, &fall, None);
        assert_eq!(f[0].kwh, 25.0);
        assert_eq!(f[0].intervals, 100);
        // The month of March: 31 days, the one 23-hour day included, only 3 days with data.
        let march = zone::periods(&tz, By::Month, date(2026, 3, 1), 1);
        assert_eq!(summarize(&all, &tz, By::Month, &march, None)[0].kwh, 71.0);
    }

    /// Counter resets and gaps, as storage reports them, and the power fallback.
    #[test]
    fn gaps_are_spread_and_power_estimates_without_a_counter() {
        let t0 = 1_800_000_000 - 1_800_000_000 % 86_400; // a UTC midnight
                                                         // 600 Wh over a 1.5 h gap starting 30 minutes into the day: 100 Wh per 15 minutes.
        let data = MeterData {
            intervals: vec![iv(t0, Some(40), Some(200.0))],
            spans: vec![MeterSpan {
                from: t0 + 1800,
                to: t0 + 1800 + 5400,
                wh: 600,
            }],
        };
        let i = device_intervals(&data, t0, t0 + 86_400);
        assert_eq!(i.len(), 7);
        assert!(close(i[&t0].wh, 40.0) && close(i[&t0].demand_w, 200.0));
        assert!(close(i[&(t0 + 1800)].wh, 100.0));
        assert!(
            close(i[&(t0 + 1800)].demand_w, 400.0),
            "energy / 15 min without power"
        );
        // Asked for a range that cuts the gap: only the part inside counts.
        let cut = device_intervals(&data, t0 + 3600, t0 + 86_400);
        assert!(close(cut.values().map(|i| i.wh).sum::<f64>(), 400.0));
        // A span not aligned to the grid splits by seconds.
        let odd = MeterData {
            intervals: vec![],
            spans: vec![MeterSpan {
                from: t0 + 600,
                to: t0 + 1500,
                wh: 90,
            }],
        };
        let i = device_intervals(&odd, t0, t0 + 3600);
        assert!(close(i[&t0].wh, 30.0) && close(i[&(t0 + 900)].wh, 60.0));
        // No counter at all: 2 kW for an interval is 0.5 kWh.
        let power_only = MeterData {
            intervals: vec![iv(t0, None, Some(2000.0)), iv(t0 + 900, None, Some(1000.0))],
            spans: vec![],
        };
        let i = device_intervals(&power_only, t0, t0 + 3600);
        assert!(close(i[&t0].wh, 500.0) && close(i[&(t0 + 900)].wh, 250.0));
    }

    /// Two devices: the site's peak is the highest sum at one time, not the sum of the devices'
    /// peaks. Flat + time-of-use (a night rate spanning midnight) + demand + fixed charges,
    /// all hand-computed.
    #[test]
    fn site_peak_and_costs() {
        let tz = zone::load("UTC");
        // 2026-06-01 is a Monday.
        let day1 = zone::day_start(&tz, date(2026, 6, 1));
        let h = 3600;
        // Device A: 1 kWh in the interval at 23:00 Monday (4 kW), 0.5 kWh at 01:00 Tuesday.
        // Device B: 2 kW mean power at 23:00 Monday and 3 kW at 12:00 Tuesday, 0.75 kWh each.
        let a = MeterData {
            intervals: vec![
                iv(day1 + 23 * h, Some(1000), None),
                iv(day1 + 25 * h, Some(500), None),
            ],
            spans: vec![],
        };
        let b = MeterData {
            intervals: vec![
                iv(day1 + 23 * h, Some(750), Some(2000.0)),
                iv(day1 + 36 * h, Some(750), Some(3000.0)),
            ],
            spans: vec![],
        };
        let (from, to) = (day1, day1 + 3 * 86_400);
        let mut site = Intervals::new();
        add(&mut site, &device_intervals(&a, from, to));
        add(&mut site, &device_intervals(&b, from, to));
        let tariff = Tariff {
            currency: "EUR".into(),
            energy_price: 0.30,
            periods: vec![TouPeriod {
                name: "night".into(),
                days: "mon-fri".into(),
                start: "22:00".into(),
                end: "06:00".into(),
                price: 0.10,
            }],
            demand_price: 10.0,
            monthly_fixed: 5.0,
        };
        let days = zone::periods(&tz, By::Day, date(2026, 6, 1), 2);
        let f = summarize(&site, &tz, By::Day, &days, Some(&tariff));
        // Monday: 1.75 kWh at 23:00 (night, 0.10) = 0.175; peak 4 + 2 = 6 kW at 23:00.
        assert!(close(f[0].kwh, 1.75) && close(f[0].peak_kw, 6.0));
        assert_eq!(f[0].peak_at, Some(day1 + 23 * h));
        assert!(close(f[0].cost.unwrap().total, 0.175));
        // Tuesday: 0.5 kWh at 01:00 (night after Monday, 0.10) + 0.75 kWh at 12:00 (0.30)
        // = 0.05 + 0.225 = 0.275; peak 3 kW at 12:00 (device A's 01:00 was 2 kW).
        assert!(close(f[1].kwh, 1.25) && close(f[1].peak_kw, 3.0));
        assert!(close(f[1].cost.unwrap().total, 0.275));
        assert_eq!(
            f[1].cost.unwrap().demand,
            0.0,
            "demand is charged per month"
        );
        // June: 3 kWh, energy 0.45, demand 10 × 6 kW = 60, fixed 5: 65.45.
        let june = zone::periods(&tz, By::Month, date(2026, 6, 1), 1);
        let m = summarize(&site, &tz, By::Month, &june, Some(&tariff))[0].clone();
        let c = m.cost.unwrap();
        assert!(close(m.kwh, 3.0) && close(m.peak_kw, 6.0));
        assert!(close(c.energy, 0.45) && close(c.demand, 60.0) && close(c.fixed, 5.0));
        assert!(close(c.total, 65.45));
        // No data: zero energy, no peak, still the fixed charge.
        let july = zone::periods(&tz, By::Month, date(2026, 7, 1), 1);
        let m = summarize(&site, &tz, By::Month, &july, Some(&tariff))[0].clone();
        assert_eq!((m.kwh, m.peak_at, m.cost.unwrap().total), (0.0, None, 5.0));
    }

    /// Time-of-use prices follow local wall time across the spring-forward night: in
    /// Europe/Berlin on Sunday 2026-03-29 the hour 02:00-03:00 does not exist.
    #[test]
    fn time_of_use_in_local_time_across_dst() {
        let tz = zone::load("Europe/Berlin");
        let day = zone::periods(&tz, By::Day, date(2026, 3, 29), 1).remove(0);
        // 100 Wh in every interval of the 23-hour day: 92 intervals, 9.2 kWh.
        let data = MeterData {
            intervals: (0..92)
                .map(|k| iv(day.start + k * INTERVAL_S, Some(100), None))
                .collect(),
            spans: vec![],
        };
        let i = device_intervals(&data, day.start, day.end);
        // "Cheap" Sunday 00:00-06:00 local: 00:00-02:00 and 03:00-06:00 = 5 real hours =
        // 20 intervals = 2 kWh at 0.1; the other 18 hours = 7.2 kWh at 0.3. 0.2 + 2.16 = 2.36.
        let t = Tariff {
            periods: vec![TouPeriod {
                name: "cheap".into(),
                days: "sun".into(),
                start: "00:00".into(),
                end: "06:00".into(),
                price: 0.1,
            }],
            ..Tariff::flat("EUR", 0.3)
        };
        let f = summarize(&i, &tz, By::Day, std::slice::from_ref(&day), Some(&t));
        assert!(close(f[0].kwh, 9.2));
        assert!(close(f[0].cost.unwrap().total, 2.36), "{:?}", f[0].cost);
    }

    /// Issue 19: the fixed charge starts with the month of the site's first record, and a
    /// device's cost is its energy alone. Hand-computed: 4 kWh at 0.25 = 1.00 energy; demand
    /// 10/kW × 4 kW peak = 40.00; fixed 14.50; the site's June total 55.50, the device's 1.00.
    #[test]
    fn fixed_charge_from_the_first_data_and_device_cost_is_energy_only() {
        let tz = zone::load("UTC");
        let june1 = zone::day_start(&tz, date(2026, 6, 1));
        // 4 kWh on 10 June from 12:00: 1 kWh in each of four intervals, 4 kW demand each.
        let noon = june1 + 9 * 86_400 + 12 * 3600;
        let data = MeterData {
            intervals: (0..4)
                .map(|k| iv(noon + k * INTERVAL_S, Some(1000), None))
                .collect(),
            spans: vec![],
        };
        let months = zone::periods(&tz, By::Month, date(2026, 4, 1), 4); // April to July
        let i = device_intervals(&data, months[0].start, months[3].end);
        let tariff = Tariff {
            demand_price: 10.0,
            monthly_fixed: 14.5,
            ..Tariff::flat("EUR", 0.25)
        };
        let mut f = summarize(&i, &tz, By::Month, &months, Some(&tariff));
        fixed_from(&mut f, Some(noon));
        let totals: Vec<f64> = f.iter().map(|f| f.cost.unwrap().total).collect();
        let fixed: Vec<f64> = f.iter().map(|f| f.cost.unwrap().fixed).collect();
        // April and May: before the first record, nothing. June: 1 + 40 + 14.5. July: no
        // energy yet but metered, so the fixed charge.
        assert_eq!(fixed, vec![0.0, 0.0, 14.5, 14.5]);
        assert!(close(totals[0], 0.0) && close(totals[1], 0.0));
        assert!(close(totals[2], 55.5), "{totals:?}");
        assert!(close(totals[3], 14.5));
        // No data at all: no fixed charge anywhere.
        let mut none = summarize(&Intervals::new(), &tz, By::Month, &months, Some(&tariff));
        fixed_from(&mut none, None);
        assert!(none.iter().all(|f| f.cost.unwrap().total == 0.0));
        // The device's share in June: its energy only, 4 kWh × 0.25.
        let mut d = summarize(&i, &tz, By::Month, &months[2..3], Some(&tariff));
        energy_cost_only(&mut d);
        let c = d[0].cost.unwrap();
        assert!(close(c.total, 1.0) && c.demand == 0.0 && c.fixed == 0.0);
        assert!(close(d[0].kwh, 4.0));
    }
}
