//! The storage test suite, run against every backend: each check takes a fresh `&dyn Storage`
//! (the two-handle checks take two handles on the same database, as two servers would have).
//!
//! [`suite_tests!`] expands to one `#[test]` per check for a backend, given an expression that
//! makes a fresh database (an `Option` of something that derefs to the backend: `None` skips,
//! see `postgres::testing` for when that is allowed) and one that opens a second handle on it.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use tek_proto::crypto::Key;
use tek_proto::message::{Command, CommandResult, Config, ConfigResult, RelayMode, Status};

mod channels;
mod chunks;
mod rollups;
mod wide;
pub(crate) use channels::{
    channel_registry_given_to_existing_devices_by_migration, channel_templates_lifecycle,
    device_channel_registry_versions, TO_VERSION_10,
};
pub(crate) use chunks::{
    first_record_time_from_rows_and_chunks, latest_after_a_chunk_rewritten_in_place,
    latest_follows_the_newest_chunk, latest_of_many_equals_each_alone,
    raw_retention_deletes_rows_and_chunks, sealed_records_read_back_equal,
};
pub(crate) use rollups::{
    channel_meter_data_matches_the_pool_meter, chart_rollups_backfilled_by_migration,
    chart_rollups_follow_raw_records, energy_rollups_backfilled_by_migration,
    energy_rollups_follow_raw_records, quarter_retention_keeps_the_days,
    sealed_quarters_read_like_rows, to_version_8, wide_rollups_backfilled_by_migration,
    wide_rollups_follow_raw_records,
};
pub(crate) use wide::{
    channel_faults_replace_the_last_report, estimated_boots_count_wide_records,
    latest_wide_is_the_newest_record, wide_records_keep_gaps_and_are_idempotent,
    wide_series_span_pages,
};

fn dev(id: u32) -> NewDevice {
    NewDevice {
        id,
        name: format!("d{id}"),
        key: Key([id as u8; 16]),
    }
}

/// Registry, keys, and the hello-counter compare-and-set.
pub(crate) fn devices_and_hello_counter_cas(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 100).unwrap();
    assert!(matches!(
        db.add_devices(&[dev(3), dev(2)], 100),
        Err(Error::Exists(2))
    ));
    // All or none: device 3 was not created.
    assert!(db.load_device(3).unwrap().is_none());
    assert_eq!(db.list_devices().unwrap().len(), 2);
    assert_eq!(db.max_device_id().unwrap(), 2);
    let d = db.load_device(1).unwrap().unwrap();
    assert_eq!(d.key, Key([1; 16]));
    assert_eq!(d.hello_counter, None);
    assert!(db.accept_hello(1, 1 << 32, 5).unwrap());
    assert!(
        !db.accept_hello(1, 1 << 32, 5).unwrap(),
        "same counter twice"
    );
    assert!(!db.accept_hello(1, 5, 5).unwrap(), "lower counter");
    assert!(db.accept_hello(1, u64::MAX, 6).unwrap(), "top half of u64");
    assert!(!db.accept_hello(1, u64::MAX - 1, 6).unwrap());
    assert!(!db.accept_hello(9, 1, 6).unwrap(), "unknown device");
    assert_eq!(
        db.load_device(1).unwrap().unwrap().hello_counter,
        Some(u64::MAX)
    );
    assert_eq!(db.device(1).unwrap().last_seen, Some(6));
    assert!(matches!(db.device(7), Err(Error::NotFound(7))));
    // The record type has no key to leak.
    assert!(!format!("{:?}", db.device(1).unwrap()).contains("0101"));
    // Ids use the whole u32 range.
    db.add_devices(&[dev(u32::MAX)], 0).unwrap();
    assert_eq!(db.max_device_id().unwrap(), u32::MAX);
    assert_eq!(db.device(u32::MAX).unwrap().id, u32::MAX);
    // Renaming.
    db.rename_device(2, "Kids' pool").unwrap();
    assert_eq!(db.device(2).unwrap().name, "Kids' pool");
    assert!(matches!(db.rename_device(7, "x"), Err(Error::NotFound(7))));
    // A new key (a stolen one replaced): the old key is gone, the counter starts again, the
    // rest of the device stays.
    db.replace_key(1, &Key([9; 16])).unwrap();
    let d = db.load_device(1).unwrap().unwrap();
    assert_eq!((d.key, d.hello_counter), (Key([9; 16]), None));
    assert!(
        db.accept_hello(1, 1, 7).unwrap(),
        "a low counter after the new key"
    );
    assert_eq!(db.device(1).unwrap().name, dev(1).name);
    assert!(matches!(
        db.replace_key(7, &Key([9; 16])),
        Err(Error::NotFound(7))
    ));
}

/// Keyset pagination: pages of any size, walked by the last key of each, give every record of
/// the range exactly once and in (time, boot, seq) order, across boots, records of the same
/// second and a clock that went back at a reboot; other devices and times outside stay out.
pub(crate) fn telemetry_pages_cover_the_range_once(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let row = |device_id, boot, seq, time| TelemetryRow {
        device_id,
        boot,
        seq,
        time,
        channels: 0b1,
        values: [i32::try_from(seq).unwrap(), 0, 0, 0, 0, 0, 0, 0],
    };
    let mut rows = Vec::new();
    for seq in 0..12 {
        // Three records a second in boot 5, and boot 4 (an earlier session) in the same seconds.
        rows.push(row(1, 5, seq, 1_000 + i64::from(seq / 3)));
        rows.push(row(1, 4, 100 + seq, 1_000 + i64::from(seq / 4)));
    }
    rows.push(row(1, 6, 0, 999)); // before the range
    rows.push(row(1, 6, 1, 1_004)); // at `to`: excluded
    rows.push(row(2, 5, 0, 1_001)); // another device
    rows.reverse(); // stored order must not matter
    assert_eq!(db.insert_telemetry(&rows).unwrap(), rows.len() as u64);
    let q = |limit| TelemetryQuery {
        device_id: 1,
        from: 1_000,
        to: 1_004,
        limit,
    };
    let mut expected: Vec<TelemetryRow> = rows
        .iter()
        .filter(|r| r.device_id == 1 && (1_000..1_004).contains(&r.time))
        .copied()
        .collect();
    expected.sort_by_key(TelemetryKey::of);
    assert_eq!(expected.len(), 24);
    assert_eq!(db.telemetry(&q(100)).unwrap(), expected);
    for limit in [1, 2, 5, 7, 24, 25] {
        let mut walked = Vec::new();
        let mut after = None;
        for _ in 0..=expected.len() {
            let page = db.telemetry_page(&q(limit), after).unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = Some(TelemetryKey::of(last));
            walked.extend(page);
        }
        assert_eq!(walked, expected, "pages of {limit}");
    }
    // A key before the range starts at `from`; after the last record there is nothing.
    let before = TelemetryKey {
        time: 999,
        boot: 6,
        seq: 0,
    };
    assert_eq!(
        db.telemetry_page(&q(3), Some(before)).unwrap(),
        expected[..3]
    );
    let last = TelemetryKey::of(expected.last().unwrap());
    assert!(db.telemetry_page(&q(3), Some(last)).unwrap().is_empty());
    // An empty range, and a device without records.
    let empty = TelemetryQuery {
        from: 2_000,
        to: 3_000,
        ..q(10)
    };
    assert!(db.telemetry_page(&empty, None).unwrap().is_empty());
    assert!(db
        .telemetry_page(
            &TelemetryQuery {
                device_id: 3,
                ..q(10)
            },
            None
        )
        .unwrap()
        .is_empty());
}

