//! [`Intervals`]: a meter's or a site's 15-minute intervals by start, as an ordered map would
//! hold them, but stored in one dense slot per interval of a range known in advance.
//!
//! Why (issue 21, a site's year): a device-year is 35,040 intervals and a site of 100 devices
//! builds, sums, walks and drops 3.5 million of them per request. A tree map cost a node
//! allocation per ~11 entries, a pointer chase per step of every walk and a free per node on
//! drop; slots are one allocation, walked in order, indexed by arithmetic. A start off the
//! grid or outside the range (which [`super::meter_intervals`] never makes, but a caller may
//! insert) goes to a map beside the slots, so any input keeps the semantics of a map.

use super::{ceil, floor, Interval};
use crate::storage::energy::INTERVAL_S;
use std::collections::BTreeMap;
use std::ops::Range;

/// Most slots allocated for one range (about 11 years of intervals); the rest of a longer
/// range is kept in the map beside them. Requests are limited to 400 days or 36 months.
pub const MAX_SLOTS: i64 = 400_000;

/// Intervals by start (Unix seconds), each start once, iterated in order of start.
#[derive(Debug, Clone, Default)]
pub struct Intervals {
    /// Start of slot 0.
    base: i64,
    /// The interval of each slot; [`Interval::default`] where a slot has none.
    slots: Vec<Interval>,
    /// Bit `k`: slot `k` has an interval.
    present: Vec<u64>,
    /// How many slots have one.
    in_slots: usize,
    /// Entries without a slot (off the grid or outside it).
    other: BTreeMap<i64, Interval>,
}

impl Intervals {
    /// An empty map with no slots (every entry goes to the map beside them).
    pub fn new() -> Intervals {
        Intervals::default()
    }

    /// An empty map with one slot per interval of `[floor(from), ceil(to))`.
    pub fn over(from: i64, to: i64) -> Intervals {
        let base = floor(from);
        let n = ((ceil(to) - base) / INTERVAL_S).clamp(0, MAX_SLOTS) as usize;
        Intervals {
            base,
            // Zeroed memory: pages never written are never touched.
            slots: vec![Interval::default(); n],
            present: vec![0; n.div_ceil(64)],
            in_slots: 0,
            other: BTreeMap::new(),
        }
    }

    /// Whether `other` has the same slots (base and length): sums can go slot by slot.
    fn same_grid(&self, other: &Intervals) -> bool {
        self.base == other.base && self.slots.len() == other.slots.len()
    }

    /// The slot of `start`, if it has one. One unsigned division by a constant (it runs for
    /// every interval a meter adds): a start before `base` wraps to a distance past every slot,
    /// and `base + k * INTERVAL_S` is exact for every slot `k`.
    fn index(&self, start: i64) -> Option<usize> {
        let distance = start.wrapping_sub(self.base) as u64;
        let k = distance / INTERVAL_S as u64;
        (k < self.slots.len() as u64 && k * INTERVAL_S as u64 == distance).then_some(k as usize)
    }

    fn has(&self, k: usize) -> bool {
        self.present[k / 64] & (1 << (k % 64)) != 0
    }

    /// The first slot starting at or after `t` (the number of slots when none does).
    fn first_at(&self, t: i64) -> usize {
        let k = t
            .saturating_sub(self.base)
            .saturating_add(INTERVAL_S - 1)
            .div_euclid(INTERVAL_S);
        usize::try_from(k.max(0)).unwrap_or(0).min(self.slots.len())
    }

    fn start_of(&self, k: usize) -> i64 {
        self.base + k as i64 * INTERVAL_S
    }

    /// The entry of `start`, made (zero) if missing: `BTreeMap::entry(start).or_default()`.
    pub fn entry(&mut self, start: i64) -> &mut Interval {
        match self.index(start) {
            Some(k) => {
                if !self.has(k) {
                    self.present[k / 64] |= 1 << (k % 64);
                    self.in_slots += 1;
                }
                &mut self.slots[k]
            }
            None => self.other.entry(start).or_default(),
        }
    }

    /// Sets the entry of `start` (the previous one, if any, is returned).
    pub fn insert(&mut self, start: i64, i: Interval) -> Option<Interval> {
        match self.index(start) {
            Some(k) => {
                let was = self.has(k).then_some(self.slots[k]);
                *self.entry(start) = i;
                was
            }
            None => self.other.insert(start, i),
        }
    }

