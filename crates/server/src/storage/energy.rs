//! Energy data for [`crate::energy`]: a device's meter readings reduced by the database to
//! 15-minute intervals, and each site's tariff.
//!
//! How the meter counter becomes energy (both backends): the database reduces a device's records
//! in the range to one row per 15-minute interval in a single pass over the `(device_id, time)`
//! index ([`IntervalAgg`]: first and last reading, lowest and highest, mean power), plus the
//! reading just before `from` and just after `to` (within [`MAX_GAP_S`]), so an interval's
//! energy does not depend on the range it was asked for in; [`assemble`] then applies the rules
//! to the steps between consecutive readings (ordered by time; a controller reboot does not reset
//! an external meter, so steps across boots count like any other):
//! * a decrease: the meter was reset or replaced; the step counts as 0 (never negative, never
//!   guessed), and the next steps count from the new reading;
//! * at most [`INTERVAL_S`] long: its increase belongs to the interval of the later reading;
//! * longer, up to [`MAX_GAP_S`] (the controller was off or lost records): returned as a
//!   [`MeterSpan`] that the caller spreads evenly over the gap;
//! * longer than [`MAX_GAP_S`]: not counted (an increase after more than a week of silence
//!   cannot be placed in time, and is more often a swapped meter than real use).
//!
//! Inside one interval the steps are summed from the aggregates: `last - first` when the
//! readings only rose (first is the lowest, last the highest), else (a reset inside the interval)
//! `(highest - first) + (last - lowest)`, exact for one reset per 15 minutes.

use super::{Error, Result};
use crate::energy::tariff::Tariff;

/// Length of an interval (demand is measured over clock-aligned 15 minutes).
pub const INTERVAL_S: i64 = 900;
/// Longest gap between two readings whose increase is still counted (spread over the gap).
pub const MAX_GAP_S: i64 = 7 * 86_400;

/// One interval of a device's readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterInterval {
    /// Start, Unix seconds (a multiple of [`INTERVAL_S`]).
    pub start: i64,
    /// Wh of the meter steps that ended in this interval and were at most an interval long
    /// (`None`: no such step).
    pub wh: Option<i64>,
    /// Mean of the power channel of the records in this interval, W.
    pub power_w: Option<f64>,
}

/// A meter increase over a gap longer than an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterSpan {
    /// Time of the reading before the gap.
    pub from: i64,
    /// Time of the reading after it.
    pub to: i64,
    /// Wh counted over the gap (> 0).
    pub wh: i64,
}

/// What the database returns for one device and range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeterData {
    /// Intervals with a step or a power reading, oldest first.
    pub intervals: Vec<MeterInterval>,
    /// Increases over gaps, oldest first.
    pub spans: Vec<MeterSpan>,
}

/// One interval as the database reduces it (readings of the energy channel; mean power).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalAgg {
    /// Start of the interval.
    pub start: i64,
    /// Number of energy readings.
    pub count: i64,
    /// The earliest reading `(time, Wh)`.
    pub first: Option<(i64, i64)>,
    /// The latest reading.
    pub last: Option<(i64, i64)>,
    /// Lowest and highest reading.
    pub min_max: Option<(i64, i64)>,
    /// Mean power, W.
    pub power_w: Option<f64>,
}

/// First and last reading of an interval are found with one `MIN`/`MAX` each over
/// `(time - from) * 2^32 + (Wh + 2^31)`: ordered by time, and the reading rides along. Needs
/// `to - from` below 2^31 seconds (68 years; requests are limited to a few years).
pub const PACK_SHIFT: i64 = 1 << 32;
/// Offset making a 32-bit reading non-negative in the packed key.
pub const PACK_BIAS: i64 = 1 << 31;

/// Decodes a packed `(time - from, Wh)` key.
pub fn unpack(from: i64, key: i64) -> (i64, i64) {
    (
        from + key.div_euclid(PACK_SHIFT),
        key.rem_euclid(PACK_SHIFT) - PACK_BIAS,
    )
}

/// Refuses a range too long for the packed key ([`PACK_SHIFT`]); both backends check it before
/// they query.
pub fn check_range(from: i64, to: i64) -> Result<()> {
    if to - from >= PACK_BIAS {
        return Err(Error::Backend(format!(
            "range of {} s is too long",
            to - from
        )));
    }
    Ok(())
}

/// Turns the database's per-interval aggregates (oldest first) and the readings just before
/// `from` and at or after `to` into [`MeterData`] (rules in the module documentation).
pub fn assemble(
    rows: &[IntervalAgg],
    before: Option<(i64, i64)>,
    after: Option<(i64, i64)>,
    from: i64,
    to: i64,
) -> MeterData {
    let mut a = Assembly::new(before, from, to);
    for r in rows {
        a.push(r);
    }
    a.finish(after)
}