/// Idempotent on (device, boot, seq), also when a retransmission is stamped a little apart.
pub(crate) fn telemetry_is_idempotent(db: &dyn Storage) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let row = |seq, time| TelemetryRow {
        device_id: 1,
        boot: 2,
        seq,
        time,
        channels: 0b1_0101,
        values: [1500, 0, -250, 0, 3, 0, 0, 0],
    };
    assert_eq!(db.insert_telemetry(&[row(0, 10), row(1, 20)]).unwrap(), 2);
    assert_eq!(db.insert_telemetry(&[row(1, 20), row(2, 30)]).unwrap(), 1);
    // Retransmitted to another server, which stamps arrival - age one second later.
    assert_eq!(db.insert_telemetry(&[row(2, 31), row(1, 19)]).unwrap(), 0);
    // The same record twice in one batch.
    assert_eq!(db.insert_telemetry(&[row(3, 40), row(3, 41)]).unwrap(), 1);
    assert_eq!(db.insert_telemetry(&[]).unwrap(), 0);
    assert_eq!(db.telemetry_count(1).unwrap(), 4);
    let got = db
        .telemetry(&TelemetryQuery {
            device_id: 1,
            from: 15,
            to: 100,
            limit: 10,
        })
        .unwrap();
    assert_eq!(got, vec![row(1, 20), row(2, 30), row(3, 40)]);
    assert_eq!(got[0].get(2), Some(-250));
    assert_eq!(got[0].get(1), None);
    let two = db
        .telemetry(&TelemetryQuery {
            device_id: 1,
            from: 0,
            to: 100,
            limit: 2,
        })
        .unwrap();
    assert_eq!(two, vec![row(0, 10), row(1, 20)]);
    // Extreme values survive the round trip; a new boot starts its sequence again.
    let big = TelemetryRow {
        device_id: 1,
        boot: u32::MAX,
        seq: u32::MAX,
        time: 1_767_225_600,
        channels: 0xFF,
        values: [i32::MIN, i32::MAX, -1, 0, 1, 2, 3, 4],
    };
    let next_boot = TelemetryRow {
        boot: 3,
        ..row(0, 50)
    };
    assert_eq!(db.insert_telemetry(&[big, next_boot]).unwrap(), 2);
    let q = |from, to| TelemetryQuery {
        device_id: 1,
        from,
        to,
        limit: 10,
    };
    assert_eq!(
        db.telemetry(&q(1_767_225_600, 1_767_225_601)).unwrap(),
        vec![big]
    );
    assert_eq!(db.telemetry(&q(50, 51)).unwrap(), vec![next_boot]);
    // Which rows a commit stored (what MQTT publishes), in input order: not those stored before
    // (also when stamped a second apart), and a row repeated in the batch once.
    let (a, b) = (row(10, 70), row(11, 80));
    assert_eq!(
        db.insert_telemetry_new(&[row(3, 41), a, next_boot, b, a])
            .unwrap(),
        vec![a, b]
    );
    assert_eq!(db.insert_telemetry_new(&[a, b]).unwrap(), vec![]);
    assert_eq!(db.insert_telemetry_new(&[]).unwrap(), vec![]);
}

/// Versions, the change feed, acknowledgements.
pub(crate) fn configs_versions_and_acks(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let mut c = Config {
        log_interval_s: 30,
        ..Config::default()
    };
    assert_eq!(db.save_config(1, &c, 10).unwrap(), 1);
    c.log_interval_s = 40;
    assert_eq!(db.save_config(1, &c, 11).unwrap(), 2);
    assert_eq!(db.save_config(2, &c, 11).unwrap(), 1);
    c.log_interval_s = 1;
    assert!(matches!(
        db.save_config(1, &c, 12),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        db.save_config(9, &Config::default(), 12),
        Err(Error::NotFound(9))
    ));
    let latest = db.latest_config(1).unwrap().unwrap();
    assert_eq!((latest.version, latest.config.log_interval_s), (2, 40));
    assert_eq!(latest.state, ConfigState::Pending);
    assert_eq!(db.pending_config_count().unwrap(), 2);
    let feed = db.configs_since(0, 10).unwrap();
    assert_eq!(feed.len(), 3);
    assert_eq!(db.configs_since(feed[1].seq, 10).unwrap().len(), 1);
    assert_eq!(db.config_cursor().unwrap(), feed[2].seq);

    assert!(db.config_acked(1, 2, ConfigResult::Applied, 20).unwrap());
    assert!(
        !db.config_acked(1, 2, ConfigResult::Applied, 21).unwrap(),
        "repeat"
    );
    let d = db.device(1).unwrap();
    assert_eq!((d.config_desired, d.config_applied), (2, 2));
    assert_eq!(db.pending_config_count().unwrap(), 1);
    assert!(db.config_acked(2, 1, ConfigResult::RolledBack, 22).unwrap());
    assert_eq!(db.device(2).unwrap().config_rolled_back, Some(1));
    assert_eq!(db.pending_config_count().unwrap(), 0);
    assert!(
        !db.config_acked(2, 7, ConfigResult::Applied, 22).unwrap(),
        "unknown version"
    );
    c.log_interval_s = 50;
    assert_eq!(db.save_config(2, &c, 30).unwrap(), 2);
    assert!(db.config_running(2, 2, 31).unwrap());
    assert!(!db.config_running(2, 2, 31).unwrap());
    assert_eq!(
        db.latest_config(2).unwrap().unwrap().state,
        ConfigState::Applied
    );
    assert!(db.latest_config(3).unwrap().is_none());
    // One version by number.
    let latest = db.latest_config(1).unwrap().unwrap();
    let same = db.config_version(1, latest.version).unwrap().unwrap();
    assert_eq!((same.version, same.config), (latest.version, latest.config));
    assert!(db.config_version(1, latest.version + 1).unwrap().is_none());
    assert!(db.config_version(999, 1).unwrap().is_none());
}

/// Queue, feed, acknowledgement of commands.
pub(crate) fn commands_queue_and_ack(db: &dyn Storage) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let on = Command::SetRelay {
        relay: 1,
        mode: RelayMode::On,
    };
    let a = db.queue_command(1, &on, 5).unwrap();
    let b = db.queue_command(1, &Command::Reboot, 6).unwrap();
    assert!(b > a);
    assert!(matches!(
        db.queue_command(3, &on, 5),
        Err(Error::NotFound(3))
    ));
    assert_eq!(db.pending_commands(1).unwrap().len(), 2);
    assert_eq!(
        db.commands_since(a, 10).unwrap()[0].command,
        Command::Reboot
    );
    assert_eq!(db.command_cursor().unwrap(), b);
    assert!(db.command_acked(1, a, CommandResult::Done, 7).unwrap());
    assert!(!db.command_acked(1, a, CommandResult::Done, 7).unwrap());
    assert!(
        !db.command_acked(2, b, CommandResult::Done, 7).unwrap(),
        "other device"
    );
    let p = db.pending_commands(1).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].command, Command::Reboot);
    let all = db.commands(1, 10).unwrap();
    assert_eq!(all[1].state, CommandState::Done);
    assert_eq!(all[1].command, on);
    assert_eq!(all[1].acked_at, Some(7));
}

/// A reboot sent in an earlier boot is done when the device says Hello with a later boot,
/// whichever server sent it (PROTOCOL.md 11.3); other commands, and reboots never sent or sent
/// in the same boot, stay queued.
pub(crate) fn reboots_sent_in_an_earlier_boot_are_done(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let sent = db.queue_command(1, &Command::Reboot, 5).unwrap();
    let unsent = db.queue_command(1, &Command::Reboot, 6).unwrap();
    let status = db.queue_command(1, &Command::SendStatus, 7).unwrap();
    let other = db.queue_command(2, &Command::Reboot, 8).unwrap();
    db.command_sent(1, sent, 3).unwrap();
    db.command_sent(1, sent, 2).unwrap(); // never lowered
    db.command_sent(1, status, 3).unwrap();
    db.command_sent(2, other, 3).unwrap();
    assert_eq!(
        db.reboots_done(1, 3, 9).unwrap(),
        Vec::<u32>::new(),
        "same boot"
    );
    assert_eq!(db.reboots_done(1, 4, 10).unwrap(), [sent]);
    assert_eq!(
        db.reboots_done(1, 5, 11).unwrap(),
        Vec::<u32>::new(),
        "only once"
    );
    let all = db.commands(1, 10).unwrap();
    let state = |id: u32| all.iter().find(|c| c.id == id).unwrap().state;
    assert_eq!(state(sent), CommandState::Done);
    assert_eq!(
        all.iter().find(|c| c.id == sent).unwrap().acked_at,
        Some(10)
    );
    assert_eq!(state(unsent), CommandState::Queued);
    assert_eq!(state(status), CommandState::Queued);
    assert_eq!(
        db.commands(2, 10).unwrap()[0].state,
        CommandState::Queued,
        "other device"
    );
}

