//! A device's own channels as every face shows them (issue 18 point 4): for a device whose
//! channel map is in effect — the registry entry of the configuration version it confirmed, when
//! that is not the factory pool map — each channel's latest value from its newest wide record,
//! formatted with the channel's unit and precision, "no value" when the record has none (never
//! 0), the channel's last error from the device's latest ChannelFaults report, and a channel's
//! chart buckets. A device running the factory map (every installation of today) has none of
//! this: its pages show the five pool channels of Telemetry 0x01 exactly as before.
//!
//! The web page, the live stream (through [`crate::service::view`]), the CSV export and the JSON
//! API all read these functions; none of them formats a channel's value itself.

use crate::storage::wide_rollup::{rollup_part, ChannelAgg, RollupQuery, Versions};
use crate::storage::{
    ChannelFault, ChannelInfo, DeviceChannels, Result, Storage, TelemetryQuery, WideRow,
};
use serde::Serialize;
use std::collections::BTreeMap;
use tek_proto::channel::map::ChannelMap;
use tek_proto::channel::roles::Roles;

/// What a channel without a value in the newest record shows.
pub const NO_VALUE: &str = "no value";

/// One channel of a device as shown now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelNow {
    /// Index in the map (what `/api/devices/{id}/channels/{index}/series` takes).
    pub index: u8,
    /// Name.
    pub name: String,
    /// What it measures (`power`, `energy`, `temperature`, `state`, `other`).
    pub kind: crate::storage::ChannelKind,
    /// Unit symbol (`""` for none or a unit code this server does not know).
    pub unit: String,
    /// Decimals it is shown with.
    pub decimals: u8,
    /// The latest value in the unit, `null` when the newest record has none.
    pub value: Option<f64>,
    /// The value as shown: "231.4 V", or [`NO_VALUE`].
    pub text: String,
    /// The channel's last error, if the device's latest fault report names it.
    pub error: Option<ChannelError>,
}

/// A channel's entry in the device's latest ChannelFaults report (PROTOCOL.md 17.8).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelError {
    /// As shown: "Modbus timeout (7 failed samples)".
    pub text: String,
    /// Why its last failed sample failed ("Modbus timeout", "Modbus exception 2", ...).
    pub last: String,
    /// Failed samples since the device's boot or since the map changed.
    pub errors: u16,
    /// When the report arrived, Unix seconds.
    pub reported_at: i64,
}

/// A device's channels as shown now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelsNow {
    /// The configuration version the map belongs from (the registry entry's).
    pub version: u32,
    /// When the newest record that counts was logged (`null`: none yet).
    pub time: Option<i64>,
    /// Every channel of the map, in index order.
    pub channels: Vec<ChannelNow>,
    /// The latest value of the channel the map's roles name as the power, in W (`null`: no
    /// such role, another unit, or no value): what the dashboard shows as the device's power.
    pub power_w: Option<f64>,
    /// The same for the water temperature role, in °C.
    pub water_c: Option<f64>,
    /// The same for the air temperature role, in °C.
    pub air_c: Option<f64>,
}

/// One channel's chart bucket: the mean, lowest and highest value (in the unit) of the records
/// in `[start, start + step)` that have a value for it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ChannelBucket {
    /// Start, Unix seconds (a multiple of the step from the epoch, as the pool charts').
    pub start: i64,
    /// Records with a value.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
}

/// Most records one chart read goes through (a year of one-minute records is 525,600).
pub const MAX_SERIES_RECORDS: usize = 1_100_000;
/// Records read per page.
const PAGE: usize = 2_000;

/// The registry entry in effect on a device that confirmed configuration `applied`, unless it
/// is the factory pool map (then `None`, as for a device without an entry).
pub fn in_effect(db: &dyn Storage, device_id: u32, applied: u32) -> Result<Option<DeviceChannels>> {
    Ok(own_map(db.device_channels(device_id, Some(applied))?))
}

/// `entry`, unless it is the factory pool map ([`in_effect`]).
fn own_map(entry: Option<DeviceChannels>) -> Option<DeviceChannels> {
    entry.filter(|e| is_own_map(&e.map, e.roles.as_deref()))
}

