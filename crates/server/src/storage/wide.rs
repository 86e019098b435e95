//! Wide telemetry records (WideTelemetry 0x07 and Backlog 0x0A in its layout, PROTOCOL.md 17.5,
//! 18): records of any subset of up to 128 channels, idempotent on (device, boot, seq) exactly
//! like [`super::telemetry`] — a retransmitted record is stored once — where a channel without a
//! value is a **gap**, never 0.
//!
//! ## Layout (table `telemetry_wide`, migration 12)
//! One row per record, not one per value: the key (device, boot, seq), the time, the
//! configuration version the device ran per the server when the batch arrived (the channel
//! numbers mean what that version's map says; NULL when the session had not reported one), and
//! two blobs:
//!
//! * `mask`: the channels that have a value, bit j of byte i = channel 8i + j, without trailing
//!   zero bytes (empty for a record in which no channel has a value);
//! * `vals`: one zigzag LEB128 varint (PROTOCOL.md 7.3's encoding) per channel of `mask`, in
//!   index order: the value itself, not a delta, so a record decodes on its own.
//!
//! A record of 16 channels with pool-like values costs 76 bytes on SQLite, key, time,
//! configuration version and time index included: 4.8 bytes per value (the test
//! `a_sixteen_channel_record_costs_few_bytes` in `sqlite/wide.rs` measures it; a narrow record
//! of the five pool channels costs 61 there, its rollups included). One row per value would
//! repeat the key and the index entry for every value.
//!
//! The blobs cannot be aggregated by the database, so each record is also rolled up per
//! channel into 15-minute intervals ([`super::wide_rollup`], table `telemetry_wide_rollup`,
//! migration 14) in the insert's transaction: about 45 bytes per channel and quarter hour, 48
//! per 16-channel record at one record a minute (124 bytes with the record, measured by the
//! same test). A channel's long-range chart and its meter data read those.
//!
//! Reads return whole records by keyset pagination ([`WideStore::wide_page`], in
//! [`TelemetryKey`] order, like [`super::TelemetryStore::telemetry_page`]) or one channel's
//! series ([`WideStore::wide_series`]), which skips the records where the channel has no value;
//! a channel's rollups come grouped into buckets ([`WideStore::wide_channel_rollups`]).

use super::energy::{aggregate_readings, assemble, check_range, MeterData, MAX_GAP_S};
use super::telemetry::{TelemetryKey, TelemetryQuery};
use super::wide_rollup::{ChannelAgg, RollupQuery, Versions};
use super::{Error, Result};
use tek_proto::channel::wide::{ChannelSet, MAX_CHANNELS};
use tek_proto::message::varint;

/// The values of one record: the channels that have one, and their values in index order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WideValues {
    set: ChannelSet,
    values: Vec<i32>,
}

impl WideValues {
    /// The values `value(ch)` of the channels of `channels`; a channel for which `value` gives
    /// `None` has no value (a gap).
    pub fn from_fn(channels: ChannelSet, value: impl Fn(usize) -> Option<i32>) -> Self {
        let mut v = WideValues::default();
        for ch in channels.iter() {
            if let Some(x) = value(ch) {
                v.set = v.set.with(ch);
                v.values.push(x);
            }
        }
        v
    }

    /// Channel `ch` has the value `values[ch]` (`None`: no value); at most the first
    /// [`MAX_CHANNELS`] entries count.
    pub fn from_options(values: &[Option<i32>]) -> Self {
        let all = (0..values.len().min(MAX_CHANNELS)).fold(ChannelSet(0), |s, c| s.with(c));
        Self::from_fn(all, |ch| values[ch])
    }

    /// The channels that have a value.
    pub fn channels(&self) -> ChannelSet {
        self.set
    }

    /// The value of channel `ch`, `None` if it has none.
    pub fn get(&self, ch: usize) -> Option<i32> {
        if !self.set.contains(ch) {
            return None;
        }
        // Its place among the channels with a value: those below it.
        let below = (self.set.0 & ((1u128 << ch) - 1)).count_ones() as usize;
        self.values.get(below).copied()
    }