/// The pending-command bound and the 10-minute expiry (PROTOCOL.md 11.3, docs/SECURITY.md).
pub(crate) fn commands_expire_and_the_queue_is_bounded(db: &dyn Storage) {
    use crate::storage::commands::{EXPIRE_AFTER_S, MAX_PENDING};
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let t0 = 1_000_000;
    let ids: Vec<u32> = (0..MAX_PENDING)
        .map(|i| {
            db.queue_command(1, &Command::SendStatus, t0 + i64::from(i))
                .unwrap()
        })
        .collect();
    // One more is refused with a clear error; another device is not affected.
    let err = db.queue_command(1, &Command::Reboot, t0 + 20).unwrap_err();
    assert!(matches!(err, Error::QueueFull(_)), "{err}");
    assert!(err.to_string().contains("16 commands waiting"), "{err}");
    db.queue_command(2, &Command::Reboot, t0 + 20).unwrap();
    // A confirmed one frees a place.
    assert!(db
        .command_acked(1, ids[0], CommandResult::Done, t0 + 30)
        .unwrap());
    db.queue_command(1, &Command::Reboot, t0 + 31).unwrap();
    assert!(db.queue_command(1, &Command::Reboot, t0 + 32).is_err());
    // Ten minutes after they were queued, the waiting ones expire: queueing works again ...
    let later = t0 + EXPIRE_AFTER_S + 15;
    db.queue_command(1, &Command::SendStatus, later).unwrap();
    let all = db.commands(1, 100).unwrap();
    let expired = all
        .iter()
        .filter(|c| c.state == CommandState::Expired)
        .count();
    assert_eq!(expired, MAX_PENDING as usize - 1, "queued at t0+1..=t0+15");
    assert!(all
        .iter()
        .filter(|c| c.state == CommandState::Expired)
        .all(|c| c.acked_at == Some(later)));
    // ... and they are no longer pending; the one queued at t0+31 and the new one are.
    assert_eq!(db.pending_commands(1).unwrap().len(), 2);
    // The sweep expires the rest of the fleet's old commands.
    assert_eq!(db.expire_commands(t0 + 19 + EXPIRE_AFTER_S).unwrap(), 0);
    assert_eq!(
        db.expire_commands(t0 + 20 + EXPIRE_AFTER_S).unwrap(),
        1,
        "device 2"
    );
    assert_eq!(db.commands(2, 10).unwrap()[0].state, CommandState::Expired);
    // A late CommandAck of an expired command still records what the device did.
    assert!(db
        .command_acked(
            2,
            db.commands(2, 10).unwrap()[0].id,
            CommandResult::Done,
            later
        )
        .unwrap());
    assert_eq!(db.commands(2, 10).unwrap()[0].state, CommandState::Done);
}

/// A status as an Ethernet device reports it, 100 s after boot.
pub(crate) fn sample_status() -> Status {
    use tek_proto::message::status::{Radio, Traffic, Transport};
    Status {
        transport: Transport::Ethernet,
        flags: 0,
        ip: [10, 0, 0, 2],
        netmask: [255, 0, 0, 0],
        gateway: [10, 0, 0, 1],
        dns: [10, 0, 0, 1],
        uptime_s: 100,
        firmware: [1, 0, 0],
        config_version: 0,
        log_drops: 0,
        log_backlog: 0,
        traffic: Traffic {
            eth_tx: 1000,
            eth_rx: 500,
            gsm_tx: 0,
            gsm_rx: 0,
        },
        gsm_signal: 99,
        radio: Radio::Off,
        relays: 1,
        server_index: 0,
    }
}

/// Latest status and traffic per month across reboots.
pub(crate) fn status_and_traffic(db: &dyn Storage) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let mut s = sample_status();
    let jan = 1_767_225_600; // 2026-01-01
    db.store_status(1, &s, jan).unwrap();
    s.uptime_s = 200;
    s.traffic.eth_tx = 1500;
    db.store_status(1, &s, jan + 10).unwrap();
    s.uptime_s = 5; // rebooted
    s.traffic.eth_tx = 40;
    s.traffic.eth_rx = 0;
    db.store_status(1, &s, jan + 20).unwrap();
    let latest = db.latest_status(1).unwrap().unwrap();
    assert_eq!(latest.status, s);
    assert_eq!(latest.received_at, jan + 20);
    let t = db.traffic(1).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].month, "2026-01");
    assert_eq!((t[0].eth_tx, t[0].eth_rx), (1540, 500));
    assert!(matches!(
        db.store_status(5, &s, jan),
        Err(Error::NotFound(5))
    ));
    assert!(db.latest_status(2).unwrap().is_none());
    assert_eq!(db.device(1).unwrap().last_seen, Some(jan + 20));
    // A page at once: in the order asked, none for a device without a status or unknown.
    assert_eq!(
        db.latest_status_of(&[2, 1, 9, 1]).unwrap(),
        vec![None, Some(latest), None, Some(latest)]
    );
    assert_eq!(db.latest_status_of(&[]).unwrap(), vec![]);
}

/// Chart buckets, energy per day, latest record.
pub(crate) fn buckets_energy_and_latest(db: &dyn Storage) {
    db.add_devices(
        &[NewDevice {
            id: 1,
            name: String::new(),
            key: Key([0; 16]),
        }],
        0,
    )
    .unwrap();
    let row = |seq: u32, time: i64, power: i32, energy: i32| TelemetryRow {
        device_id: 1,
        boot: 1,
        seq,
        time,
        channels: 0b1111,
        values: [power, energy, 2500, 1800, 0, 0, 0, 0],
    };
    let day = 86_400 * 20_000;
    db.insert_telemetry(&[
        row(0, day - 60, 100, 1000),
        row(1, day + 10, 200, 1100),
        row(2, day + 70, 400, 1300),
        row(3, day + 130, 600, 50), // meter reset
        row(4, day + 86_400 + 5, 0, 80),
    ])
    .unwrap();
    let b = db.telemetry_buckets(1, day, day + 200, 60).unwrap();
    assert_eq!(b.len(), 3);
    assert_eq!(
        (b[0].start, b[0].count, b[0].power_w),
        (day, 1, Some(200.0))
    );
    assert_eq!(b[1].energy_wh, Some(1300));
    assert_eq!(b[2].water_cc, Some(2500.0));
    let one = db.telemetry_buckets(1, day - 100, day + 200, 3600).unwrap();
    assert_eq!(one.iter().map(|b| b.count).sum::<u32>(), 4);
    let e = db.energy_per_day(1, day - 100, day + 2 * 86_400).unwrap();
    assert_eq!(
        e,
        vec![
            DayEnergy { day, wh: 300 },
            DayEnergy {
                day: day + 86_400,
                wh: 30
            },
        ]
    );
    assert_eq!(db.latest_telemetry(1).unwrap().unwrap().seq, 4);
    assert!(db.latest_telemetry(2).unwrap().is_none());
    assert!(db.telemetry_buckets(1, 0, 1, 0).is_err());
    // Peaks kept: one 200 s bucket over 200, 400, 600 W has the mean 400 and the range.
    let wide = db.telemetry_buckets(1, day, day + 200, 200).unwrap();
    assert_eq!(wide.len(), 1);
    assert_eq!(wide[0].power_w, Some(400.0));
    assert_eq!(wide[0].power_range, Some((200.0, 600.0)));
    assert_eq!(wide[0].water_range_cc, Some((2500.0, 2500.0)));
    assert_eq!(wide[0].pump_on, None, "no relay channel");
    // Relay states: pump on in 2 of 4 records, heater in 1 of 4 (relays 1, 3, 0, 0).
    let t = day + 3 * 86_400;
    let relays = |seq: u32, time: i64, r: i32| TelemetryRow {
        device_id: 1,
        boot: 2,
        seq,
        time,
        channels: 0b1_0001,
        values: [100, 0, 0, 0, r, 0, 0, 0],
    };
    db.insert_telemetry(&[
        relays(0, t, 1),
        relays(1, t + 10, 3),
        relays(2, t + 20, 0),
        relays(3, t + 30, 0),
    ])
    .unwrap();
    let b = db.telemetry_buckets(1, t, t + 60, 60).unwrap();
    assert_eq!((b[0].pump_on, b[0].heater_on), (Some(0.5), Some(0.25)));
    assert_eq!(b[0].air_range_cc, None, "no air channel");
}