/// Whether an entry's map and roles are the device's own, not the factory pool map's.
fn is_own_map(map: &[u8], roles: Option<&[u8]>) -> bool {
    !crate::udp::split::is_factory_map(map, roles)
}

/// Whether `row` was logged under `entry`'s map: a record of an earlier version meant other
/// channels by its numbers. A record whose version the server did not know is taken as the
/// current map's.
pub fn under(entry: &DeviceChannels, row: &WideRow) -> bool {
    row.config_version.is_none_or(|v| v >= entry.version)
}

/// `10^exponent` of each channel of the entry's map, by index (1 for a channel it lacks).
pub fn scales(entry: &DeviceChannels) -> Vec<f64> {
    let map = ChannelMap::new_checked(&entry.map).ok();
    (0..entry.channels.len().max(
        entry
            .channels
            .iter()
            .map(|c| usize::from(c.index) + 1)
            .max()
            .unwrap_or(0),
    ))
        .map(|i| {
            let e = map
                .and_then(|m| m.channel(i))
                .map_or(0, |c| c.resolution.exponent);
            10f64.powi(i32::from(e))
        })
        .collect()
}

/// The unit symbol of a channel (empty for none or an unknown code).
pub fn unit_of(c: &ChannelInfo) -> String {
    crate::service::channel_map::unit_symbol(c.unit)
        .unwrap_or("")
        .to_owned()
}

