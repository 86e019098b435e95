//! Raw records sealed into chunks ([`crate::storage::chunk`]): every read returns the same
//! records before and after sealing, retransmissions of sealed records are stored once, late
//! records for a sealed day join it, and raw retention deletes rows and chunks alike.

use super::dev;
use crate::storage::chunk::{DAY_S, GRACE_S};
use crate::storage::*;

/// The first day of the records of these checks (a Monday in 2024).
const DAY0: i64 = 19_723 * DAY_S;

/// Records of device 1 over three days in two boots: every 7 minutes, the water temperature
/// missing from every third (no value, not 0), a reboot on day 1; device 2 a few records.
fn history() -> Vec<TelemetryRow> {
    let mut rows = Vec::new();
    let mut energy = 10_000;
    for i in 0..(3 * 1440 / 7) {
        let time = DAY0 + i64::from(i) * 7 * 60 + 13;
        let (boot, seq) = if time < DAY0 + DAY_S + 43_200 {
            (4, i)
        } else {
            (5, i + 7)
        };
        energy += i32::try_from(i % 5).unwrap();
        let mask = if i % 3 == 0 { 0b1_1011 } else { 0b1_1111 };
        let mut values = [0; 8];
        for (ch, v) in [
            1_000 + (i % 90) as i32,
            energy,
            2_650 - (i % 40) as i32,
            -120,
            (i % 4) as i32,
        ]
        .into_iter()
        .enumerate()
        {
            if mask & (1 << ch) != 0 {
                values[ch] = v;
            }
        }
        rows.push(TelemetryRow {
            device_id: 1,
            boot,
            seq,
            time,
            channels: mask,
            values,
        });
    }
    for seq in 0..3 {
        rows.push(TelemetryRow {
            device_id: 2,
            boot: 1,
            seq,
            time: DAY0 + 600 * i64::from(seq),
            channels: 0b1,
            values: [77, 0, 0, 0, 0, 0, 0, 0],
        });
    }
    rows
}

/// What every raw read of device 1 answers, to compare before and after sealing.
#[derive(Debug, PartialEq)]
struct Reads {
    all: Vec<TelemetryRow>,
    paged: Vec<Vec<TelemetryRow>>,
    count: u64,
    raw_buckets: Vec<Bucket>,
    quarter_buckets: Vec<Bucket>,
    day_buckets: Vec<Bucket>,
    energy: Vec<DayEnergy>,
    latest: Option<TelemetryRow>,
    boots: Vec<EstimatedBoot>,
}

fn reads(db: &dyn Storage) -> Reads {
    let q = |limit| TelemetryQuery {
        device_id: 1,
        from: DAY0 - DAY_S,
        to: DAY0 + 4 * DAY_S,
        limit,
    };
    let mut paged = Vec::new();
    for limit in [1, 7, 100, 1_000] {
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = db.telemetry_page(&q(limit), after).unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = Some(TelemetryKey::of(last));
            walked.extend(page);
        }
        paged.push(walked);
    }
    // A range starting and ending inside days, in the middle of a second of records.
    let inner = db
        .telemetry(&TelemetryQuery {
            device_id: 1,
            from: DAY0 + 50_000,
            to: DAY0 + DAY_S + 70_000,
            limit: 10_000,
        })
        .unwrap();
    paged.push(inner);
    db.note_estimated_boots(&[(1, 4), (1, 5)]).unwrap();
    Reads {
        all: db.telemetry(&q(100_000)).unwrap(),
        paged,
        count: db.telemetry_count(1).unwrap(),
        raw_buckets: db
            .telemetry_buckets(1, DAY0 - 1_000, DAY0 + 3 * DAY_S, 1_000)
            .unwrap(),
        quarter_buckets: db
            .telemetry_buckets(1, DAY0 + 100, DAY0 + 3 * DAY_S, 3_600)
            .unwrap(),
        day_buckets: db
            .telemetry_buckets(1, DAY0, DAY0 + 3 * DAY_S, DAY_S)
            .unwrap(),
        energy: db.energy_per_day(1, DAY0, DAY0 + 3 * DAY_S).unwrap(),
        latest: db.latest_telemetry(1).unwrap(),
        boots: db.estimated_boots(1, 10).unwrap(),
    }
}