/// Users: case-insensitive unique e-mail, the hash only through `user_credentials`.
pub(crate) fn users_crud_and_hash_only_in_credentials(db: &dyn Storage) {
    let a = db
        .create_user("A@example.com", "$argon2id$x", true, 5)
        .unwrap();
    assert!(matches!(
        db.create_user("a@EXAMPLE.com", "h", false, 6),
        Err(Error::Duplicate(_))
    ));
    let u = db.user_by_email("a@example.com").unwrap().unwrap();
    assert_eq!((u.id, u.is_admin, u.created_at), (a, true, 5));
    assert!(!format!("{u:?}").contains("argon2"));
    let (u2, h) = db.user_credentials("A@EXAMPLE.COM").unwrap().unwrap();
    assert_eq!((u2, h.as_str()), (u, "$argon2id$x"));
    db.set_password(a, "$argon2id$y").unwrap();
    db.set_admin(a, false).unwrap();
    assert!(!db.user(a).unwrap().unwrap().is_admin);
    assert_eq!(
        db.user_credentials("a@example.com").unwrap().unwrap().1,
        "$argon2id$y"
    );
    assert!(matches!(db.set_admin(99, true), Err(Error::Missing(_))));
    let b = db.create_user("b@example.com", "h", false, 6).unwrap();
    assert_eq!(db.list_users().unwrap().len(), 2);
    db.delete_user(b).unwrap();
    assert!(db.user(b).unwrap().is_none());
    assert!(matches!(db.delete_user(b), Err(Error::Missing(_))));
}

/// Membership decides which devices a user sees.
pub(crate) fn membership_decides_visible_devices(db: &dyn Storage) {
    let devs: Vec<NewDevice> = (1..=4)
        .map(|id| NewDevice {
            id,
            name: String::new(),
            key: Key([0; 16]),
        })
        .collect();
    db.add_devices(&devs, 0).unwrap();
    let u = db.create_user("u@x", "h", false, 0).unwrap();
    let v = db.create_user("v@x", "h", false, 0).unwrap();
    let s1 = db.create_site("Pool A", 0).unwrap();
    let s2 = db.create_site("Pool B", 0).unwrap();
    assert!(matches!(
        db.create_site("Pool A", 0),
        Err(Error::Duplicate(_))
    ));
    db.assign_devices(&[1, 2], Some(s1)).unwrap();
    db.assign_devices(&[3], Some(s2)).unwrap();
    assert!(matches!(
        db.assign_devices(&[4, 9], Some(s1)),
        Err(Error::Missing(_))
    ));
    assert_eq!(db.device_site(4).unwrap(), None, "all or none");
    assert_eq!(
        db.device_sites_of(&[3, 4, 1, 2, 9]).unwrap(),
        vec![Some(s2), None, Some(s1), Some(s1), None]
    );
    assert_eq!(db.device_sites_of(&[]).unwrap(), vec![]);
    db.grant_site(u, s1).unwrap();
    db.grant_site(u, s1).unwrap();
    db.grant_site(v, s2).unwrap();
    assert!(matches!(db.grant_site(v, 77), Err(Error::Missing(_))));
    assert_eq!(db.user_device_ids(u).unwrap(), vec![1, 2]);
    assert_eq!(db.user_device_ids(v).unwrap(), vec![3]);
    db.assign_devices(&[2], Some(s2)).unwrap();
    assert_eq!(db.user_device_ids(u).unwrap(), vec![1]);
    assert_eq!(db.site_device_ids(s2).unwrap(), vec![2, 3]);
    assert_eq!(db.site_members(s2).unwrap(), vec![v]);
    assert_eq!(db.user_sites(u).unwrap()[0].name, "Pool A");
    db.revoke_site(u, s1).unwrap();
    assert!(db.user_device_ids(u).unwrap().is_empty());
    db.delete_site(s2).unwrap();
    assert_eq!(db.device_site(3).unwrap(), None);
    assert!(db.user_device_ids(v).unwrap().is_empty());
    db.assign_devices(&[1], None).unwrap();
    assert_eq!(db.device_site(1).unwrap(), None);
    assert_eq!(db.site_by_name("Pool A").unwrap().unwrap().id, s1);
    assert_eq!(db.site(s1).unwrap().unwrap().name, "Pool A");
    assert_eq!(db.list_sites().unwrap().len(), 1);
    assert!(matches!(db.delete_site(s2), Err(Error::Missing(_))));
}

/// Web sessions expire; tokens belong to their owner; deleting a user ends both.
pub(crate) fn sessions_expire_and_tokens_belong_to_owner(db: &dyn Storage) {
    let u = db.create_user("u@x", "h", false, 0).unwrap();
    let v = db.create_user("v@x", "h", false, 0).unwrap();
    db.create_web_session(&[1; 32], u, 100, 200).unwrap();
    assert_eq!(db.web_session(&[1; 32], 150).unwrap().unwrap().user_id, u);
    assert!(db.web_session(&[1; 32], 200).unwrap().is_none(), "expired");
    assert!(db.web_session(&[2; 32], 150).unwrap().is_none());
    assert_eq!(db.purge_web_sessions(250).unwrap(), 1);
    db.create_web_session(&[3; 32], u, 100, 900).unwrap();
    db.delete_web_session(&[3; 32]).unwrap();
    assert!(db.web_session(&[3; 32], 150).unwrap().is_none());
    db.create_web_session(&[3; 32], u, 100, 900).unwrap();
    db.delete_user_web_sessions(u).unwrap();
    assert!(db.web_session(&[3; 32], 150).unwrap().is_none());

    let t = db.create_token(u, "script", &[9; 32], 10).unwrap();
    assert_eq!(db.token_user(&[9; 32], 500).unwrap(), Some(u));
    assert_eq!(db.list_tokens(u).unwrap()[0].last_used, Some(500));
    assert!(!db.delete_token(v, t).unwrap(), "not the owner");
    assert!(db.delete_token(u, t).unwrap());
    assert_eq!(db.token_user(&[9; 32], 600).unwrap(), None);
    // Deleting a user ends everything they held.
    db.create_web_session(&[4; 32], v, 100, 900).unwrap();
    db.create_token(v, "x", &[8; 32], 10).unwrap();
    db.delete_user(v).unwrap();
    assert!(db.web_session(&[4; 32], 150).unwrap().is_none());
    assert_eq!(db.token_user(&[8; 32], 600).unwrap(), None);
}

