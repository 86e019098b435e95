//! Records of earlier boots (PROTOCOL.md 18) at the server, over real UDP on 127.0.0.1: a device
//! that states the backlog bit in Capabilities is answered with Accepts; a Backlog of an earlier
//! boot is stored under that boot, durably, once, and answered with BacklogAck (again for a
//! retransmission); one of the session's own boot, a later one or boot 0 is dropped as `range`;
//! estimated times are noted per boot; records in WideTelemetry's layout are stored the same way
//! (under their boot, once, gaps kept) and answered with BacklogAck too.

mod common;

use common::*;
use tek_proto::backlog::{self, BacklogMessage};
use tek_proto::channel::split::{feature, Capabilities};
use tek_proto::channel::wide::{ChannelSet, WideWriter};
use tek_proto::channel::ChannelMessage;
use tek_proto::message::Message;
use tek_server::storage::{EstimatedBoot, Storage, TelemetryQuery, TelemetryRow, WideRow};

/// What a device on a plain pool board sends only to say it may hold earlier boots' records
/// (PROTOCOL.md 18.1: no channel support).
const BACKLOG_ONLY: Capabilities = Capabilities {
    features: feature::BACKLOG,
    max_channels: 5,
    max_buses: 0,
    max_config: 0,
    max_program: 0,
};

/// An answer of this section, owned.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Accepts(u32),
    BacklogAck { boot: u32, through_seq: u32 },
    Other,
}

async fn recv_answer(d: &mut TestDevice, timeout: std::time::Duration) -> Option<Answer> {
    let mut bytes = d.recv_raw(timeout).await?;
    let session = d.session.as_mut()?;
    let Ok(msg) = session.open(&mut bytes) else {
        return Some(Answer::Other);
    };
    Some(match BacklogMessage::parse(msg) {
        Ok(Some(BacklogMessage::Accepts(f))) => Answer::Accepts(f),
        Ok(Some(BacklogMessage::BacklogAck { boot, through_seq })) => {
            Answer::BacklogAck { boot, through_seq }
        }
        _ => Answer::Other,
    })
}

fn caps(c: Capabilities) -> Vec<u8> {
    let m = ChannelMessage::Capabilities(c);
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf).unwrap();
    buf
}

/// A Backlog of `boot` with `flags` around a Telemetry body of records `first..first + n`
/// (ages 60 s apart, newest 10 s old: [`TestDevice::telemetry`]).
fn backlog(d: &TestDevice, boot: u32, flags: u8, first: u32, n: u32) -> Vec<u8> {
    let telemetry = d.telemetry(first, n);
    let mut m = vec![0u8; 1 + backlog::HEADER_LEN];
    backlog::write_header(&mut m, boot.max(1), flags).unwrap();
    // Boot 0 cannot be written by the reference writer (it is never valid): patch it in.
    m[1..5].copy_from_slice(&boot.to_be_bytes());
    m.extend_from_slice(&telemetry[1..]);
    m
}

/// A Backlog of `boot` with `flags` in WideTelemetry's layout: two records of 16 channels (ages
/// 120 and 60 s), channel 3 without a value in the second.
fn wide_backlog(boot: u32, flags: u8) -> Vec<u8> {
    let set = (0..16).fold(ChannelSet(0), |s, c| s.with(c));
    let mut buf = vec![0u8; 512];
    let at = backlog::write_header(&mut buf, boot, backlog::WIDE | flags).unwrap();
    let mut w = WideWriter::new(&mut buf[at..], 0, set, 1000).unwrap();
    assert!(w.push(880, &[Some(2650); 16]));
    let mut second = [Some(2651); 16];
    second[3] = None;
    assert!(w.push(940, &second));
    let n = at + w.len();
    buf.truncate(n);
    buf
}

async fn send_bytes(d: &mut TestDevice, body: &[u8]) {
    let bytes = d.seal_bytes(body);
    d.send_raw(&bytes).await;
}

fn records(db: &dyn Storage, id: u32) -> Vec<TelemetryRow> {
    db.telemetry(&TelemetryQuery {
        device_id: id,
        from: 0,
        to: i64::MAX,
        limit: 1000,
    })
    .unwrap()
}