/// Sealed records read back equal, value for value, through every raw read; a retransmission
/// of a sealed record is not stored (nor rolled up) again; a late record for a sealed day is
/// stored, read in its place and sealed with that day (SQLite: into its one chunk, PostgreSQL:
/// into a second one).
pub(crate) fn sealed_records_read_back_equal(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let rows = history();
    assert_eq!(db.insert_telemetry(&rows).unwrap(), rows.len() as u64);
    let before = reads(db);
    assert_eq!(before.all.len(), 3 * 1440 / 7);
    assert!(before.all.iter().any(|r| r.get(2).is_none()));
    assert!(before.raw_buckets.len() > 200 && before.energy.len() == 3);
    // Nothing is closed before the grace of day 0 is over.
    assert_eq!(db.seal_closed(DAY0 + DAY_S + GRACE_S - 1).unwrap(), 0);
    // Days 0 and 1 are closed; day 2 still open.
    let now = DAY0 + 2 * DAY_S + GRACE_S;
    db.maintain(now, 0).unwrap();
    let open_day = rows.iter().filter(|r| r.time >= DAY0 + 2 * DAY_S).count() as u64;
    assert_eq!(db.seal_closed(now).unwrap(), 0, "sealed already");
    assert_eq!(reads(db), before);
    // Everything closed: the latest record comes from a chunk.
    let later = DAY0 + 3 * DAY_S + GRACE_S;
    // Moved out of rows: all of the open day's records, or fewer where the fold stored them as
    // chunks already (SQLite: a device's run of many records in one fold).
    assert!(db.seal_closed(later).unwrap() <= open_day);
    assert_eq!(db.seal_closed(later).unwrap(), 0, "sealed already");
    let all_sealed = reads(db);
    assert_eq!(all_sealed, before);
    assert_eq!(
        all_sealed.latest,
        rows.iter().rfind(|r| r.device_id == 1).copied()
    );
    assert_eq!(
        db.telemetry(&TelemetryQuery {
            device_id: 2,
            from: 0,
            to: i64::MAX,
            limit: 10
        })
        .unwrap(),
        rows[rows.len() - 3..]
    );

    // Retransmissions of sealed records, alone and with a new one, stamped a second apart.
    let sealed = rows[10];
    let resent = TelemetryRow {
        time: sealed.time + 1,
        ..sealed
    };
    assert_eq!(db.insert_telemetry_new(&[sealed, resent]).unwrap(), vec![]);
    let late = TelemetryRow {
        seq: 1_000_000,
        time: DAY0 + 3,
        ..rows[0]
    };
    assert_eq!(
        db.insert_telemetry_new(&[rows[20], late, rows[400]])
            .unwrap(),
        vec![late]
    );
    assert_eq!(db.telemetry_count(1).unwrap(), before.count + 1);
    let day_buckets = db
        .telemetry_buckets(1, DAY0, DAY0 + 3 * DAY_S, DAY_S)
        .unwrap();
    assert_eq!(day_buckets[0].count, before.day_buckets[0].count + 1);
    assert_eq!(day_buckets[1..], before.day_buckets[1..], "rolled up once");
    let with_late = reads(db);
    assert_eq!(
        with_late.all[0], late,
        "in time order before the sealed records"
    );
    assert_eq!(with_late.all[1..], before.all[..]);
    // Sealed into an additional chunk of day 0; it reads the same and is still stored once.
    assert_eq!(db.seal_closed(later).unwrap(), 1);
    assert_eq!(reads(db), with_late);
    assert_eq!(db.insert_telemetry_new(&[late, sealed]).unwrap(), vec![]);
    assert_eq!(reads(db), with_late);
}