/// The audit log filters by site, device, and pages backwards.
pub(crate) fn audit_filters_by_site_device_and_pages(db: &dyn Storage) {
    fn entry(site: Option<i64>, device: Option<u32>, action: &str) -> NewAuditEntry {
        NewAuditEntry {
            user_id: Some(1),
            actor: "a@x".into(),
            action: action.into(),
            device_id: device,
            site_id: site,
            detail: "d".into(),
        }
    }
    let a = db
        .append_audit(&entry(Some(1), Some(5), "config.save"), 10)
        .unwrap();
    let b = db
        .append_audit(&entry(Some(2), Some(u32::MAX), "command.queue"), 11)
        .unwrap();
    let c = db
        .append_audit(&entry(None, None, "user.create"), 12)
        .unwrap();
    let f = |sites: Option<Vec<i64>>, device_id, before, limit| AuditFilter {
        sites,
        device_id,
        before,
        limit,
    };
    let all = db.audit(&f(None, None, None, 10)).unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![c, b, a]);
    assert_eq!(all[2].at, 10);
    assert_eq!(all[2].entry, entry(Some(1), Some(5), "config.save"));
    assert_eq!(
        db.audit(&f(Some(vec![1]), None, None, 10)).unwrap().len(),
        1
    );
    assert!(db
        .audit(&f(Some(vec![]), None, None, 10))
        .unwrap()
        .is_empty());
    assert_eq!(
        db.audit(&f(None, Some(u32::MAX), None, 10)).unwrap()[0].id,
        b
    );
    assert_eq!(db.audit(&f(None, None, Some(c), 1)).unwrap()[0].id, b);
    assert_eq!(
        db.audit(&f(Some(vec![1, 2]), None, Some(b), 10)).unwrap()[0].id,
        a
    );
}

/// Two handles on one database, as two servers: the hello counter is claimed once across both,
/// even when they race; telemetry sent to both (stamped a second apart) is stored once; a
/// configuration saved through one is in the other's feed.
pub(crate) fn shared_between_servers(a: &dyn Storage, b: &dyn Storage) {
    a.add_devices(&[dev(1)], 0).unwrap();
    assert!(b.accept_hello(1, 10, 1).unwrap());
    assert!(
        !a.accept_hello(1, 10, 1).unwrap(),
        "replay on the other server"
    );
    assert!(a.accept_hello(1, 11, 1).unwrap());

    // Race: both servers try every counter at once; each must be accepted at most once, and the
    // accepted ones only ever increase.
    let accepted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for db in [a, b, a, b] {
            let accepted = &accepted;
            s.spawn(move || {
                for c in 100..160u64 {
                    if db.accept_hello(1, c, 2).unwrap() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let n = accepted.load(Ordering::Relaxed);
    assert!((1..=60).contains(&n), "{n} counters accepted");
    assert_eq!(a.load_device(1).unwrap().unwrap().hello_counter, Some(159));

    // The same 200 records through both servers at once, stamped a second apart.
    let rows = |shift: i64| -> Vec<TelemetryRow> {
        (0..200)
            .map(|seq| TelemetryRow {
                device_id: 1,
                boot: 7,
                seq,
                time: 1_767_225_600 + i64::from(seq) * 60 + shift,
                channels: 1,
                values: [seq as i32, 0, 0, 0, 0, 0, 0, 0],
            })
            .collect()
    };
    let (ra, rb) = (rows(0), rows(1));
    let new = std::thread::scope(|s| {
        let x = s.spawn(|| {
            ra.chunks(20)
                .map(|c| a.insert_telemetry(c).unwrap())
                .sum::<u64>()
        });
        let y = s.spawn(|| {
            rb.chunks(20)
                .map(|c| b.insert_telemetry(c).unwrap())
                .sum::<u64>()
        });
        x.join().unwrap() + y.join().unwrap()
    });
    // Each record is new to at least one server. On SQLite each server keeps its new records
    // in an inbox journal of its own until it folds them, so a record both receive meanwhile is
    // new to both (and stored once, below); on PostgreSQL exactly one.
    assert!((200..=400).contains(&new), "{new} new");
    assert_eq!(a.telemetry_count(1).unwrap(), 200);
    assert_eq!(b.telemetry_count(1).unwrap(), 200);

    let v = a.save_config(1, &Config::default(), 3).unwrap();
    let seen = b.configs_since(0, 10).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].device_id, seen[0].version), (1, v));
    assert!(b.config_acked(1, v, ConfigResult::Applied, 4).unwrap());
    assert_eq!(a.device(1).unwrap().config_applied, v);
    let id = b.queue_command(1, &Command::SendStatus, 5).unwrap();
    assert_eq!(a.commands_since(0, 10).unwrap()[0].id, id);
}

/// Alarm rules (limit per device, shelving), one open alarm per rule, acknowledgement,
/// destinations and lists, and the notification log.
pub(crate) fn alarms_rules_lifecycle_and_log(db: &dyn Storage) {
    use crate::alarms::rules::{templates, MAX_RULES_PER_DEVICE};
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let spec = templates()[2].2.clone();
    assert!(matches!(
        db.create_rule(9, &spec, 1),
        Err(Error::NotFound(9))
    ));
    let r1 = db.create_rule(1, &spec, 10).unwrap();
    let mut other = templates()[0].2.clone();
    other.lists = vec![5, 6];
    let r2 = db.create_rule(2, &other, 11).unwrap();
    let got = db.rule(r1).unwrap().unwrap();
    assert_eq!((got.device_id, &got.spec, got.created_at), (1, &spec, 10));
    assert_eq!(db.device_rules(2).unwrap()[0].spec.lists, vec![5, 6]);
    assert_eq!(db.all_rules().unwrap().len(), 2);
    other.name = "renamed".into();
    db.update_rule(r2, &other).unwrap();
    assert_eq!(db.rule(r2).unwrap().unwrap().spec.name, "renamed");
    assert!(matches!(
        db.update_rule(999, &other),
        Err(Error::Missing(_))
    ));
    db.shelve_rule(r1, Some(500)).unwrap();
    assert_eq!(db.rule(r1).unwrap().unwrap().shelved_until, Some(500));
    db.shelve_rule(r1, None).unwrap();
    assert_eq!(db.rule(r1).unwrap().unwrap().shelved_until, None);
    // At most MAX_RULES_PER_DEVICE per device.
    for _ in 1..MAX_RULES_PER_DEVICE {
        db.create_rule(1, &spec, 12).unwrap();
    }
    assert!(matches!(db.create_rule(1, &spec, 13), Err(Error::Limit(_))));
    assert_eq!(db.device_rules(1).unwrap().len(), MAX_RULES_PER_DEVICE);

    // One open alarm per rule.
    let new = |rule_id, at| NewAlarm {
        rule_id,
        device_id: 1,
        rule_name: "Water".into(),
        severity: crate::alarms::rules::Severity::Warning,
        message: "water 33.00 °C".into(),
        raised_at: at,
    };
    let (a1, fresh) = db.raise_alarm(&new(r1, 100)).unwrap();
    assert!(fresh);
    assert_eq!(
        db.raise_alarm(&new(r1, 101)).unwrap(),
        (a1, false),
        "still open: same alarm, raised by someone else"
    );
    let got = db.alarm(a1).unwrap().unwrap();
    assert_eq!(
        (got.raised_at, got.acked_at, got.cleared_at, got.level),
        (100, None, None, 0)
    );
    assert!(db.set_alarm_level(r1, 2).unwrap());
    assert!(!db.set_alarm_level(r1, 2).unwrap(), "escalated once");
    assert!(!db.set_alarm_level(r1, 1).unwrap());
    assert!(db.ack_alarm(a1, "alice@example.com", 110).unwrap());
    assert!(
        !db.ack_alarm(a1, "bob@example.com", 111).unwrap(),
        "first ack stays"
    );
    assert!(matches!(db.ack_alarm(999, "x", 1), Err(Error::Missing(_))));
    let got = db.alarm(a1).unwrap().unwrap();
    assert_eq!(got.acked_by.as_deref(), Some("alice@example.com"));
    assert_eq!((got.acked_at, got.level), (Some(110), 2));
    assert_eq!(db.clear_alarm(r1, 120).unwrap(), Some(a1));
    assert_eq!(db.clear_alarm(r1, 121).unwrap(), None);
    let (a2, _) = db.raise_alarm(&new(r1, 130)).unwrap();
    assert_ne!(a1, a2, "a new alarm after the clear");
    let mut a3n = new(r2, 140);
    a3n.device_id = 2;
    let (a3, _) = db.raise_alarm(&a3n).unwrap();
    let all = db
        .alarms(&AlarmFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), [a3, a2, a1]);
    let open1 = db
        .alarms(&AlarmFilter {
            devices: Some(vec![1]),
            open_only: true,
            limit: 10,
        })
        .unwrap();
    assert_eq!(open1.iter().map(|a| a.id).collect::<Vec<_>>(), [a2]);
    assert!(db
        .alarms(&AlarmFilter {
            devices: Some(vec![]),
            open_only: false,
            limit: 10
        })
        .unwrap()
        .is_empty());
    // Deleting a rule clears its open alarm.
    db.delete_rule(r2, 150).unwrap();
    assert_eq!(db.alarm(a3).unwrap().unwrap().cleared_at, Some(150));
    assert!(matches!(db.delete_rule(r2, 151), Err(Error::Missing(_))));

    // Destinations and lists.
    let mail = db
        .create_destination(
            &NewDestination {
                name: "ops mail".into(),
                kind: DestinationKind::Email,
                target: "ops@example.com".into(),
                secret: None,
            },
            1,
        )
        .unwrap();
    let hook = NewDestination {
        name: "hook".into(),
        kind: DestinationKind::Webhook,
        target: "http://127.0.0.1:9/x".into(),
        secret: Some("s3cret".into()),
    };
    let hook_id = db.create_destination(&hook, 2).unwrap();
    assert!(matches!(
        db.create_destination(&hook, 3),
        Err(Error::Duplicate(_))
    ));
    let l1 = db.create_list("day shift", 4).unwrap();
    let l2 = db.create_list("managers", 5).unwrap();
    assert!(matches!(
        db.create_list("managers", 6),
        Err(Error::Duplicate(_))
    ));
    db.set_list_members(l1, &[hook_id, mail]).unwrap();
    assert!(matches!(
        db.set_list_members(l2, &[mail, 999]),
        Err(Error::Missing(_))
    ));
    assert!(matches!(
        db.set_list_members(998, &[mail]),
        Err(Error::Missing(_))
    ));
    let lists = db.lists().unwrap();
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].members, vec![mail, hook_id]);
    assert!(
        lists[1].members.is_empty(),
        "the failed change left nothing"
    );
    let ds = db.list_destinations(l1).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds[1].secret.as_deref(), Some("s3cret"));
    assert!(!format!("{:?}", ds[1]).contains("s3cret"));
    db.delete_destination(mail).unwrap();
    assert_eq!(db.lists().unwrap()[0].members, vec![hook_id]);
    assert_eq!(db.destinations().unwrap().len(), 1);
    db.delete_list(l2).unwrap();
    assert!(matches!(db.delete_list(l2), Err(Error::Missing(_))));
    assert!(db.list_destinations(l2).unwrap().is_empty());
    // A list given to a site; back to administrators only when the site goes.
    assert_eq!(db.lists().unwrap()[0].site_id, None);
    let site = db.create_site("list site", 1).unwrap();
    db.set_list_site(l1, Some(site)).unwrap();
    assert_eq!(db.lists().unwrap()[0].site_id, Some(site));
    assert!(db.set_list_site(l1, Some(site + 1000)).is_err());
    assert!(matches!(
        db.set_list_site(l2, Some(site)),
        Err(Error::Missing(_))
    ));
    db.delete_site(site).unwrap();
    assert_eq!(db.lists().unwrap()[0].site_id, None);

    // The notification log.
    let note = |alarm_id, device_id| NewNotification {
        alarm_id,
        device_id,
        list_id: l1,
        destination_id: hook_id,
        destination: "hook".into(),
        event: "raised".into(),
        subject: "[tek] Water".into(),
    };
    let n1 = db.log_notification(&note(Some(a2), 1), 200).unwrap();
    let n2 = db.log_notification(&note(None, 2), 201).unwrap();
    db.notification_done(
        n1,
        DeliveryState::Failed,
        4,
        Some("connection refused"),
        260,
    )
    .unwrap();
    let log = db.notifications(None, None, 10).unwrap();
    assert_eq!(log.iter().map(|n| n.id).collect::<Vec<_>>(), [n2, n1]);
    let f = &log[1];
    assert_eq!(
        (f.state, f.attempts, f.done_at),
        (DeliveryState::Failed, 4, Some(260))
    );
    assert_eq!(f.error.as_deref(), Some("connection refused"));
    assert_eq!(
        (log[0].state, log[0].done_at),
        (DeliveryState::Queued, None)
    );
    assert_eq!(db.notifications(Some(&[1]), None, 10).unwrap().len(), 1);
    assert_eq!(db.notifications(None, Some(a2), 10).unwrap()[0].id, n1);
    assert!(db.notifications(Some(&[]), None, 10).unwrap().is_empty());
}