/// `value` with `decimals` decimals and the unit: "231.40 V", "3 " without a unit "3".
pub fn format_value(value: f64, decimals: u8, unit: &str) -> String {
    let n = format!("{value:.*}", usize::from(decimals));
    // "-0.0" reads as a sign that is not there.
    let n = if n.starts_with('-') && n[1..].chars().all(|c| c == '0' || c == '.') {
        n[1..].to_owned()
    } else {
        n
    };
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

/// The value of channel `index` of `row` in its unit (`None`: no value).
pub fn scaled(row: &WideRow, index: u8, scales: &[f64]) -> Option<f64> {
    let scale = scales.get(usize::from(index)).copied().unwrap_or(1.0);
    row.values
        .get(usize::from(index))
        .map(|v| f64::from(v) * scale)
}

/// A channel's error as shown: "Modbus timeout (7 failed samples)".
pub fn error_text(last: &str, errors: u16) -> String {
    match errors {
        1 => format!("{last} (1 failed sample)"),
        n => format!("{last} ({n} failed samples)"),
    }
}

/// The channels of `entry` with the values of `latest` (if it was logged under the entry's map)
/// and the errors of `faults`.
pub fn channels_now(
    entry: &DeviceChannels,
    latest: Option<&WideRow>,
    faults: &[ChannelFault],
) -> ChannelsNow {
    let latest = latest.filter(|r| under(entry, r));
    let scales = scales(entry);
    let channels: Vec<ChannelNow> = entry
        .channels
        .iter()
        .map(|c| {
            let value = latest.and_then(|r| scaled(r, c.index, &scales));
            let unit = unit_of(c);
            ChannelNow {
                index: c.index,
                name: c.name.clone(),
                kind: c.kind,
                text: value.map_or_else(
                    || NO_VALUE.to_owned(),
                    |v| format_value(v, c.decimals, &unit),
                ),
                unit,
                decimals: c.decimals,
                value,
                error: faults
                    .iter()
                    .find(|f| f.channel == c.index)
                    .map(|f| ChannelError {
                        text: error_text(&f.last.to_string(), f.errors),
                        last: f.last.to_string(),
                        errors: f.errors,
                        reported_at: f.received_at,
                    }),
            }
        })
        .collect();
    let roles = entry
        .roles
        .as_deref()
        .and_then(|r| Roles::parse(r, entry.channels.len()).ok());
    // A role's channel's value, if its unit is `unit`.
    let role = |index: Option<u8>, unit: &str| {
        let c = channels.iter().find(|c| Some(c.index) == index)?;
        (c.unit == unit).then_some(c.value).flatten()
    };
    ChannelsNow {
        version: entry.version,
        time: latest.map(|r| r.time),
        power_w: role(roles.and_then(|r| r.power), "W"),
        water_c: role(roles.and_then(|r| r.water), "°C"),
        air_c: role(roles.and_then(|r| r.air), "°C"),
        channels,
    }
}

/// A device's channels now (`None`: the factory map or no entry is in effect, see
/// [`in_effect`]).
pub fn load_now(db: &dyn Storage, device_id: u32, applied: u32) -> Result<Option<ChannelsNow>> {
    now_under(db, device_id, in_effect(db, device_id, applied)?)
}

/// The channels now of `device_id` under `entry`, the one in effect ([`in_effect`]): its
/// newest wide record and its faults are read only when there is one.
fn now_under(
    db: &dyn Storage,
    device_id: u32,
    entry: Option<DeviceChannels>,
) -> Result<Option<ChannelsNow>> {
    let Some(entry) = entry else {
        return Ok(None);
    };
    let latest = db.latest_wide(device_id)?;
    let faults = db.channel_faults(device_id)?;
    Ok(Some(channels_now(&entry, latest.as_ref(), &faults)))
}

/// [`load_now`] of each `(device, applied)` of a page, in its order: the registry entries in one
/// call (issue 21: `/api/devices` during a site query), the factory ones left unread past their
/// map (storage judges them with [`is_own_map`], the test [`own_map`] makes); the newest wide
/// record and the faults are then read only for the devices with a map of their own.
pub fn load_now_of(db: &dyn Storage, devices: &[(u32, u32)]) -> Result<Vec<Option<ChannelsNow>>> {
    let asked: Vec<(u32, Option<u32>)> = devices.iter().map(|&(d, a)| (d, Some(a))).collect();
    db.device_channels_kept_of(&asked, &is_own_map)?
        .into_iter()
        .zip(devices)
        .map(|(entry, &(device_id, _))| now_under(db, device_id, entry))
        .collect()
}

/// The entry in effect on device `device_id` now (by the version it confirmed), see
/// [`in_effect`].
pub fn in_effect_now(db: &dyn Storage, device_id: u32) -> Result<Option<DeviceChannels>> {
    let applied = db.device(device_id)?.config_applied;
    in_effect(db, device_id, applied)
}

/// Records of the device in `[from, to)` logged under `entry`'s map, page by page, oldest first,
/// at most [`MAX_SERIES_RECORDS`]; `each` gets every one.
pub fn for_each_record(
    db: &dyn Storage,
    entry: &DeviceChannels,
    from: i64,
    to: i64,
    mut each: impl FnMut(&WideRow),
) -> Result<()> {
    let q = TelemetryQuery {
        device_id: entry.device_id,
        from,
        to,
        limit: PAGE,
    };
    let mut after = None;
    let mut read = 0;
    while read < MAX_SERIES_RECORDS {
        let rows = db.wide_page(&q, after)?;
        read += rows.len();
        for r in rows.iter().filter(|r| under(entry, r)) {
            each(r);
        }
        match rows.last() {
            Some(last) if rows.len() == PAGE => after = Some(last.key()),
            _ => break,
        }
    }
    Ok(())
}

/// Channel `index`'s buckets of `step` seconds over `[from, to)`, only those with a value (a
/// chart breaks its line over the missing ones). `None` for a channel the map does not have.
pub fn channel_buckets(
    db: &dyn Storage,
    entry: &DeviceChannels,
    index: u8,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Option<Vec<ChannelBucket>>> {
    if !entry.channels.iter().any(|c| c.index == index) {
        return Ok(None);
    }
    Ok(buckets_of(db, entry, &[index], from, to, step)?.pop())
}

/// The buckets of every channel of the map, in the map's channel order, from one read of the
/// records (the device page's charts).
pub fn all_channel_buckets(
    db: &dyn Storage,
    entry: &DeviceChannels,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<Vec<ChannelBucket>>> {
    let indices: Vec<u8> = entry.channels.iter().map(|c| c.index).collect();
    buckets_of(db, entry, &indices, from, to, step)
}

/// The buckets of channels `indices`, in that order. With a step of whole quarter hours the
/// quarter hours inside the range come from the rollups ([`crate::storage::wide_rollup`], a
/// year of a channel is 35,040 rows already reduced, grouped by the database), and only the
/// ends that do not fall on a quarter hour from the records; any other step reads the records.
/// Both give the same figures in the channel's raw units ([`ChannelAgg`]: sums and counts add,
/// extremes keep the extreme), scaled once at the end, so a bucket shows the same numbers
/// whichever source it came from.
fn buckets_of(
    db: &dyn Storage,
    entry: &DeviceChannels,
    indices: &[u8],
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<Vec<ChannelBucket>>> {
    let step = step.max(1);
    let scales = scales(entry);
    // Per channel: its buckets by start.
    let mut parts: Vec<BTreeMap<i64, ChannelAgg>> = vec![BTreeMap::new(); indices.len()];
    let add = |buckets: &mut BTreeMap<i64, ChannelAgg>, a: ChannelAgg| {
        buckets
            .entry(a.start)
            .and_modify(|b| b.merge(&a))
            .or_insert(a);
    };
    let raw_ranges = match rollup_part(from, to, step) {
        Some((a, b)) => {
            for (buckets, &channel) in parts.iter_mut().zip(indices) {
                let q = RollupQuery {
                    device_id: entry.device_id,
                    channel,
                    from: a,
                    to: b,
                    step,
                    // The records [`under`] the entry's map.
                    versions: Versions::since(entry.version),
                };
                for agg in db.wide_channel_rollups(&q)? {
                    add(buckets, agg);
                }
            }
            [(from, a), (b, to)]
        }
        None => [(from, to), (to, to)],
    };
    for (f, t) in raw_ranges.into_iter().filter(|(f, t)| f < t) {
        for_each_record(db, entry, f, t, |r| {
            let start = r.time.div_euclid(step) * step;
            for (buckets, &index) in parts.iter_mut().zip(indices) {
                if let Some(v) = r.values.get(usize::from(index)) {
                    add(buckets, ChannelAgg::one(start, r.time, i64::from(v)));
                }
            }
        })?;
    }
    Ok(parts
        .into_iter()
        .zip(indices)
        .map(|(buckets, &index)| {
            let scale = scales.get(usize::from(index)).copied().unwrap_or(1.0);
            buckets
                .into_values()
                .map(|a| ChannelBucket {
                    start: a.start,
                    count: a.readings as u64,
                    mean: a.total as f64 / a.readings as f64 * scale,
                    min: a.lowest as f64 * scale,
                    max: a.highest as f64 * scale,
                })
                .collect()
        })
        .collect())
}

/// A channel's values record by record: `(time, value)` points, and whether more were left out.
pub type ChannelPoints = (Vec<(i64, f64)>, bool);

/// Channel `index`'s values over `[from, to)` record by record, oldest first, skipping the
/// records without one: at most `limit` `(time, value)` points and whether more were left out.
/// `None` for a channel the map does not have.
pub fn channel_points(
    db: &dyn Storage,
    entry: &DeviceChannels,
    index: u8,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Option<ChannelPoints>> {
    if !entry.channels.iter().any(|c| c.index == index) {
        return Ok(None);
    }
    let scales = scales(entry);
    let mut out = Vec::new();
    let mut more = false;
    for_each_record(db, entry, from, to, |r| {
        if let Some(v) = scaled(r, index, &scales) {
            if out.len() < limit {
                out.push((r.time, v));
            } else {
                more = true;
            }
        }
    })?;
    Ok(Some((out, more)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::channels::builtin;
    use crate::storage::sqlite::Sqlite;
    use crate::storage::{
        ChannelSet, ChannelStore, DeviceStore, FaultStore, NewDevice, WideStore, WideValues,
    };
    use tek_proto::channel::faults::{Fault, FaultEntry};

    fn db() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        db.add_devices(
            &[NewDevice {
                id: 1,
                key: tek_proto::crypto::Key([1; 16]),
                name: "meter".into(),
            }],
            0,
        )
        .unwrap();
        (dir, db)
    }

    /// The built-in single-phase meter template's map, saved for version 2.
    fn meter(db: &Sqlite) -> DeviceChannels {
        let t = builtin::sdm120();
        let set = ChannelSet {
            map: t.map(),
            roles: t.roles_value(),
            channels: t.labels(),
        };
        db.save_device_channels(1, 2, None, &set, 10).unwrap();
        db.device_channels(1, Some(2)).unwrap().unwrap()
    }

    fn row(seq: u32, time: i64, version: Option<u32>, values: &[Option<i32>]) -> WideRow {
        WideRow {
            device_id: 1,
            boot: 1,
            seq,
            time,
            config_version: version,
            values: WideValues::from_options(values),
        }
    }

    #[test]
    fn values_are_formatted_with_unit_and_precision() {
        assert_eq!(format_value(231.456, 1, "V"), "231.5 V");
        assert_eq!(format_value(3.0, 0, ""), "3");
        assert_eq!(format_value(-0.001, 2, "°C"), "0.00 °C");
        assert_eq!(format_value(-1.5, 1, "A"), "-1.5 A");
    }

    #[test]
    fn the_factory_map_shows_nothing_new() {
        let (_d, db) = db();
        // A new device starts with the pool map at version 0.
        assert_eq!(load_now(&db, 1, 0).unwrap(), None);
        meter(&db);
        // Still version 0 confirmed: the meter map is not in effect yet.
        assert_eq!(load_now(&db, 1, 1).unwrap(), None);
        assert!(load_now(&db, 1, 2).unwrap().is_some());
    }

    #[test]
    fn latest_values_no_value_and_errors() {
        let (_d, db) = db();
        let entry = meter(&db);
        let n = entry.channels.len();
        assert!(n >= 2);
        // Nothing logged yet: every channel has no value, never 0.
        let now = load_now(&db, 1, 2).unwrap().unwrap();
        assert_eq!(now.time, None);
        assert!(now
            .channels
            .iter()
            .all(|c| c.value.is_none() && c.text == NO_VALUE));
        let mut values = vec![Some(2_314); n];
        values[1] = None;
        db.insert_wide(&[
            row(1, 1_000, Some(2), &values),
            // A record of the earlier (pool) map is not read as the meter's.
            row(0, 900, Some(0), &[Some(5); 5]),
        ])
        .unwrap();
        db.store_channel_faults(
            1,
            &[FaultEntry {
                channel: 1,
                errors: 7,
                last: Fault::Timeout,
            }],
            1_001,
        )
        .unwrap();
        let now = load_now(&db, 1, 2).unwrap().unwrap();
        assert_eq!(now.time, Some(1_000));
        // The single-phase meter's roles name channel 2 as the power.
        assert_eq!(now.power_w, Some(2_314.0));
        assert_eq!((now.water_c, now.air_c), (None, None));
        let scale = scales(&entry)[0];
        let first = &now.channels[0];
        assert_eq!(first.value, Some(2_314.0 * scale));
        assert_eq!(
            first.text,
            format_value(2_314.0 * scale, first.decimals, &first.unit)
        );
        assert_eq!(first.error, None);
        let second = &now.channels[1];
        assert_eq!((second.value, second.text.as_str()), (None, NO_VALUE));
        assert_eq!(
            second.error,
            Some(ChannelError {
                text: "Modbus timeout (7 failed samples)".into(),
                last: "Modbus timeout".into(),
                errors: 7,
                reported_at: 1_001
            })
        );
        // Only a record of an earlier map: no values.
        let old = row(5, 2_000, Some(1), &[Some(1); 3]);
        assert_eq!(channels_now(&entry, Some(&old), &[]).time, None);
    }

    #[test]
    fn buckets_skip_gaps_and_older_maps() {
        let (_d, db) = db();
        let entry = meter(&db);
        let scale = scales(&entry)[0];
        let rows: Vec<WideRow> = (0..10u32)
            .map(|s| {
                let v = if (4..6).contains(&s) {
                    None
                } else {
                    Some(10 * s as i32)
                };
                let version = if s == 0 { Some(1) } else { Some(2) };
                row(s, 60 * i64::from(s), version, &[v])
            })
            .collect();
        db.insert_wide(&rows).unwrap();
        let b = channel_buckets(&db, &entry, 0, 0, 600, 120)
            .unwrap()
            .unwrap();
        // Buckets [0,120): record 1 only (0 is of version 1); [120,240): 2, 3; [240,360): none
        // (4 and 5 have no value); [360,480): 6, 7; [480,600): 8, 9.
        assert_eq!(
            b.iter().map(|b| (b.start, b.count)).collect::<Vec<_>>(),
            [(0, 1), (120, 2), (360, 2), (480, 2)]
        );
        assert_eq!(b[1].mean, 25.0 * scale);
        assert_eq!(all_channel_buckets(&db, &entry, 0, 600, 120).unwrap()[0], b);
        assert_eq!((b[1].min, b[1].max), (20.0 * scale, 30.0 * scale));
        // A channel the map does not have.
        assert_eq!(channel_buckets(&db, &entry, 120, 0, 600, 60).unwrap(), None);
        assert_eq!(channel_points(&db, &entry, 120, 0, 600, 5).unwrap(), None);
        // Record by record: 1, 2, 3, then 6 (4 and 5 have no value); more are left.
        let (points, more) = channel_points(&db, &entry, 0, 0, 600, 4).unwrap().unwrap();
        assert_eq!(
            points,
            [
                (60, 10.0 * scale),
                (120, 20.0 * scale),
                (180, 30.0 * scale),
                (360, 60.0 * scale)
            ]
        );
        assert!(more);
    }

    /// Buckets read from the rollups (their quarter hours) and the records (the ends) equal
    /// those computed from the records alone, whatever the range's ends, for records of an
    /// earlier map, of an unknown version and with gaps.
    #[test]
    fn buckets_from_rollups_equal_those_from_records() {
        let (_d, db) = db();
        let entry = meter(&db);
        let scale = scales(&entry)[1];
        let t0 = 900 * 2_000_000;
        let rows: Vec<WideRow> = (0..5_000u32)
            .map(|s| {
                let version = match s {
                    _ if s % 37 == 0 => None,
                    _ if s < 1_000 => Some(1),
                    _ => Some(2),
                };
                let v = (s % 13 != 0).then(|| (s as i32 * 7_919) % 1_000 - 300);
                row(s, t0 + 47 * i64::from(s), version, &[Some(1), v])
            })
            .collect();
        for batch in rows.chunks(700) {
            db.insert_wide(batch).unwrap();
        }
        let from_records = |from: i64, to: i64, step: i64| -> Vec<ChannelBucket> {
            let mut by: BTreeMap<i64, (u64, i64, i64, i64)> = BTreeMap::new();
            for r in rows.iter().filter(|r| under(&entry, r)) {
                let Some(v) = r.values.get(1).map(i64::from) else {
                    continue;
                };
                if r.time < from || r.time >= to {
                    continue;
                }
                let b = by
                    .entry(r.time.div_euclid(step) * step)
                    .or_insert((0, 0, v, v));
                *b = (b.0 + 1, b.1 + v, b.2.min(v), b.3.max(v));
            }
            by.into_iter()
                .map(|(start, (n, sum, lo, hi))| ChannelBucket {
                    start,
                    count: n,
                    mean: sum as f64 / n as f64 * scale,
                    min: lo as f64 * scale,
                    max: hi as f64 * scale,
                })
                .collect()
        };
        let end = t0 + 47 * 5_000;
        for (from, to) in [(t0, end), (t0 + 17, end - 100), (t0 + 40_000, t0 + 40_899)] {
            for step in [900, 2_700, 3_600, 86_400, 600, 47] {
                let got = channel_buckets(&db, &entry, 1, from, to, step)
                    .unwrap()
                    .unwrap();
                assert_eq!(got, from_records(from, to, step), "{from}..{to} by {step}");
            }
        }
        assert!(!from_records(t0, end, 3_600).is_empty());
    }
}