#[tokio::test]
async fn capabilities_with_the_backlog_bit_and_only_those_are_answered_with_accepts() {
    let h = start(|_| {}).await;
    let mut d = h.device(1).await;
    d.handshake().await;
    send_bytes(&mut d, &caps(BACKLOG_ONLY)).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::Accepts(backlog::accepts::BACKLOG))
    );
    // Every one of them (a device repeats it until an Accepts arrives, 18.1).
    send_bytes(&mut d, &caps(BACKLOG_ONLY)).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::Accepts(backlog::accepts::BACKLOG))
    );
    assert_eq!(h.metric("tek_accepts_sent_total").await, 2.0);

    // Capabilities without the bit: recorded, never answered.
    let channels_only = Capabilities {
        features: feature::SPLIT_CONFIG | feature::WIDE_TELEMETRY,
        max_channels: 16,
        max_config: 2048,
        ..BACKLOG_ONLY
    };
    send_bytes(&mut d, &caps(channels_only)).await;
    assert_eq!(recv_answer(&mut d, QUIET).await, None);
    assert!(
        eventually(WAIT, async || h
            .metric("tek_channel_capabilities_total")
            .await
            == 3.0)
        .await
    );
    assert_eq!(h.metric("tek_accepts_sent_total").await, 2.0);

    // Accepts and BacklogAck are the server's: from a device they are unknown messages.
    send_bytes(&mut d, &[backlog::code::ACCEPTS, 0, 0, 0, 1]).await;
    send_bytes(
        &mut d,
        &[backlog::code::BACKLOG_ACK, 0, 0, 0, 1, 0, 0, 0, 1],
    )
    .await;
    assert!(eventually(WAIT, async || h.drops("unknown_message").await == 2.0).await);
    assert_eq!(recv_answer(&mut d, QUIET).await, None);
    h.server.shutdown().await;
}

/// A harness on a fresh PostgreSQL database (storage::postgres::testing); `None` without
/// PostgreSQL binaries, except in CI where that fails.
async fn a_backlog_is_stored_under_its_boot_once_and_acknowledged_each_time(h: Harness) {
    let db = h.storage();
    let mut d = h.device(2).await;
    d.boot = 3;
    d.handshake().await;
    send_bytes(&mut d, &caps(BACKLOG_ONLY)).await;
    assert!(recv_answer(&mut d, WAIT).await.is_some());

    let before = tek_server::clock::unix_now();
    let b = backlog(&d, 2, 0, 0, 3);
    send_bytes(&mut d, &b).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 2,
            through_seq: 2
        })
    );
    let after = tek_server::clock::unix_now();
    // Acknowledged means stored: under boot 2, stamped arrival - age (newest 10 s old).
    let rows = records(&*db, 2);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.boot == 2), "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(
        (before - 10..=after - 10).contains(&rows[2].time),
        "{rows:?}"
    );
    assert_eq!(rows[1].time, rows[2].time - 60);
    assert_eq!(rows[0].get(0), Some(1000));

    // Sent again (its BacklogAck was lost): stored once, acknowledged again.
    send_bytes(&mut d, &b).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 2,
            through_seq: 2
        })
    );
    assert_eq!(db.telemetry_count(2).unwrap(), 3);
    assert_eq!(h.metric("tek_telemetry_records_stored_total").await, 3.0);
    assert_eq!(h.metric("tek_backlog_acks_sent_total").await, 2.0);
    assert_eq!(h.metric("tek_backlog_batches_total").await, 2.0);
    // Not estimated: no row for the boot.
    assert_eq!(db.estimated_boots(2, 10).unwrap(), vec![]);

    // The session's own boot goes on with Telemetry and Ack: the same sequence numbers name
    // other records there.
    d.send_telemetry(0, 2).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 1 }));
    let rows = records(&*db, 2);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows.iter().filter(|r| r.boot == 3).count(), 2);
    h.server.shutdown().await;
}

#[tokio::test]
async fn backlogs_of_this_boot_a_later_one_or_boot_0_are_dropped_as_range() {
    let h = start(|_| {}).await;
    let db = h.storage();
    let mut d = h.device(3).await;
    d.boot = 5;
    d.handshake().await;
    send_bytes(&mut d, &caps(BACKLOG_ONLY)).await;
    assert!(recv_answer(&mut d, WAIT).await.is_some());
    for (i, boot) in [5u32, 6, 0, u32::MAX].into_iter().enumerate() {
        let b = backlog(&d, boot, 0, 0, 2);
        send_bytes(&mut d, &b).await;
        assert_eq!(recv_answer(&mut d, QUIET).await, None, "boot {boot}");
        assert!(
            eventually(WAIT, async || h.drops("range").await == (i + 1) as f64).await,
            "boot {boot}"
        );
    }
    assert_eq!(db.telemetry_count(3).unwrap(), 0);
    assert_eq!(h.metric("tek_backlog_batches_total").await, 0.0);
    // A flag this version does not know is range too.
    let mut b = backlog(&d, 4, 0, 0, 2);
    b[5] = 0x04;
    send_bytes(&mut d, &b).await;
    assert!(eventually(WAIT, async || h.drops("range").await == 5.0).await);
    assert_eq!(db.telemetry_count(3).unwrap(), 0);
    // The session stays.
    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    })
    .await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));
    assert_eq!(h.metric("tek_sessions_established_total").await, 1.0);
    h.server.shutdown().await;
}