pub(crate) fn schedule_zone_per_device(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 100).unwrap();
    assert_eq!(db.schedule_zone(1).unwrap(), None);
    db.set_schedule_zone(1, "Europe/Paris").unwrap();
    assert_eq!(
        db.schedule_zone(1).unwrap().as_deref(),
        Some("Europe/Paris")
    );
    assert_eq!(db.schedule_zone(2).unwrap(), None);
    db.set_schedule_zone(1, "America/New_York").unwrap();
    assert_eq!(
        db.schedule_zone(1).unwrap().as_deref(),
        Some("America/New_York")
    );
    assert!(matches!(
        db.set_schedule_zone(99, "UTC"),
        Err(crate::storage::Error::NotFound(99))
    ));
    assert_eq!(db.schedule_zone(99).unwrap(), None);
}

/// Energy: meter steps per 15-minute interval (a step across a reboot counts, a reset counts
/// zero, a gap becomes a span, a gap over a week is dropped, the reading before the range takes
/// part), mean power per interval; site time zones and tariffs.
pub(crate) fn energy_meter_data_and_tariffs(db: &dyn Storage) {
    use crate::energy::tariff::Tariff;
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let base = 900 * 2_000_000; // a UTC midnight
    let row = |boot, seq, time, power: Option<i32>, energy: i32| TelemetryRow {
        device_id: 1,
        boot,
        seq,
        time,
        channels: if power.is_some() { 0b11 } else { 0b10 },
        values: [power.unwrap_or(0), energy, 0, 0, 0, 0, 0, 0],
    };
    db.insert_telemetry(&[
        row(1, 0, base - 600, Some(1000), 5000),
        row(1, 1, base + 300, Some(2000), 5200),
        row(1, 2, base + 600, Some(3000), 5300),
        row(2, 0, base + 1000, Some(500), 5350), // rebooted: the meter kept counting
        row(2, 1, base + 1100, Some(500), 20),   // meter reset
        row(2, 2, base + 4700, None, 420),       // after an hour's gap
        row(2, 3, base + 8 * 86_400, None, 9999), // after more than a week
    ])
    .unwrap();
    let iv = |start, wh, power_w| MeterInterval { start, wh, power_w };
    let span = MeterSpan {
        from: base + 1100,
        to: base + 4700,
        wh: 400,
    };
    let expected = MeterData {
        intervals: vec![
            iv(base, Some(300), Some(2500.0)),
            iv(base + 900, Some(50), Some(500.0)),
        ],
        spans: vec![span],
    };
    assert_eq!(db.meter_data(1, base, base + 7200).unwrap(), expected);
    assert_eq!(
        db.meter_data(1, base, base + 9 * 86_400).unwrap(),
        expected,
        "a step over more than a week is not counted"
    );
    // A range inside the gap still sees the gap's span.
    assert_eq!(
        db.meter_data(1, base + 1800, base + 3600).unwrap(),
        MeterData {
            intervals: vec![],
            spans: vec![span]
        }
    );
    assert_eq!(
        db.meter_data(2, base, base + 7200).unwrap(),
        MeterData::default()
    );

    // Time zones and tariffs.
    let s = db.create_site("Energy", 0).unwrap();
    assert_eq!(db.site(s).unwrap().unwrap().time_zone, "UTC");
    db.set_site_time_zone(s, "Europe/Berlin").unwrap();
    assert_eq!(db.site(s).unwrap().unwrap().time_zone, "Europe/Berlin");
    assert_eq!(db.list_sites().unwrap()[0].time_zone, "Europe/Berlin");
    assert!(matches!(
        db.set_site_time_zone(999, "UTC"),
        Err(Error::Missing(_))
    ));
    assert_eq!(db.site_tariff(s).unwrap(), None);
    let mut t = Tariff::flat("EUR", 0.25);
    db.set_site_tariff(s, Some(&t), 1).unwrap();
    assert_eq!(db.site_tariff(s).unwrap(), Some(t.clone()));
    t.demand_price = 12.5;
    t.periods = Tariff::parse_periods("night all 22:00-06:00 0.12").unwrap();
    db.set_site_tariff(s, Some(&t), 2).unwrap();
    assert_eq!(db.site_tariff(s).unwrap(), Some(t.clone()));
    assert!(matches!(
        db.set_site_tariff(999, Some(&t), 3),
        Err(Error::Missing(_))
    ));
    assert!(matches!(
        db.set_site_tariff(999, None, 3),
        Err(Error::Missing(_))
    ));
    db.set_site_tariff(s, None, 4).unwrap();
    assert_eq!(db.site_tariff(s).unwrap(), None);
    db.set_site_tariff(s, Some(&t), 5).unwrap();
    db.delete_site(s).unwrap();
    assert_eq!(db.site_tariff(s).unwrap(), None, "deleted with its site");
}