/// [`assemble`] one interval at a time. Between two intervals the rules only carry the latest
/// reading, so a reader that produces the intervals in order (the sealed days of
/// [`super::quarter`], decoded one after the other) needs no list of them.
#[derive(Debug, Clone)]
pub struct Assembly {
    out: MeterData,
    prev: Option<(i64, i64)>,
    from: i64,
    to: i64,
}

/// An [`Assembly`]'s state at one point ([`Assembly::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct AssemblyMark {
    intervals: usize,
    spans: usize,
    prev: Option<(i64, i64)>,
}

impl Assembly {
    /// Starts with the reading just before `from` (if any).
    pub fn new(before: Option<(i64, i64)>, from: i64, to: i64) -> Assembly {
        // Room for an interval per 15 minutes of the range (a year: 35,040, 1.4 MB), so a
        // device's intervals are not copied as the list grows; at most a few years are asked.
        let room = usize::try_from((to - from) / INTERVAL_S)
            .unwrap_or(0)
            .min(4 * 35_136);
        Assembly {
            out: MeterData {
                intervals: Vec::with_capacity(room),
                spans: Vec::new(),
            },
            prev: before,
            from,
            to,
        }
    }

    /// The next interval (each later than the previous one).
    pub fn push(&mut self, r: &IntervalAgg) {
        // Wrapping arithmetic: readings are 32-bit and never come near the ends of i64, but a
        // damaged sealed day can hold any lowest and highest, and must not panic a build that
        // checks overflow (a release build wraps the same way).
        let mut wh = None;
        if let (Some(first), Some(last), Some((lo, hi))) = (r.first, r.last, r.min_max) {
            if r.count >= 2 {
                let intra = if first.1 == lo && last.1 == hi {
                    last.1.wrapping_sub(first.1)
                } else {
                    hi.wrapping_sub(first.1)
                        .wrapping_add(last.1.wrapping_sub(lo))
                };
                wh = Some(intra);
            }
            if let Some(p) = self.prev {
                if first.0.wrapping_sub(p.0) <= INTERVAL_S {
                    wh = Some(
                        wh.unwrap_or(0)
                            .wrapping_add(first.1.wrapping_sub(p.1).max(0)),
                    );
                } else {
                    self.span(p, first);
                }
            }
            self.prev = Some(last);
        }
        if wh.is_some() || r.power_w.is_some() {
            self.out.intervals.push(MeterInterval {
                start: r.start,
                wh,
                power_w: r.power_w,
            });
        }
    }

    /// Intervals and spans assembled so far (what a copy of it holds).
    pub fn sizes(&self) -> (usize, usize) {
        (self.out.intervals.len(), self.out.spans.len())
    }

    /// Room for `additional` more intervals: a copy (which has none to spare) grows once.
    pub fn reserve(&mut self, additional: usize) {
        self.out.intervals.reserve(additional);
    }

    /// The meter data, given the reading at or after `to` (if any).
    pub fn finish(mut self, after: Option<(i64, i64)>) -> MeterData {
        self.finish_in_place(after);
        self.out
    }

    /// [`Assembly::finish`] without giving the data away: a walk remembered between requests
    /// lends it and then goes back to a [`Assembly::mark`] ([`Assembly::rewind`]) instead of
    /// being copied (a device-year is 1.4 MB).
    pub fn finish_in_place(&mut self, after: Option<(i64, i64)>) -> &MeterData {
        if let (Some(p), Some(a)) = (self.prev, after) {
            self.span(p, a);
        }
        &self.out
    }

    /// Where it is now: [`Assembly::rewind`] undoes what was pushed and finished since.
    pub fn mark(&self) -> AssemblyMark {
        AssemblyMark {
            intervals: self.out.intervals.len(),
            spans: self.out.spans.len(),
            prev: self.prev,
        }
    }

    /// Back to `mark` (taken from this assembly): intervals and spans are only ever appended,
    /// and the latest reading is all the rules carry.
    pub fn rewind(&mut self, mark: AssemblyMark) {
        self.out.intervals.truncate(mark.intervals);
        self.out.spans.truncate(mark.spans);
        self.prev = mark.prev;
    }

    /// The step from reading `(pt, pe)` to `(t, e)` across a gap, if it counts.
    fn span(&mut self, (pt, pe): (i64, i64), (t, e): (i64, i64)) {
        let (gap, d) = (t.wrapping_sub(pt), e.wrapping_sub(pe));
        if gap > INTERVAL_S && gap <= MAX_GAP_S && d > 0 && t > self.from && pt < self.to {
            self.out.spans.push(MeterSpan {
                from: pt,
                to: t,
                wh: d,
            });
        }
    }
}