    /// `(channel, value)` of every channel that has a value, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, i32)> + '_ {
        self.set.iter().zip(self.values.iter().copied())
    }

    /// The two blobs of the layout (module docs): `(mask, vals)`.
    pub(super) fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mask = self.set.0.to_le_bytes()[..self.set.mask_len()].to_vec();
        let mut vals = vec![0u8; self.values.len() * varint::MAX_LEN];
        let mut at = 0;
        for v in &self.values {
            // Sized for the longest encoding: always fits.
            varint::write(&mut vals, &mut at, varint::zigzag(*v));
        }
        vals.truncate(at);
        (mask, vals)
    }

    /// The values of the blobs `mask` and `vals`; anything [`WideValues::encode`] cannot have
    /// written (a mask longer than 16 bytes or with a trailing zero byte, too few or too many
    /// values) is [`Error::Corrupt`].
    pub(super) fn decode(mask: &[u8], vals: &[u8]) -> Result<Self> {
        if mask.len() > MAX_CHANNELS / 8 || mask.last() == Some(&0) {
            return Err(Error::Corrupt(format!("wide record mask {mask:02x?}")));
        }
        let mut m = [0u8; MAX_CHANNELS / 8];
        m[..mask.len()].copy_from_slice(mask);
        let set = ChannelSet(u128::from_le_bytes(m));
        let mut values = Vec::with_capacity(set.len());
        let mut at = 0;
        for _ in 0..set.len() {
            let v = varint::read(vals, &mut at)
                .map_err(|e| Error::Corrupt(format!("wide record values: {e}")))?;
            values.push(varint::unzigzag(v));
        }
        if at != vals.len() {
            return Err(Error::Corrupt("wide record values: bytes left over".into()));
        }
        Ok(WideValues { set, values })
    }
}

/// One stored wide record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WideRow {
    /// Device.
    pub device_id: u32,
    /// The boot it was logged in (the session's, or a Backlog's).
    pub boot: u32,
    /// Sequence number within the boot.
    pub seq: u32,
    /// When it was logged: arrival time minus its age, Unix seconds.
    pub time: i64,
    /// The configuration version the device ran per the server when the batch arrived (whose
    /// channel map says what each channel number means); `None` if the session had not said.
    pub config_version: Option<u32>,
    /// The channels that have a value, and the values.
    pub values: WideValues,
}

impl WideRow {
    /// The record's place in the read order.
    pub fn key(&self) -> TelemetryKey {
        TelemetryKey {
            time: self.time,
            boot: self.boot,
            seq: self.seq,
        }
    }
}

/// The columns of a wide record, in the order both backends decode a [`WideRow`].
pub(super) const COLUMNS: &str = "device_id, boot, seq, time, config_version, mask, vals";

/// The statement of [`WideStore::wide_page`], the same for both backends, as
/// [`super::telemetry::page_sql`] is for telemetry (the same parameters, from
/// [`super::telemetry::page_start`]).
pub(super) fn page_sql(param: &str) -> String {
    let p = |n: u8| format!("{param}{n}");
    let (device, time, boot, seq, to, limit) = (p(1), p(2), p(3), p(4), p(5), p(6));
    format!(
        "SELECT {COLUMNS} FROM telemetry_wide
         WHERE device_id = {device} AND time >= {time} AND time < {to}
           AND (time > {time} OR boot > {boot} OR (boot = {boot} AND seq > {seq}))
         ORDER BY time, boot, seq LIMIT {limit}"
    )
}

/// The statement of [`WideStore::latest_wide`], the same for both backends: the device's last
/// record in read order (the time index serves it backwards).
pub(super) fn latest_sql(param: &str) -> String {
    format!(
        "SELECT {COLUMNS} FROM telemetry_wide WHERE device_id = {param}1
         ORDER BY time DESC, boot DESC, seq DESC LIMIT 1"
    )
}

/// Records a read of [`WideStore::wide_series`] fetches per page.
const SERIES_PAGE: usize = 1000;

/// Wide telemetry operations.
pub trait WideStore {
    /// Inserts rows in one transaction, with their rollups ([`super::wide_rollup`]); rows
    /// already stored (same device, boot and seq) are skipped. Returns the rows that were new,
    /// in input order (a row repeated in `rows` once). When this returns `Ok`, every row is
    /// durable.
    fn insert_wide_new(&self, rows: &[WideRow]) -> Result<Vec<WideRow>>;

