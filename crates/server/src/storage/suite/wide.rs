//! Suite checks of wide telemetry records ([`crate::storage::wide`]) on every backend: a gap
//! stays a gap, a record is stored once whatever its retransmissions, records of 128 channels
//! and of mixed channel sets read back exactly, series skip the gaps, and estimated boots count
//! wide records.

use super::dev;
use crate::storage::{
    Error, EstimatedBoot, Storage, TelemetryKey, TelemetryQuery, WideRow, WideValues,
};
use tek_proto::channel::wide::ChannelSet;

fn row(boot: u32, seq: u32, time: i64, values: &[Option<i32>]) -> WideRow {
    WideRow {
        device_id: 1,
        boot,
        seq,
        time,
        config_version: Some(7),
        values: WideValues::from_options(values),
    }
}

fn range(from: i64, to: i64, limit: usize) -> TelemetryQuery {
    TelemetryQuery {
        device_id: 1,
        from,
        to,
        limit,
    }
}

/// 16 channels of pool-like values; channel 11 has no value in odd records.
fn sixteen(seq: u32) -> Vec<Option<i32>> {
    let s = seq as i32;
    (0..16)
        .map(|ch| match ch {
            11 if seq % 2 == 1 => None,
            0 => Some(1500 + s),
            1 => Some(1_234_567 + 25 * s),
            2 => Some(2650 - s),
            _ => Some(ch * 100 - 700 + s % 3),
        })
        .collect()
}

/// Gaps stay gaps, idempotence on (device, boot, seq) across retransmissions stamped apart,
/// 128-channel and mixed-set records, the configuration version, pages and series.
pub(crate) fn wide_records_keep_gaps_and_are_idempotent(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let batch: Vec<WideRow> = (0..4)
        .map(|s| row(3, s, 1_000 + 60 * i64::from(s), &sixteen(s)))
        .collect();
    assert_eq!(db.insert_wide(&batch).unwrap(), 4);
    // Retransmitted (its Ack was lost), stamped a second apart by another server, together
    // with a new record, and one record twice in the same batch.
    let mut again: Vec<WideRow> = batch[2..]
        .iter()
        .map(|r| WideRow {
            time: r.time + 1,
            ..r.clone()
        })
        .collect();
    let fifth = row(3, 4, 1_240, &sixteen(4));
    again.push(fifth.clone());
    again.push(fifth.clone());
    assert_eq!(db.insert_wide(&again).unwrap(), 1);
    assert_eq!(db.insert_wide(&[]).unwrap(), 0);
    assert_eq!(db.wide_count(1).unwrap(), 5);
    assert_eq!(db.telemetry_count(1).unwrap(), 0, "narrow records apart");
    let mut all = batch.clone();
    all.push(fifth);
    assert_eq!(db.wide_records(&range(0, 10_000, 100)).unwrap(), all);

    // A missing value is no value, never 0.
    let r1 = &db.wide_records(&range(1_060, 1_061, 10)).unwrap()[0];
    assert_eq!(r1.values.get(11), None);
    assert_eq!(r1.values.get(10), Some(301));
    assert_eq!(r1.values.channels().len(), 15);
    let series = db.wide_series(&range(0, 10_000, 100), 11).unwrap();
    assert_eq!(series, vec![(1_000, 400), (1_120, 402), (1_240, 401)]);
    assert_eq!(
        db.wide_series(&range(0, 10_000, 100), 0).unwrap(),
        (0..5)
            .map(|s| (1_000 + 60 * i64::from(s), 1500 + s))
            .collect::<Vec<_>>()
    );
    assert_eq!(db.wide_series(&range(0, 10_000, 2), 0).unwrap().len(), 2);
    assert!(db
        .wide_series(&range(0, 10_000, 100), 16)
        .unwrap()
        .is_empty());
    assert!(matches!(
        db.wide_series(&range(0, 10_000, 100), 128),
        Err(Error::Missing(_))
    ));

    // 128 channels with the extreme values; a mixed set; a record without any value; a new
    // boot reuses sequence numbers; an unknown configuration version.
    let full: Vec<Option<i32>> = (0..128)
        .map(|ch| {
            Some(match ch {
                0 => i32::MIN,
                127 => i32::MAX,
                _ => ch * 1_000_003 - 64_000_000,
            })
        })
        .collect();
    let wide = row(4, 0, 2_000, &full);
    let mut mixed_values = vec![None; 128];
    mixed_values[0] = Some(-1);
    mixed_values[40] = Some(40);
    mixed_values[127] = Some(0);
    let mixed = WideRow {
        config_version: None,
        ..row(4, 1, 2_060, &mixed_values)
    };
    let empty = row(4, 2, 2_120, &[None; 20]);
    let other_device = WideRow {
        device_id: 2,
        ..row(4, 0, 2_000, &full)
    };
    assert_eq!(
        db.insert_wide(&[wide.clone(), mixed.clone(), empty.clone(), other_device])
            .unwrap(),
        4
    );
    let got = db.wide_records(&range(2_000, 3_000, 10)).unwrap();
    assert_eq!(got, vec![wide.clone(), mixed.clone(), empty.clone()]);
    assert_eq!(got[0].values.channels(), ChannelSet(u128::MAX));
    assert_eq!(got[0].values.get(0), Some(i32::MIN));
    assert_eq!(got[0].values.get(127), Some(i32::MAX));
    assert_eq!(got[1].values.get(127), Some(0), "zero is a value");
    assert_eq!(got[1].values.get(1), None);
    assert_eq!(got[1].config_version, None);
    assert_eq!(got[2].values.channels(), ChannelSet(0));
    assert_eq!(
        db.wide_series(&range(0, 10_000, 100), 40).unwrap(),
        vec![(2_000, 40 * 1_000_003 - 64_000_000), (2_060, 40)]
    );
    assert_eq!(db.wide_count(2).unwrap(), 1);

    // Pages walk the range once, in (time, boot, seq) order.
    let mut walked = Vec::new();
    let mut after: Option<TelemetryKey> = None;
    for _ in 0..10 {
        let page = db.wide_page(&range(0, 10_000, 3), after).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key());
        walked.extend(page);
    }
    assert_eq!(walked.len(), 8);
    assert_eq!(walked[..5], all[..]);
    assert_eq!(walked[5..], [wide, mixed, empty]);
}