/// One channel's readings `(time, value)` (oldest first) reduced per 15-minute interval as the
/// database reduces the pool energy channel ([`IntervalAgg`]): first, last, lowest and highest
/// reading, and the mean of the values as `power_w` — for a counter channel the steps become
/// energy in [`assemble`], for a rate channel the mean is its average. Values stay in the
/// channel's raw units; the caller scales them (a channel's unit and decimals are its map's).
pub fn aggregate_readings(points: &[(i64, i32)]) -> Vec<IntervalAgg> {
    let mut out: Vec<IntervalAgg> = Vec::new();
    let mut sum = 0.0;
    for &(t, v) in points {
        let (start, v64) = (t.div_euclid(INTERVAL_S) * INTERVAL_S, i64::from(v));
        match out.last_mut() {
            Some(a) if a.start == start => {
                let (lo, hi) = a.min_max.unwrap_or((v64, v64));
                a.count += 1;
                a.last = Some((t, v64));
                a.min_max = Some((lo.min(v64), hi.max(v64)));
                sum += f64::from(v);
                a.power_w = Some(sum / a.count as f64);
            }
            _ => {
                sum = f64::from(v);
                out.push(IntervalAgg {
                    start,
                    count: 1,
                    first: Some((t, v64)),
                    last: Some((t, v64)),
                    min_max: Some((v64, v64)),
                    power_w: Some(sum),
                });
            }
        }
    }
    out
}

/// Energy queries and tariffs.
pub trait EnergyStore {
    /// The meter data of `device_id` for the intervals in `[from, to)` (both multiples of
    /// [`INTERVAL_S`]); spans are those overlapping the range.
    fn meter_data(&self, device_id: u32, from: i64, to: i64) -> Result<MeterData>;
    /// [`EnergyStore::meter_data`] lent to `f` instead of given away: a backend that remembers
    /// a device's walk ([`super::quarter::meter_data_sealed_with`]) need not copy it.
    fn with_meter_data(
        &self,
        device_id: u32,
        from: i64,
        to: i64,
        f: &mut dyn FnMut(&MeterData),
    ) -> Result<()> {
        f(&self.meter_data(device_id, from, to)?);
        Ok(())
    }
    /// The tariff of a site, if one is set.
    fn site_tariff(&self, site_id: i64) -> Result<Option<Tariff>>;
    /// Sets (`Some`) or removes (`None`) a site's tariff; `Missing` if the site does not exist.
    fn set_site_tariff(&self, site_id: i64, tariff: Option<&Tariff>, now: i64) -> Result<()>;
}

/// Decodes a stored tariff.
pub fn decode_tariff(json: &str) -> Result<Tariff> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("tariff: {e}")))
}

/// Encodes a tariff for storage.
pub fn encode_tariff(t: &Tariff) -> String {
    // A struct of strings and finite numbers always serializes.
    serde_json::to_string(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_keys_order_by_time_and_carry_the_reading() {
        let from = 1_800_000_000;
        let key = |t: i64, e: i64| (t - from) * PACK_SHIFT + e + PACK_BIAS;
        for (t, e) in [
            (from, 0),
            (from + 5, -7),
            (from + 86_400 * 800, i64::from(i32::MAX)),
        ] {
            assert_eq!(unpack(from, key(t, e)), (t, e));
        }
        assert!(key(from + 1, i64::from(i32::MIN)) > key(from, i64::from(i32::MAX)));
    }

    #[test]
    fn steps_inside_and_between_intervals() {
        let agg = |start, first, last, min_max, count| IntervalAgg {
            start,
            count,
            first: Some(first),
            last: Some(last),
            min_max: Some(min_max),
            power_w: None,
        };
        // Interval 0: 100 -> 400 rising. Interval 900: 500 ... reset ... 30 (highest 700, lowest
        // 10): (700 - 500) + (30 - 10) = 220, plus the step 400 -> 500 = 100. Then a 2 h gap
        // 30 -> 90 (a span), and the reading after the range 10 h later (dropped? no: 10 h is
        // within a week; it is a span too, overlapping the range).
        let rows = [
            agg(0, (10, 100), (800, 400), (100, 400), 3),
            agg(900, (950, 500), (1700, 30), (10, 700), 4),
            agg(9000, (9100, 90), (9100, 90), (90, 90), 1),
        ];
        let d = assemble(
            &rows,
            Some((-100, 100)),
            Some((9100 + 36_000, 50)),
            0,
            10_800,
        );
        let wh: Vec<_> = d.intervals.iter().map(|i| (i.start, i.wh)).collect();
        assert_eq!(wh, vec![(0, Some(300)), (900, Some(320))]);
        assert_eq!(
            d.spans,
            vec![MeterSpan {
                from: 1700,
                to: 9100,
                wh: 60
            }]
        );
        let d = assemble(&rows[2..], None, Some((9200, 150)), 0, 10_800);
        assert!(d.intervals.is_empty());
        assert!(
            d.spans.is_empty(),
            "a short step after the range belongs to a later interval"
        );
    }
}