    /// [`WideStore::insert_wide_new`], counting the new rows.
    fn insert_wide(&self, rows: &[WideRow]) -> Result<u64> {
        Ok(self.insert_wide_new(rows)?.len() as u64)
    }

    /// One page of whole records of a device in a time range, in [`TelemetryKey`] order: at
    /// most `q.limit` of those after `after` (`None`: from the start of the range).
    fn wide_page(&self, q: &TelemetryQuery, after: Option<TelemetryKey>) -> Result<Vec<WideRow>>;

    /// Whole records of a device in a time range, oldest first, at most `q.limit`.
    fn wide_records(&self, q: &TelemetryQuery) -> Result<Vec<WideRow>> {
        self.wide_page(q, None)
    }

    /// Channel `channel`'s series of a device in a time range: `(time, value)` of the records
    /// that have a value for it, oldest first, at most `q.limit` points. A record without a
    /// value for the channel is a gap and gives no point. A channel past 127 is `Missing`.
    fn wide_series(&self, q: &TelemetryQuery, channel: usize) -> Result<Vec<(i64, i32)>> {
        if channel >= MAX_CHANNELS {
            return Err(Error::Missing(format!("channel {channel}")));
        }
        series_where(self, q, channel, |_| true)
    }

    /// The device's newest record (last in [`TelemetryKey`] order), `None` if it has none.
    fn latest_wide(&self, device_id: u32) -> Result<Option<WideRow>>;

    /// Number of wide records of a device.
    fn wide_count(&self, device_id: u32) -> Result<u64>;

    /// Channel `q.channel`'s rollups ([`super::wide_rollup::BUCKETS`]): per bucket of
    /// `q.step` the readings of the records in the quarter hours of `[q.from, q.to)` logged
    /// under the versions `q` counts, oldest first, only buckets with a reading.
    fn wide_channel_rollups(&self, q: &RollupQuery) -> Result<Vec<ChannelAgg>>;

    /// Channel `channel` of a device as a meter over the intervals in `[from, to)` (multiples
    /// of [`INTERVAL_S`](super::energy::INTERVAL_S)): its readings reduced per interval and assembled exactly as
    /// [`super::EnergyStore::meter_data`] does for the pool energy channel, with the reading
    /// just before `from` and just after `to` within [`MAX_GAP_S`]. `wh` holds the steps of the
    /// channel's values read as a counter and `power_w` their mean, both in the channel's raw
    /// units: which of the two means something, and the scale, come from the channel's map.
    /// Only the records of the configuration versions `versions` counts are read: a map's channel
    /// numbers mean nothing in another map's records.
    ///
    /// Read from the rollups ([`super::wide_rollup::channel_meter_data`]); the same figures as
    /// [`channel_meter_data_from_records`] (the storage suite compares them).
    fn channel_meter_data(
        &self,
        device_id: u32,
        channel: usize,
        versions: Versions,
        from: i64,
        to: i64,
    ) -> Result<MeterData> {
        let channel = checked_meter_read(channel, from, to)?;
        super::wide_rollup::channel_meter_data(device_id, channel, versions, from, to, |q| {
            self.wide_channel_rollups(q)
        })
    }
}

/// A channel read as a meter over `[from, to)`: the range within the packed keys' reach and on
/// interval boundaries, `channel` an index (`Missing` past 127).
fn checked_meter_read(channel: usize, from: i64, to: i64) -> Result<u8> {
    check_range(from, to)?;
    super::rollup::check_aligned(from, to)?;
    match u8::try_from(channel) {
        Ok(c) if channel < MAX_CHANNELS => Ok(c),
        _ => Err(Error::Missing(format!("channel {channel}"))),
    }
}