/// The newest records of a page of devices in one call equal each device's own answer: a device
/// with rows and chunks, one whose records are all sealed, one with rows only, one with a late
/// record in a sealed day newer than its chunks, one with only wide records, one with none,
/// unknown and repeated ids; in the order asked.
pub(crate) fn latest_of_many_equals_each_alone(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2), dev(3), dev(4), dev(5), dev(6)], 0)
        .unwrap();
    let mut rows = history();
    // Device 3: rows only, in the still open day 2, two records in the same second.
    for seq in 0..4u32 {
        rows.push(TelemetryRow {
            device_id: 3,
            boot: 2,
            seq,
            time: DAY0 + 2 * DAY_S + 100 + i64::from(seq / 2),
            channels: 0b1,
            values: [i32::try_from(seq).unwrap(), 0, 0, 0, 0, 0, 0, 0],
        });
    }
    // Device 4: day 0 only.
    rows.push(TelemetryRow {
        device_id: 4,
        boot: 1,
        seq: 5,
        time: DAY0 + 3_600,
        channels: 0b10,
        values: [0, 9, 0, 0, 0, 0, 0, 0],
    });
    db.insert_telemetry(&rows).unwrap();
    // Device 5 sends only wide records: no narrow record to show.
    let wide = WideRow {
        device_id: 5,
        boot: 1,
        seq: 1,
        time: DAY0 + 2 * DAY_S,
        config_version: Some(1),
        values: WideValues::from_options(&[Some(3)]),
    };
    db.insert_wide(&[wide]).unwrap();
    let ask = [6, 5, 4, 3, 2, 1, 99, 1];
    let check = |rows: &[TelemetryRow], what: &str| {
        let batched = db.latest_telemetry_of(&ask).unwrap();
        let alone: Vec<_> = ask
            .iter()
            .map(|&d| db.latest_telemetry(d).unwrap())
            .collect();
        assert_eq!(batched, alone, "{what}");
        let expected = |d: u32| {
            rows.iter()
                .filter(|r| r.device_id == d)
                .max_by_key(|r| (r.time, r.boot, r.seq))
                .copied()
        };
        let want: Vec<_> = ask.iter().map(|&d| expected(d)).collect();
        assert_eq!(batched, want, "{what}");
        batched
    };
    let stored = check(&rows, "rows");
    assert!(stored[0].is_none() && stored[1].is_none() && stored[6].is_none());
    assert_eq!(
        stored[3].map(|r| r.seq),
        Some(3),
        "newest in the same second"
    );
    assert_eq!(db.latest_telemetry_of(&[]).unwrap(), vec![]);
    // Days 0 and 1 sealed: device 1 in rows and chunks, devices 2 and 4 only in chunks.
    db.maintain(DAY0 + 2 * DAY_S + GRACE_S, 0).unwrap();
    check(&rows, "days 0 and 1 sealed");
    // Everything sealed; then a late record of device 4 in its sealed day 0, newer than its
    // chunk's last, which a bound by the chunks' days must still find.
    db.seal_closed(DAY0 + 3 * DAY_S + GRACE_S).unwrap();
    assert_eq!(check(&rows, "all sealed"), stored);
    let late = TelemetryRow {
        seq: 6,
        time: DAY0 + 7_200,
        ..rows[rows.len() - 1]
    };
    assert_eq!(db.insert_telemetry_new(&[late]).unwrap(), vec![late]);
    rows.push(late);
    assert_eq!(check(&rows, "a late record")[2], Some(late));
    db.seal_closed(DAY0 + 3 * DAY_S + GRACE_S).unwrap();
    assert_eq!(check(&rows, "the late record sealed")[2], Some(late));
}

/// A device's newest record follows its newest chunk as it is replaced — a newer day sealed, a
/// late record sealed into another chunk of the newest day, the chunks expired by retention and
/// new ones sealed — each answer read twice (the second from what the backend remembered of the
/// chunk, `storage::newest_memo`), and a retransmission of sealed records changes nothing.
pub(crate) fn latest_follows_the_newest_chunk(db: &dyn Storage) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let record = |seq: u32, time: i64, power: i32| TelemetryRow {
        device_id: 1,
        boot: 3,
        seq,
        time,
        channels: 0b11,
        values: [power, i32::try_from(seq).unwrap(), 0, 0, 0, 0, 0, 0],
    };
    let latest_twice = |want: Option<TelemetryRow>, what: &str| {
        for _ in 0..2 {
            assert_eq!(db.latest_telemetry(1).unwrap(), want, "{what}");
            assert_eq!(db.latest_telemetry_of(&[1]).unwrap(), vec![want], "{what}");
        }
    };
    // Day 0 every 10 minutes, sealed: the newest record is in its chunk.
    let day0: Vec<TelemetryRow> = (0..140u32)
        .map(|i| record(i, DAY0 + i64::from(i) * 600, 100 + i as i32))
        .collect();
    db.insert_telemetry(&day0).unwrap();
    db.seal_closed(DAY0 + DAY_S + GRACE_S).unwrap();
    latest_twice(day0.last().copied(), "day 0 sealed");
    // Retransmitted: stored once, the same answer.
    assert_eq!(db.insert_telemetry_new(&day0[100..]).unwrap(), vec![]);
    latest_twice(day0.last().copied(), "day 0 sent again");
    // A late record of day 0, newer than the chunk's last: first a row, then a second chunk of
    // the same day.
    let late = record(500, DAY0 + DAY_S - 1, -7);
    assert_eq!(db.insert_telemetry_new(&[late]).unwrap(), vec![late]);
    latest_twice(Some(late), "a late record in a row");
    db.seal_closed(DAY0 + DAY_S + GRACE_S).unwrap();
    latest_twice(Some(late), "the late record sealed");
    // Day 1 sealed: a newer chunk.
    let day1: Vec<TelemetryRow> = (0..50u32)
        .map(|i| record(600 + i, DAY0 + DAY_S + i64::from(i) * 60, 7 * i as i32))
        .collect();
    db.insert_telemetry(&day1).unwrap();
    db.seal_closed(DAY0 + 2 * DAY_S + GRACE_S).unwrap();
    latest_twice(day1.last().copied(), "day 1 sealed");
    // Everything expired: no record left.
    db.maintain(DAY0 + 4 * DAY_S, 1).unwrap();
    assert_eq!(db.telemetry_count(1).unwrap(), 0);
    latest_twice(None, "expired");
    // Records again, on day 4, sealed: the newest chunk is new again.
    let day4: Vec<TelemetryRow> = (0..30u32)
        .map(|i| record(900 + i, DAY0 + 4 * DAY_S + i64::from(i) * 60, -(i as i32)))
        .collect();
    db.insert_telemetry(&day4).unwrap();
    db.seal_closed(DAY0 + 5 * DAY_S + GRACE_S).unwrap();
    latest_twice(day4.last().copied(), "day 4 sealed");
}