/// Boots with estimated times (PROTOCOL.md 18.4): one row per device and boot, computed from the
/// records stored for that boot, so noting it again (a retransmitted Backlog) counts nothing
/// twice, and more records of the boot update it.
pub(crate) fn estimated_boots_follow_the_stored_records(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let row = |boot, seq, time| TelemetryRow {
        device_id: 1,
        boot,
        seq,
        time,
        channels: 0b1_0001,
        values: [700, 0, 0, 0, 1, 0, 0, 0],
    };
    let boot3: Vec<_> = (0..5)
        .map(|s| row(3, s, 1_000 + 60 * i64::from(s)))
        .collect();
    db.insert_telemetry(&boot3).unwrap();
    db.insert_telemetry(&[row(4, 0, 5_000), row(4, 1, 5_060)])
        .unwrap();
    assert_eq!(db.estimated_boots(1, 10).unwrap(), vec![], "none noted yet");
    db.note_estimated_boots(&[(1, 3)]).unwrap();
    let three = EstimatedBoot {
        boot: 3,
        records: 5,
        first: 1_000,
        last: 1_240,
    };
    assert_eq!(db.estimated_boots(1, 10).unwrap(), vec![three]);
    // Noted again (a retransmission), in the same call too: the same row.
    db.note_estimated_boots(&[(1, 3), (1, 3)]).unwrap();
    assert_eq!(db.estimated_boots(1, 10).unwrap(), vec![three]);
    // More records of the boot, one of them a retransmission: counted once each.
    db.insert_telemetry(&[row(3, 4, 1_240), row(3, 5, 1_300), row(3, 6, 1_360)])
        .unwrap();
    db.note_estimated_boots(&[(1, 3), (1, 4)]).unwrap();
    let three = EstimatedBoot {
        records: 7,
        last: 1_360,
        ..three
    };
    let four = EstimatedBoot {
        boot: 4,
        records: 2,
        first: 5_000,
        last: 5_060,
    };
    assert_eq!(db.estimated_boots(1, 10).unwrap(), vec![four, three]);
    assert_eq!(
        db.estimated_boots(1, 1).unwrap(),
        vec![four],
        "newest boot first"
    );
    // A boot without records has nothing to show; another device has none.
    db.note_estimated_boots(&[(1, 9), (2, 3)]).unwrap();
    assert_eq!(db.estimated_boots(1, 10).unwrap().len(), 2);
    assert_eq!(db.estimated_boots(2, 10).unwrap(), vec![]);
    db.note_estimated_boots(&[]).unwrap();

    // A page's boots in one call are those read one by one, in the order asked, with the limit
    // per device: a device without any, an unknown one, a device twice.
    db.insert_telemetry(&[TelemetryRow {
        device_id: 2,
        ..row(5, 0, 7_000)
    }])
    .unwrap();
    db.note_estimated_boots(&[(2, 5)]).unwrap();
    for limit in [0, 1, 10] {
        let asked = [2, 1, 9, 1];
        let each: Vec<_> = asked
            .iter()
            .map(|&d| db.estimated_boots(d, limit).unwrap())
            .collect();
        assert_eq!(
            db.estimated_boots_of(&asked, limit).unwrap(),
            each,
            "limit {limit}"
        );
    }
    assert_eq!(
        db.estimated_boots_of(&[1, 2], 1).unwrap(),
        vec![
            vec![four],
            vec![EstimatedBoot {
                boot: 5,
                records: 1,
                first: 7_000,
                last: 7_000
            }]
        ]
    );
    assert_eq!(
        db.estimated_boots_of(&[], 10).unwrap(),
        Vec::<Vec<EstimatedBoot>>::new()
    );
}

/// One `#[test]` per suite check for a backend. `$fresh` makes a fresh database (an `Option`
/// of a value that derefs to the backend; `None` skips), `$second(&db)` a second handle on it.
macro_rules! suite_tests {
    ($fresh:expr, $second:expr) => {
        suite_tests!(@one $fresh;
            devices_and_hello_counter_cas,
            telemetry_is_idempotent,
            telemetry_pages_cover_the_range_once,
            sealed_records_read_back_equal,
            latest_of_many_equals_each_alone,
            latest_follows_the_newest_chunk,
            first_record_time_from_rows_and_chunks,
            raw_retention_deletes_rows_and_chunks,
            configs_versions_and_acks,
            commands_queue_and_ack,
            commands_expire_and_the_queue_is_bounded,
            reboots_sent_in_an_earlier_boot_are_done,
            status_and_traffic,
            buckets_energy_and_latest,
            users_crud_and_hash_only_in_credentials,
            membership_decides_visible_devices,
            sessions_expire_and_tokens_belong_to_owner,
            audit_filters_by_site_device_and_pages,
            alarms_rules_lifecycle_and_log,
            schedule_zone_per_device,
            energy_meter_data_and_tariffs,
            energy_rollups_follow_raw_records,
            channel_meter_data_matches_the_pool_meter,
            estimated_boots_follow_the_stored_records,
            chart_rollups_follow_raw_records,
            sealed_quarters_read_like_rows,
            quarter_retention_keeps_the_days,
            wide_rollups_follow_raw_records,
            wide_records_keep_gaps_and_are_idempotent,
            wide_series_span_pages,
            estimated_boots_count_wide_records,
            latest_wide_is_the_newest_record,
            channel_faults_replace_the_last_report,
            channel_templates_lifecycle,
            device_channel_registry_versions);
        #[test]
        fn shared_between_servers() {
            let Some(db) = $fresh else { return };
            let other = $second(&db);
            $crate::storage::suite::shared_between_servers(&*db, &other);
        }
    };
    (@one $fresh:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let Some(db) = $fresh else { return };
                $crate::storage::suite::$name(&*db);
            }
        )*
    };
}
pub(crate) use suite_tests;