    /// The entry of `start`.
    pub fn get(&self, start: i64) -> Option<&Interval> {
        match self.index(start) {
            Some(k) => self.has(k).then(|| &self.slots[k]),
            None => self.other.get(&start),
        }
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.in_slots + self.other.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slots `lo..hi` that have an interval, in order.
    fn slot_iter(&self, lo: usize, hi: usize) -> impl Iterator<Item = (i64, &Interval)> + '_ {
        let hi = hi.min(self.slots.len());
        let words = if lo < hi {
            lo / 64..hi.div_ceil(64)
        } else {
            0..0
        };
        words.flat_map(move |w| {
            let mut bits = self.present[w];
            if w == lo / 64 {
                bits &= u64::MAX << (lo % 64);
            }
            if w == (hi - 1) / 64 && hi % 64 != 0 {
                bits &= u64::MAX >> (64 - hi % 64);
            }
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let k = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some((self.start_of(k), &self.slots[k]))
            })
        })
    }

    /// Every entry, ordered by start.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Interval)> + '_ {
        merge(
            self.slot_iter(0, self.slots.len()),
            self.other.iter().map(|(&k, i)| (k, i)),
        )
    }

    /// The entries with a start in `range`, ordered by start.
    pub fn range(&self, range: Range<i64>) -> impl Iterator<Item = (i64, &Interval)> + '_ {
        let (lo, hi) = if range.start < range.end {
            (self.first_at(range.start), self.first_at(range.end))
        } else {
            (0, 0)
        };
        let other = if range.start < range.end {
            Some(self.other.range(range).map(|(&k, i)| (k, i)))
        } else {
            None
        };
        merge(self.slot_iter(lo, hi), other.into_iter().flatten())
    }

    /// Calls `f` on the entries with a start in `range`, ordered by start: what [`Intervals::range`]
    /// gives, in a plain loop over the slots' presence words when every entry is in a slot (a
    /// site's year is summarized some 200 times per request).
    pub fn each_in(&self, range: Range<i64>, mut f: impl FnMut(i64, &Interval)) {
        if !self.other.is_empty() {
            self.range(range).for_each(|(k, i)| f(k, i));
            return;
        }
        if range.start >= range.end {
            return;
        }
        let (lo, hi) = (self.first_at(range.start), self.first_at(range.end));
        if lo >= hi {
            return;
        }
        for w in lo / 64..hi.div_ceil(64) {
            let mut bits = self.present[w];
            if w == lo / 64 {
                bits &= u64::MAX << (lo % 64);
            }
            if w == (hi - 1) / 64 && hi % 64 != 0 {
                bits &= u64::MAX >> (64 - hi % 64);
            }
            while bits != 0 {
                let k = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(self.start_of(k), &self.slots[k]);
            }
        }
    }

    /// Every interval, ordered by start.
    pub fn values(&self) -> impl Iterator<Item = &Interval> + '_ {
        self.iter().map(|(_, i)| i)
    }

    /// Calls `f` on every entry, ordered by start.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(i64, &mut Interval)) {
        if self.other.is_empty() {
            for w in 0..self.present.len() {
                let mut bits = self.present[w];
                while bits != 0 {
                    let k = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    f(self.base + k as i64 * INTERVAL_S, &mut self.slots[k]);
                }
            }
            return;
        }
        let starts: Vec<i64> = self.iter().map(|(k, _)| k).collect();
        for k in starts {
            f(k, self.entry(k));
        }
    }

    /// Adds `device`'s intervals into these: each sum is `self + device` (`0 + device` where
    /// this had none), as adding into a map entry by entry gives.
    pub fn add(&mut self, device: &Intervals) {
        if self.same_grid(device) {
            for (w, &bits) in device.present.iter().enumerate() {
                let new = bits & !self.present[w];
                self.in_slots += new.count_ones() as usize;
                self.present[w] |= bits;
                let mut left = bits;
                while left != 0 {
                    let k = w * 64 + left.trailing_zeros() as usize;
                    left &= left - 1;
                    // A slot without an interval holds zero: `0 + x` as a new entry gives.
                    let (s, i) = (&mut self.slots[k], &device.slots[k]);
                    s.wh += i.wh;
                    s.demand_w += i.demand_w;
                }
            }
            for (&k, i) in &device.other {
                let s = self.entry(k);
                s.wh += i.wh;
                s.demand_w += i.demand_w;
            }
            return;
        }
        for (k, i) in device.iter() {
            let s = self.entry(k);
            s.wh += i.wh;
            s.demand_w += i.demand_w;
        }
    }
}