async fn estimated_times_are_noted_per_boot(h: Harness) {
    let db = h.storage();
    let mut d = h.device(4).await;
    d.boot = 3;
    d.handshake().await;
    send_bytes(&mut d, &caps(BACKLOG_ONLY)).await;
    assert!(recv_answer(&mut d, WAIT).await.is_some());

    let b = backlog(&d, 1, backlog::ESTIMATED, 0, 4);
    send_bytes(&mut d, &b).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 1,
            through_seq: 3
        })
    );
    // Acknowledged means noted too.
    let rows = records(&*db, 4);
    let noted = EstimatedBoot {
        boot: 1,
        records: 4,
        first: rows[0].time,
        last: rows[3].time,
    };
    assert_eq!(db.estimated_boots(4, 10).unwrap(), vec![noted]);
    // Again (retransmitted): the same row.
    send_bytes(&mut d, &b).await;
    assert!(recv_answer(&mut d, WAIT).await.is_some());
    assert_eq!(db.telemetry_count(4).unwrap(), 4);
    assert_eq!(db.estimated_boots(4, 10).unwrap(), vec![noted]);
    // The rest of that boot, and boot 2 with exact times (not noted).
    let b = backlog(&d, 1, backlog::ESTIMATED, 4, 2);
    send_bytes(&mut d, &b).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 1,
            through_seq: 5
        })
    );
    let b = backlog(&d, 2, 0, 0, 2);
    send_bytes(&mut d, &b).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 2,
            through_seq: 1
        })
    );
    let got = db.estimated_boots(4, 10).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].boot, got[0].records), (1, 6));
    assert_eq!(got[0].first, noted.first);
    assert!(got[0].last >= noted.last);
    h.server.shutdown().await;
}

async fn a_wide_backlog_is_stored_under_its_boot_and_acknowledged(h: Harness) {
    let db = h.storage();
    let mut d = h.device(5).await;
    d.boot = 3;
    d.handshake().await;
    send_bytes(&mut d, &caps(BACKLOG_ONLY)).await;
    assert!(recv_answer(&mut d, WAIT).await.is_some());
    let before = tek_server::clock::unix_now();
    send_bytes(&mut d, &wide_backlog(1, 0)).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 1,
            through_seq: 1
        })
    );
    let after = tek_server::clock::unix_now();
    // Acknowledged means stored: under boot 1, stamped arrival - age, the gap kept.
    let rows = wide_records(&*db, 5);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.boot == 1), "{rows:?}");
    assert!(
        (before - 60..=after - 60).contains(&rows[1].time),
        "{rows:?}"
    );
    assert_eq!(rows[0].time, rows[1].time - 60);
    assert_eq!(rows[0].values.get(3), Some(2650));
    assert_eq!(rows[1].values.get(3), None);
    assert_eq!(rows[1].values.get(4), Some(2651));
    // Sent again (its BacklogAck was lost): stored once, acknowledged again.
    send_bytes(&mut d, &wide_backlog(1, 0)).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 1,
            through_seq: 1
        })
    );
    assert_eq!(db.wide_count(5).unwrap(), 2);
    assert_eq!(
        h.metric("tek_wide_telemetry_records_stored_total").await,
        2.0
    );
    assert_eq!(h.metric("tek_backlog_wide_batches_total").await, 2.0);
    assert_eq!(h.metric("tek_backlog_records_total").await, 4.0);
    assert_eq!(h.metric("tek_backlog_acks_sent_total").await, 2.0);
    assert_eq!(db.telemetry_count(5).unwrap(), 0);
    assert_eq!(db.estimated_boots(5, 10).unwrap(), vec![], "exact times");

    // Estimated times: the boot is noted before the BacklogAck, its wide records counted.
    send_bytes(&mut d, &wide_backlog(2, backlog::ESTIMATED)).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 2,
            through_seq: 1
        })
    );
    let boot2: Vec<WideRow> = wide_records(&*db, 5)
        .into_iter()
        .filter(|r| r.boot == 2)
        .collect();
    assert_eq!(boot2.len(), 2);
    assert_eq!(
        db.estimated_boots(5, 10).unwrap(),
        vec![EstimatedBoot {
            boot: 2,
            records: 2,
            first: boot2[0].time,
            last: boot2[1].time,
        }]
    );

    // A wide one of the session's boot is range like any other; a malformed one malformed.
    send_bytes(&mut d, &wide_backlog(3, 0)).await;
    assert!(eventually(WAIT, async || h.drops("range").await == 1.0).await);
    let mut bad = wide_backlog(1, 0);
    bad.push(0);
    send_bytes(&mut d, &bad).await;
    assert!(eventually(WAIT, async || h.drops("malformed").await == 1.0).await);
    assert_eq!(db.wide_count(5).unwrap(), 4);
    // The session stays, and the Telemetry layout is stored as before.
    let b = backlog(&d, 1, 0, 2, 1);
    send_bytes(&mut d, &b).await;
    assert_eq!(
        recv_answer(&mut d, WAIT).await,
        Some(Answer::BacklogAck {
            boot: 1,
            through_seq: 2
        })
    );
    assert_eq!(db.telemetry_count(5).unwrap(), 1);
    h.server.shutdown().await;
}

on_both_backends!(
    a_backlog_is_stored_under_its_boot_once_and_acknowledged_each_time,
    estimated_times_are_noted_per_boot,
    a_wide_backlog_is_stored_under_its_boot_and_acknowledged,
);