/// A chunk rewritten in place by another writer (`rewrite` sets the blob of device 1's chunk
/// to the one given: same row, same records' times and seqs, other values — what comparing the
/// chunk's row alone would take for the chunk already decoded) gives its new newest record.
pub(crate) fn latest_after_a_chunk_rewritten_in_place(db: &dyn Storage, rewrite: &dyn Fn(&[u8])) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let day: Vec<TelemetryRow> = (0..100u32)
        .map(|i| TelemetryRow {
            device_id: 1,
            boot: 2,
            seq: i,
            time: DAY0 + i64::from(i) * 600,
            channels: 0b101,
            values: [i32::try_from(i).unwrap(), 0, 40, 0, 0, 0, 0, 0],
        })
        .collect();
    db.insert_telemetry(&day).unwrap();
    db.seal_closed(DAY0 + DAY_S + GRACE_S).unwrap();
    for _ in 0..2 {
        assert_eq!(db.latest_telemetry(1).unwrap(), day.last().copied());
    }
    let other: Vec<TelemetryRow> = day
        .iter()
        .map(|r| TelemetryRow {
            values: [-r.values[0], 0, 41, 0, 0, 0, 0, 0],
            ..*r
        })
        .collect();
    let (before, after) = (
        crate::storage::chunk::seal(&day).unwrap(),
        crate::storage::chunk::seal(&other).unwrap(),
    );
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].meta, after[0].meta, "the same row");
    assert_ne!(before[0].data, after[0].data);
    rewrite(&after[0].data);
    assert_eq!(db.telemetry_count(1).unwrap(), 100);
    for _ in 0..2 {
        assert_eq!(db.latest_telemetry(1).unwrap(), other.last().copied());
        assert_eq!(
            db.latest_telemetry_of(&[1, 1]).unwrap(),
            vec![other.last().copied(); 2]
        );
    }
}

/// `retention_days` deletes raw records (rows and chunks) of the days that ended that long ago,
/// on both backends; 0 keeps everything.
pub(crate) fn raw_retention_deletes_rows_and_chunks(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let rows = history();
    db.insert_telemetry(&rows).unwrap();
    let total = db.telemetry_count(1).unwrap();
    // Day 0 sealed, days 1 and 2 still rows.
    db.maintain(DAY0 + DAY_S + GRACE_S, 0).unwrap();
    assert_eq!(db.telemetry_count(1).unwrap(), total);
    let on = |from: i64, to: i64| {
        rows.iter()
            .filter(|r| r.device_id == 1 && (from..to).contains(&r.time))
            .count() as u64
    };
    // Keep two days at the start of day 3: day 0 (chunks) goes, days 1 and 2 stay.
    db.maintain(DAY0 + 3 * DAY_S, 2).unwrap();
    assert_eq!(
        db.telemetry_count(1).unwrap(),
        on(DAY0 + DAY_S, DAY0 + 3 * DAY_S)
    );
    assert_eq!(db.telemetry_count(2).unwrap(), 0);
    // One day at day 3 + grace: day 1 (rows, or chunks sealed meanwhile) goes too.
    db.maintain(DAY0 + 3 * DAY_S + GRACE_S, 1).unwrap();
    assert_eq!(
        db.telemetry_count(1).unwrap(),
        on(DAY0 + 2 * DAY_S, DAY0 + 3 * DAY_S)
    );
    let left = db
        .telemetry(&TelemetryQuery {
            device_id: 1,
            from: 0,
            to: i64::MAX,
            limit: 100_000,
        })
        .unwrap();
    assert!(left.iter().all(|r| r.time >= DAY0 + 2 * DAY_S));
    assert_eq!(left.len() as u64, on(DAY0 + 2 * DAY_S, DAY0 + 3 * DAY_S));
}