/// Two iterators ordered by start, with no start in both, as one ordered iterator.
fn merge<'a>(
    a: impl Iterator<Item = (i64, &'a Interval)>,
    b: impl Iterator<Item = (i64, &'a Interval)>,
) -> impl Iterator<Item = (i64, &'a Interval)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.0 < x.0 => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

impl PartialEq for Intervals {
    /// The same entries, whatever holds them (slots or the map beside them).
    fn eq(&self, other: &Intervals) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl FromIterator<(i64, Interval)> for Intervals {
    /// As a map collects: a start given twice keeps its last interval. No slots (the range is
    /// not known in advance).
    fn from_iter<T: IntoIterator<Item = (i64, Interval)>>(iter: T) -> Intervals {
        Intervals {
            other: iter.into_iter().collect(),
            ..Intervals::default()
        }
    }
}

impl std::ops::Index<&i64> for Intervals {
    type Output = Interval;

    /// The entry of `start`; panics without one, as a map's index does (tests).
    fn index(&self, start: &i64) -> &Interval {
        self.get(*start).expect("no interval at that start")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bits(i: (i64, &Interval)) -> (i64, u64, u64) {
        (i.0, i.1.wh.to_bits(), i.1.demand_w.to_bits())
    }

    proptest! {
        /// Slots and the map beside them hold what one ordered map holds, entry for entry:
        /// the same entries, lookups, ranges, sums and length, for starts on, off and outside
        /// the grid of the range.
        #[test]
        fn dense_intervals_behave_as_an_ordered_map(
            entries in proptest::collection::vec(
                ((-20i64..220, proptest::bool::weighted(0.05)), (-1e6f64..1e6, 0f64..1e5), any::<bool>()),
                0..200,
            ),
            added in proptest::collection::vec(
                ((-20i64..220, proptest::bool::weighted(0.05)), (-1e6f64..1e6, 0f64..1e5)),
                0..100,
            ),
            same_grid in any::<bool>(),
            from in -5i64..50,
            len in -2i64..200,
            ranges in proptest::collection::vec((-30i64..240, -5i64..240), 0..8),
        ) {
            let at = |(k, odd): (i64, bool)| k * INTERVAL_S + i64::from(odd) * 7;
            let (from, to) = (from * INTERVAL_S, (from + len) * INTERVAL_S);
            let mut dense = Intervals::over(from, to);
            let mut map: BTreeMap<i64, Interval> = BTreeMap::new();
            for (k, (wh, demand_w), set) in entries {
                let i = Interval { wh, demand_w };
                if set {
                    prop_assert_eq!(dense.insert(at(k), i), map.insert(at(k), i));
                } else {
                    let (d, m) = (dense.entry(at(k)), map.entry(at(k)).or_default());
                    d.wh += wh;
                    m.wh += wh;
                }
            }
            // Added as a device into a site: on the same grid (the fast path) or another.
            let mut device = if same_grid { Intervals::over(from, to) } else { Intervals::new() };
            for ((k, odd), (wh, demand_w)) in added {
                device.insert(at((k, odd)), Interval { wh, demand_w });
            }
            dense.add(&device);
            for (k, i) in device.iter() {
                let s = map.entry(k).or_default();
                s.wh += i.wh;
                s.demand_w += i.demand_w;
            }
            prop_assert_eq!(dense.len(), map.len());
            prop_assert_eq!(
                dense.iter().map(bits).collect::<Vec<_>>(),
                map.iter().map(|(&k, i)| bits((k, i))).collect::<Vec<_>>()
            );
            for (a, b) in ranges {
                // Backwards: empty (a map's range would panic).
                let backwards = b * INTERVAL_S..a * INTERVAL_S - 3;
                if backwards.start > backwards.end {
                    prop_assert_eq!(dense.range(backwards).count(), 0);
                }
                let r = (a * INTERVAL_S - 3).min(b * INTERVAL_S)..b * INTERVAL_S;
                let expected: Vec<_> = map.range(r.clone()).map(|(&k, i)| bits((k, i))).collect();
                prop_assert_eq!(dense.range(r.clone()).map(bits).collect::<Vec<_>>(), expected.clone());
                let mut each = Vec::new();
                dense.each_in(r, |k, i| each.push(bits((k, i))));
                prop_assert_eq!(each, expected);
                prop_assert_eq!(dense.get(at((a, false))), map.get(&at((a, false))));
            }
            let mut starts = Vec::new();
            dense.for_each_mut(|k, i| {
                starts.push(k);
                i.demand_w = 1.0;
            });
            prop_assert_eq!(starts, map.keys().copied().collect::<Vec<_>>());
            prop_assert!(dense.values().all(|i| i.demand_w == 1.0));
        }
    }
}