/// Channel `channel`'s `(time, value)` in the records of `q` that `keep` accepts, oldest first,
/// at most `q.limit`, read page by page ([`WideStore::wide_page`]); a record without a value for
/// the channel gives no point.
fn series_where<S: WideStore + ?Sized>(
    db: &S,
    q: &TelemetryQuery,
    channel: usize,
    keep: impl Fn(&WideRow) -> bool,
) -> Result<Vec<(i64, i32)>> {
    let page = TelemetryQuery {
        limit: SERIES_PAGE,
        ..*q
    };
    let mut out = Vec::new();
    let mut after = None;
    // Each page starts after the previous one's last record, so this ends with the range.
    while out.len() < q.limit {
        let rows = db.wide_page(&page, after)?;
        out.extend(
            rows.iter()
                .filter(|r| keep(r))
                .filter_map(|r| r.values.get(channel).map(|v| (r.time, v))),
        );
        match rows.last() {
            Some(last) if rows.len() == SERIES_PAGE => after = Some(last.key()),
            _ => break,
        }
    }
    out.truncate(q.limit);
    Ok(out)
}

/// [`WideStore::channel_meter_data`] computed from the raw records, as it was before the
/// rollups: what the rollups must reproduce (the storage suite compares the two), and the
/// reference when a rollup is in doubt.
pub fn channel_meter_data_from_records<S: WideStore + ?Sized>(
    db: &S,
    device_id: u32,
    channel: usize,
    versions: Versions,
    from: i64,
    to: i64,
) -> Result<MeterData> {
    let channel = usize::from(checked_meter_read(channel, from, to)?);
    // The channel's readings in `[from, to)` of the records `versions` counts, oldest first.
    let series = |from: i64, to: i64, limit: usize| {
        let q = TelemetryQuery {
            device_id,
            from,
            to,
            limit,
        };
        series_where(db, &q, channel, |r| versions.counts(r.config_version))
    };
    let before = series(from - MAX_GAP_S, from, usize::MAX)?
        .last()
        .map(|&(t, v)| (t, i64::from(v)));
    let inside = series(from, to, usize::MAX)?;
    let after = series(to, to + MAX_GAP_S, 1)?
        .first()
        .map(|&(t, v)| (t, i64::from(v)));
    Ok(assemble(
        &aggregate_readings(&inside),
        before,
        after,
        from,
        to,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_blobs_with_gaps_kept() {
        let mut raw = [None; 128];
        raw[0] = Some(1500);
        raw[2] = Some(-7);
        raw[9] = Some(i32::MIN);
        raw[127] = Some(i32::MAX);
        let v = WideValues::from_options(&raw);
        assert_eq!(v.channels().len(), 4);
        assert_eq!(v.get(0), Some(1500));
        assert_eq!(v.get(1), None, "a gap, not 0");
        assert_eq!(v.get(9), Some(i32::MIN));
        assert_eq!(v.get(127), Some(i32::MAX));
        assert_eq!(v.get(128), None);
        let (mask, vals) = v.encode();
        assert_eq!(mask.len(), 16);
        // Fixture: 1500 -> 3000 = b8 17; -7 -> 13 = 0d; MIN -> ff ff ff ff 0f; MAX -> fe .. 0f.
        assert_eq!(
            vals,
            [0xb8, 0x17, 0x0d, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xfe, 0xff, 0xff, 0xff, 0x0f]
        );
        assert_eq!(WideValues::decode(&mask, &vals).unwrap(), v);
        assert_eq!(
            v.iter().collect::<Vec<_>>(),
            [(0, 1500), (2, -7), (9, i32::MIN), (127, i32::MAX)]
        );
        // Short masks, and a record without any value.
        let small = WideValues::from_options(&[Some(1), None, Some(2)]);
        assert_eq!(small.encode(), (vec![0b101], vec![2, 4]));
        let none = WideValues::from_options(&[None, None]);
        assert_eq!(none.encode(), (vec![], vec![]));
        assert_eq!(WideValues::decode(&[], &[]).unwrap(), none);
    }

    #[test]
    fn damaged_blobs_are_corrupt_not_a_panic() {
        for (mask, vals) in [
            (vec![0b1], vec![]),            // a value missing
            (vec![0b1], vec![2, 2]),        // a byte left over
            (vec![0b1, 0], vec![2]),        // a trailing zero mask byte
            (vec![1; 17], vec![2; 17 * 8]), // more than 128 channels
            (vec![0b1], vec![0xff; 6]),     // a varint too long
            (vec![0b11], vec![0x80]),       // a varint cut short
        ] {
            assert!(
                matches!(WideValues::decode(&mask, &vals), Err(Error::Corrupt(_))),
                "{mask:?} {vals:?}"
            );
        }
    }
}