/// A device's first record time ([`TelemetryStore::first_record_time`], index seeks) is the
/// time of the first record [`TelemetryStore::telemetry`] reads, whether it is in a row or a
/// chunk: none without records, then from rows, from chunks once sealed, and from a row again
/// when a late record older than every sealed one arrives. The earliest of several devices
/// ([`Storage::earliest_record_time`], asked at once) is the least of theirs, wide records
/// included.
pub(crate) fn first_record_time_from_rows_and_chunks(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2), dev(3), dev(4)], 0)
        .unwrap();
    let first_only = |id: u32| TelemetryQuery {
        device_id: id,
        from: i64::MIN,
        to: i64::MAX,
        limit: 1,
    };
    let first_wide = |id: u32| {
        db.wide_records(&first_only(id))
            .unwrap()
            .first()
            .map(|r| r.time)
    };
    let earliest_checked = || {
        for set in [
            &[][..],
            &[1],
            &[2],
            &[3],
            &[4],
            &[1, 2, 3, 4],
            &[4, 3, 2],
            &[3, 4],
        ] {
            let each = set
                .iter()
                .flat_map(|&d| [db.first_record_time(d).unwrap(), first_wide(d)])
                .flatten()
                .min();
            assert_eq!(
                db.earliest_record_time(set).unwrap(),
                each,
                "devices {set:?}"
            );
        }
    };
    let first_read = |id: u32| {
        db.telemetry(&first_only(id))
            .unwrap()
            .first()
            .map(|r| r.time)
    };
    let check = |id: u32, expected: Option<i64>| {
        assert_eq!(db.first_record_time(id).unwrap(), expected, "device {id}");
        assert_eq!(first_read(id), expected, "device {id}");
        earliest_checked();
    };
    check(1, None);
    // Device 4 sends only wide records, the first of them before anyone's narrow ones.
    let wide = |seq: u32, time: i64| WideRow {
        device_id: 4,
        boot: 1,
        seq,
        time,
        config_version: Some(1),
        values: WideValues::from_options(&[Some(3)]),
    };
    db.insert_wide(&[wide(1, DAY0 + DAY_S)]).unwrap();
    assert_eq!(
        db.earliest_record_time(&[4, 3]).unwrap(),
        Some(DAY0 + DAY_S)
    );
    let rows = history();
    db.insert_telemetry(&rows).unwrap();
    let first1 = rows
        .iter()
        .filter(|r| r.device_id == 1)
        .map(|r| r.time)
        .min();
    check(1, first1);
    check(2, Some(DAY0));
    check(3, None);
    // Days 0 and 1 sealed: device 1's first record is in a chunk, device 2's too.
    db.maintain(DAY0 + 2 * DAY_S + GRACE_S, 0).unwrap();
    check(1, first1);
    check(2, Some(DAY0));
    // A late record before every sealed one: a row again.
    let late = TelemetryRow {
        seq: 2_000_000,
        time: DAY0 - 5 * DAY_S + 17,
        ..rows[0]
    };
    assert_eq!(db.insert_telemetry(&[late]).unwrap(), 1);
    check(1, Some(late.time));
    db.maintain(DAY0 + 4 * DAY_S + GRACE_S, 0).unwrap();
    check(1, Some(late.time));
    // A wide record earlier than every narrow one is the site's earliest.
    db.insert_wide(&[wide(2, DAY0 - 9 * DAY_S)]).unwrap();
    assert_eq!(
        db.earliest_record_time(&[1, 2, 3, 4]).unwrap(),
        Some(DAY0 - 9 * DAY_S)
    );
    check(1, Some(late.time));
}