mod sqlite_backend {
    use crate::storage::sqlite::Sqlite;

    struct Fresh(#[allow(dead_code)] tempfile::TempDir, Sqlite);

    impl std::ops::Deref for Fresh {
        type Target = Sqlite;
        fn deref(&self) -> &Sqlite {
            &self.1
        }
    }

    fn fresh() -> Option<Fresh> {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        Some(Fresh(dir, db))
    }

    fn second(db: &Fresh) -> Sqlite {
        Sqlite::open(db.path()).unwrap()
    }

    super::suite_tests!(fresh(), second);

    /// Device 1's chunk rewritten in place, from another connection.
    #[test]
    fn latest_after_a_chunk_rewritten_in_place() {
        let db = fresh().unwrap();
        super::latest_after_a_chunk_rewritten_in_place(&*db, &|data| {
            let c = rusqlite::Connection::open(db.path()).unwrap();
            let n = c
                .execute(
                    "UPDATE telemetry_chunk SET data = ?1 WHERE device_id = 1",
                    [data],
                )
                .unwrap();
            assert_eq!(n, 1);
        });
    }

    /// Schema version 7 had no rollups (nor estimated boots, 9, nor wide records, 12): drop them, go back to it, reopen (which migrates).
    #[test]
    fn energy_rollups_backfilled_by_migration() {
        let db = fresh().unwrap();
        super::energy_rollups_backfilled_by_migration(&*db, || {
            // What this handle's inbox journal holds goes into the tables the SQL rewrites.
            db.fold_inbox().unwrap();
            let c = rusqlite::Connection::open(db.path()).unwrap();
            // Before chunks, every record was a row.
            crate::storage::sqlite::chunks_back_to_rows(&c).unwrap();
            c.execute_batch(&format!(
                "{}DROP TABLE backlog_estimated_boots; DROP TABLE telemetry_rollup_day;
                     DROP TABLE telemetry_rollup; PRAGMA user_version = 7;",
                super::TO_VERSION_10
            ))
            .unwrap();
            drop(c);
            Box::new(Sqlite::open(db.path()).unwrap())
        });
    }

    /// Schema version 10 had no channel tables: drop them, go back to it, reopen.
    #[test]
    fn channel_registry_given_to_existing_devices_by_migration() {
        let db = fresh().unwrap();
        super::channel_registry_given_to_existing_devices_by_migration(&*db, || {
            // What this handle's inbox journal holds goes into the tables the SQL rewrites.
            db.fold_inbox().unwrap();
            let c = rusqlite::Connection::open(db.path()).unwrap();
            // Before chunks, every record was a row.
            crate::storage::sqlite::chunks_back_to_rows(&c).unwrap();
            c.execute_batch(&format!(
                "{}PRAGMA user_version = 10;",
                super::TO_VERSION_10
            ))
            .unwrap();
            drop(c);
            Box::new(Sqlite::open(db.path()).unwrap())
        });
    }

    /// Schema version 13 had wide records without rollups: drop them, go back to it, reopen.
    #[test]
    fn wide_rollups_backfilled_by_migration() {
        let db = fresh().unwrap();
        super::wide_rollups_backfilled_by_migration(&*db, || {
            // What this handle's inbox journal holds goes into the tables the SQL rewrites.
            db.fold_inbox().unwrap();
            let c = rusqlite::Connection::open(db.path()).unwrap();
            // Before chunks, every record was a row.
            crate::storage::sqlite::chunks_back_to_rows(&c).unwrap();
            c.execute_batch(
                "DROP TABLE telemetry_chunk; DROP TABLE telemetry_wide_rollup;
                 PRAGMA user_version = 13;",
            )
            .unwrap();
            drop(c);
            Box::new(Sqlite::open(db.path()).unwrap())
        });
    }

    /// Schema version 8 had 15-minute energy rollups only: rebuild them, go back to it, reopen.
    #[test]
    fn chart_rollups_backfilled_by_migration() {
        let db = fresh().unwrap();
        super::chart_rollups_backfilled_by_migration(&*db, || {
            // What this handle's inbox journal holds goes into the tables the SQL rewrites.
            db.fold_inbox().unwrap();
            let c = rusqlite::Connection::open(db.path()).unwrap();
            // Before chunks, every record was a row.
            crate::storage::sqlite::chunks_back_to_rows(&c).unwrap();
            let sql = super::to_version_8(crate::storage::schema::Dialect::Sqlite);
            c.execute_batch(&format!("{sql}; PRAGMA user_version = 8;"))
                .unwrap();
            drop(c);
            Box::new(Sqlite::open(db.path()).unwrap())
        });
    }
}

mod postgres_backend {
    use crate::storage::postgres::testing::{database, TestDb};
    use crate::storage::postgres::Postgres;

    fn second(db: &TestDb) -> Postgres {
        Postgres::connect_sealed(&db.url, &db.master_key).unwrap()
    }

    super::suite_tests!(database(), second);

    /// Device 1's chunk rewritten in place, from another connection.
    #[test]
    fn latest_after_a_chunk_rewritten_in_place() {
        let Some(db) = database() else { return };
        super::latest_after_a_chunk_rewritten_in_place(&*db, &|data| {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            crate::storage::postgres::testing::execute(
                &db.url,
                &format!("UPDATE telemetry_chunk SET data = '\\x{hex}' WHERE device_id = 1"),
            )
            .unwrap();
        });
    }

    /// Schema version 7 had no rollups (nor estimated boots, 9, nor wide records, 12): drop them, go back to it, reconnect (which migrates).
    #[test]
    fn energy_rollups_backfilled_by_migration() {
        let Some(db) = database() else { return };
        super::energy_rollups_backfilled_by_migration(&*db, || {
            crate::storage::postgres::testing::execute(
                &db.url,
                &format!(
                    "{}DROP TABLE backlog_estimated_boots; DROP TABLE telemetry_rollup_day;
                     DROP TABLE telemetry_rollup;
                     DELETE FROM tek_schema; INSERT INTO tek_schema (version) VALUES (7);",
                    super::TO_VERSION_10
                ),
            )
            .unwrap();
            Box::new(second(&db))
        });
    }

    /// Schema version 10 had no channel tables: drop them, go back to it, reconnect.
    #[test]
    fn channel_registry_given_to_existing_devices_by_migration() {
        let Some(db) = database() else { return };
        super::channel_registry_given_to_existing_devices_by_migration(&*db, || {
            crate::storage::postgres::testing::execute(
                &db.url,
                &format!(
                    "{}DELETE FROM tek_schema; INSERT INTO tek_schema (version) VALUES (10);",
                    super::TO_VERSION_10
                ),
            )
            .unwrap();
            Box::new(second(&db))
        });
    }

    /// Schema version 13 had wide records without rollups: drop them, go back to it, reconnect.
    #[test]
    fn wide_rollups_backfilled_by_migration() {
        let Some(db) = database() else { return };
        super::wide_rollups_backfilled_by_migration(&*db, || {
            crate::storage::postgres::testing::execute(
                &db.url,
                "DROP TABLE telemetry_chunk; DROP TABLE telemetry_wide_rollup;
                 DELETE FROM tek_schema; INSERT INTO tek_schema (version) VALUES (13);",
            )
            .unwrap();
            Box::new(second(&db))
        });
    }

    /// Schema version 8 had 15-minute energy rollups only: rebuild them, go back to it,
    /// reconnect.
    #[test]
    fn chart_rollups_backfilled_by_migration() {
        let Some(db) = database() else { return };
        super::chart_rollups_backfilled_by_migration(&*db, || {
            let sql = super::to_version_8(crate::storage::schema::Dialect::Postgres);
            crate::storage::postgres::testing::execute(
                &db.url,
                &format!(
                    "{sql}; DELETE FROM tek_schema; INSERT INTO tek_schema (version) VALUES (8);"
                ),
            )
            .unwrap();
            Box::new(second(&db))
        });
    }
}