/// A series longer than a page of the series read, with a gap in every other record.
pub(crate) fn wide_series_span_pages(db: &dyn Storage) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let rows: Vec<WideRow> = (0..2_500u32)
        .map(|s| {
            let v = i32::try_from(s).unwrap();
            row(
                1,
                s,
                i64::from(s) * 10,
                &[Some(v), (s % 2 == 0).then_some(-v)],
            )
        })
        .collect();
    assert_eq!(db.insert_wide(&rows).unwrap(), 2_500);
    let one = db.wide_series(&range(0, i64::MAX, usize::MAX), 1).unwrap();
    assert_eq!(one.len(), 1_250);
    assert!(one
        .iter()
        .enumerate()
        .all(|(i, &(t, v))| t == i as i64 * 20 && v == -(i as i32) * 2));
    assert_eq!(
        db.wide_series(&range(0, i64::MAX, usize::MAX), 0)
            .unwrap()
            .len(),
        2_500
    );
    let some = db.wide_series(&range(10_000, 20_000, 7), 1).unwrap();
    assert_eq!(some.len(), 7);
    assert_eq!(some[0], (10_000, -1_000));
}

/// A Backlog in the wide layout with estimated times: the boot's row counts its wide records
/// with the narrow ones.
pub(crate) fn estimated_boots_count_wide_records(db: &dyn Storage) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let rows: Vec<WideRow> = (0..3)
        .map(|s| row(2, s, 500 + 60 * i64::from(s), &[Some(1)]))
        .collect();
    db.insert_wide(&rows).unwrap();
    db.note_estimated_boots(&[(1, 2)]).unwrap();
    assert_eq!(
        db.estimated_boots(1, 10).unwrap(),
        vec![EstimatedBoot {
            boot: 2,
            records: 3,
            first: 500,
            last: 620
        }]
    );
}

/// The newest wide record is the last in read order (time, then boot, then seq), per device.
pub(crate) fn latest_wide_is_the_newest_record(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    assert_eq!(db.latest_wide(1).unwrap(), None);
    let rows = [
        row(3, 1, 1_000, &[Some(1), None]),
        row(3, 2, 1_060, &[None, Some(2)]),
        row(2, 9, 1_060, &[Some(5)]),
        row(3, 0, 900, &[Some(7)]),
    ];
    db.insert_wide(&rows).unwrap();
    let latest = db.latest_wide(1).unwrap().unwrap();
    assert_eq!((latest.boot, latest.seq, latest.time), (3, 2, 1_060));
    assert_eq!(latest.values.get(0), None, "a gap stays a gap");
    assert_eq!(latest.values.get(1), Some(2));
    assert_eq!(latest.config_version, Some(7));
    assert_eq!(db.latest_wide(2).unwrap(), None);
}

/// A ChannelFaults report replaces the device's previous one as a whole; other devices keep
/// theirs; every fault code, the unknown ones too, reads back as stored.
pub(crate) fn channel_faults_replace_the_last_report(db: &dyn Storage) {
    use tek_proto::channel::faults::{Fault, FaultEntry};
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    assert_eq!(db.channel_faults(1).unwrap(), vec![]);
    let entry = |channel, errors, last| FaultEntry {
        channel,
        errors,
        last,
    };
    let first = [
        entry(0, 3, Fault::Timeout),
        entry(4, 65_535, Fault::Exception(2)),
        entry(127, 1, Fault::Unknown(200)),
    ];
    db.store_channel_faults(1, &first, 500).unwrap();
    db.store_channel_faults(2, &[entry(1, 1, Fault::Crc)], 400)
        .unwrap();
    let got = db.channel_faults(1).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.iter()
            .map(|f| (f.channel, f.errors, f.last, f.received_at))
            .collect::<Vec<_>>(),
        [
            (0, 3, Fault::Timeout, 500),
            (4, 65_535, Fault::Exception(2), 500),
            (127, 1, Fault::Unknown(200), 500)
        ]
    );
    // The next report names only channel 4: channels 0 and 127 no longer fail.
    db.store_channel_faults(1, &[entry(4, 4, Fault::Malformed)], 600)
        .unwrap();
    let got = db.channel_faults(1).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].channel, got[0].errors, got[0].last),
        (4, 4, Fault::Malformed)
    );
    // An empty report: nothing fails.
    db.store_channel_faults(1, &[], 700).unwrap();
    assert_eq!(db.channel_faults(1).unwrap(), vec![]);
    assert_eq!(db.channel_faults(2).unwrap().len(), 1);
}
