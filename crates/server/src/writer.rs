//! The writer task: every durable write of the ingest path goes through one queue and is
//! committed in batches — one telemetry transaction per batch of many datagrams (a batch closes
//! after `ingest.flush_interval_ms` or `ingest.batch_records` records; with the default
//! interval of 0 this is group commit: a batch is whatever queued while the previous commit
//! ran). Acks are sent only after
//! the commit returned, so an acknowledged record is on disk. Records of earlier boots (Backlog,
//! PROTOCOL.md 18) share the transaction and are answered with BacklogAck instead; those with
//! estimated times have their boot noted first (`BacklogStore::note_estimated_boots`), and are
//! answered only once that is stored too. On shutdown the queue is drained and committed before
//! the task ends. Wide telemetry (PROTOCOL.md 17.5, and Backlogs in its layout) is committed by
//! the same batch in a transaction of its own (`WideStore::insert_wide_new`) and acknowledged the
//! same way once that commit returned.
//!
//! Two stages overlap (issue 21, ingest): this task gathers a batch and commits it; a second
//! task, the answerer ([`answer_committed`]), takes each committed batch in commit order and
//! does what follows a commit — Acks (sealed, then sent in one `sendmmsg` per 64,
//! [`crate::udp::send_batch`]), metrics, alarms, MQTT — while the next batch commits. The Acks
//! of a batch are handed over only after its commit returned, so the guarantee is unchanged; on
//! shutdown the writer waits for the answerer to finish what it was handed.

use crate::storage::{Storage, TelemetryRow, WideRow};
use crate::udp::send_batch::SendBatch;
use crate::udp::Ingest;
use crate::write_job::{Acknowledge, WriteJob};
use std::sync::Arc;
use tek_proto::backlog::BacklogMessage;
use tek_proto::message::{ConfigResult, Message};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Runs until `stop` turns true, then drains the queue, commits, and returns.
pub(crate) async fn run(
    ingest: Arc<Ingest>,
    mut rx: mpsc::Receiver<WriteJob>,
    mut stop: watch::Receiver<bool>,
) {
    let max = ingest.cfg.ingest.batch_records;
    let flush = ingest.cfg.flush_interval();
    // One committed batch waiting besides the one being answered: enough to keep both stages
    // busy, and a slow answerer holds the next commit back rather than piling up Acks.
    let (committed_tx, committed_rx) = mpsc::channel(1);
    let answerer = tokio::spawn(answer_committed(ingest.clone(), committed_rx));
    let mut stopping = false;
    while !stopping {
        let first = tokio::select! {
            biased;
            j = rx.recv() => match j {
                Some(j) => j,
                None => break,
            },
            _ = crate::runtime::stopped(&mut stop) => {
                let mut batch = Vec::new();
                while let Ok(j) = rx.try_recv() {
                    batch.push(j);
                }
                commit(&ingest, batch, &committed_tx).await;
                break;
            }
        };
        let mut records = first.records();
        let mut batch = vec![first];
        let deadline = Instant::now() + flush;
        while records < max {
            tokio::select! {
                biased;
                j = rx.recv() => match j {
                    Some(j) => {
                        records += j.records();
                        batch.push(j);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = crate::runtime::stopped(&mut stop) => {
                    stopping = true;
                    while let Ok(j) = rx.try_recv() {
                        batch.push(j);
                    }
                    break;
                }
            }
        }
        commit(&ingest, batch, &committed_tx).await;
    }
    // Everything committed is answered before the writer counts as stopped (shutdown acks
    // what it committed).
    drop(committed_tx);
    if let Err(e) = answerer.await {
        tracing::error!(%e, "answerer failed");
    }
    tracing::debug!("writer stopped");
}

/// Answers committed batches in commit order until the writer drops its end.
async fn answer_committed(ingest: Arc<Ingest>, mut committed: mpsc::Receiver<Committed>) {
    let mut acks = SendBatch::new();
    while let Some(c) = committed.recv().await {
        answer(&ingest, c, &mut acks);
    }
}

/// What one commit did to the non-telemetry jobs, for the metrics.
enum Outcome {
    Synced,
    RolledBack,
    Nothing,
    Failed(crate::storage::Error),
}

fn apply(storage: &dyn Storage, job: &WriteJob) -> Outcome {
    let r = match job {
        WriteJob::Telemetry { .. } | WriteJob::WideTelemetry { .. } => return Outcome::Nothing,
        WriteJob::Status {
            device_id,
            status,
            at,
        } => storage.store_status(*device_id, status, *at).map(|_| false),
        WriteJob::ChannelFaults {
            device_id,
            faults,
            at,
        } => storage
            .store_channel_faults(*device_id, faults, *at)
            .map(|_| false),
        WriteJob::ConfigAck {
            device_id,
            version,
            result,
            at,
        } => storage.config_acked(*device_id, *version, *result, *at),
        WriteJob::ConfigRunning {
            device_id,
            version,
            at,
        } => storage.config_running(*device_id, *version, *at),
        WriteJob::CommandAck {
            device_id,
            id,
            result,
            at,
        } => storage
            .command_acked(*device_id, *id, *result, *at)
            .map(|_| false),
        WriteJob::CommandSent {
            device_id,
            id,
            boot,
        } => storage.command_sent(*device_id, *id, *boot).map(|_| false),
    };
    match (r, job) {
        (Err(e), _) => Outcome::Failed(e),
        (
            Ok(true),
            WriteJob::ConfigAck {
                device_id,
                version,
                result: ConfigResult::RolledBack,
                at,
            },
        ) => {
            audit_rollback(storage, *device_id, *version, *at);
            Outcome::RolledBack
        }
        (Ok(true), _) => Outcome::Synced,
        (Ok(false), _) => Outcome::Nothing,
    }
}

/// A rollback is a change the controller made on its own: it goes into the audit log with the
/// controller as the actor, so operators see it next to the change it undid. A failure to write
/// the entry is logged, not fatal (the state change is already stored).
fn audit_rollback(storage: &dyn Storage, device_id: u32, version: u32, at: i64) {
    let site_id = storage.device_site(device_id).ok().flatten();
    let entry = crate::storage::NewAuditEntry {
        user_id: None,
        actor: "controller".into(),
        action: "config.rollback".into(),
        device_id: Some(device_id),
        site_id,
        detail: format!(
            "v{version} rolled back by the controller: it could not reach a server with it and restored its previous configuration"
        ),
    };
    if let Err(e) = storage.append_audit(&entry, at) {
        tracing::warn!(device_id, version, error = %e, "rollback not written to the audit log");
    }
}

/// An acknowledgement owed once a batch's records are stored: device, session, through seq, kind.
type OwedAck = (u32, u32, u32, Acknowledge);

/// A batch whose writes returned, with what is owed for it: handed from the writer to the
/// answerer.
struct Committed {
    telemetry: crate::storage::Result<Vec<TelemetryRow>>,
    wide: crate::storage::Result<Vec<WideRow>>,
    noted: crate::storage::Result<()>,
    acks: Vec<OwedAck>,
    wide_acks: Vec<OwedAck>,
    others: Vec<WriteJob>,
    outcomes: Vec<Outcome>,
    alarm_rows: Vec<TelemetryRow>,
    alarm_wide: Vec<WideRow>,
}

/// Commits `batch` and hands the result to the answerer. Returns once the commit returned
/// (not once it is answered), so the next batch can commit while this one is answered.
async fn commit(ingest: &Arc<Ingest>, batch: Vec<WriteJob>, answerer: &mpsc::Sender<Committed>) {
    if batch.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    let mut acks: Vec<OwedAck> = Vec::new();
    let mut wide_rows = Vec::new();
    let mut wide_acks: Vec<OwedAck> = Vec::new();
    let mut others = Vec::new();
    for job in batch {
        match job {
            WriteJob::Telemetry {
                device_id,
                session_id,
                through_seq,
                ack,
                rows: r,
            } => {
                rows.extend(r);
                acks.push((device_id, session_id, through_seq, ack));
            }
            WriteJob::WideTelemetry {
                device_id,
                session_id,
                through_seq,
                ack,
                rows: r,
            } => {
                wide_rows.extend(r);
                wide_acks.push((device_id, session_id, through_seq, ack));
            }
            other => others.push(other),
        }
    }
    // The alarm engine sees records only once they are committed.
    let (alarm_rows, alarm_wide) = if ingest.alarms.active() {
        (rows.clone(), wide_rows.clone())
    } else {
        (Vec::new(), Vec::new())
    };
    // Boots to note as estimated: those of the batches whose records were committed.
    let estimated = |acks: &[OwedAck]| -> Vec<(u32, u32)> {
        acks.iter()
            .filter_map(|&(device_id, _, _, ack)| match ack {
                Acknowledge::Backlog {
                    boot,
                    estimated: true,
                } => Some((device_id, boot)),
                _ => None,
            })
            .collect()
    };
    let mut to_note = estimated(&acks);
    let wide_estimated = estimated(&wide_acks);
    let storage = ingest.storage.clone();
    let done = tokio::task::spawn_blocking(move || {
        let telemetry = storage.insert_telemetry_new(&rows);
        // Its own transaction: an Ack says the batch's records are durable, which each of the
        // two commits establishes for its own batches.
        let wide = storage.insert_wide_new(&wide_rows);
        // Only over committed records: the note counts what is stored.
        if telemetry.is_err() {
            to_note.clear();
        }
        if wide.is_ok() {
            to_note.extend(wide_estimated);
        }
        let noted = storage.note_estimated_boots(&to_note);
        let outcomes: Vec<Outcome> = others.iter().map(|j| apply(&*storage, j)).collect();
        (telemetry, wide, noted, others, outcomes)
    })
    .await;
    let (telemetry, wide, noted, others, outcomes) = match done {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(%e, "write task failed");
            ingest.metrics.storage_error();
            return;
        }
    };
    let committed = Committed {
        telemetry,
        wide,
        noted,
        acks,
        wide_acks,
        others,
        outcomes,
        alarm_rows,
        alarm_wide,
    };
    if answerer.send(committed).await.is_err() {
        // Only if the answerer panicked: nothing is acknowledged, so devices re-send.
        tracing::error!("answerer gone: a committed batch stays unacknowledged");
    }
}

/// What follows the commit of one batch, in the answerer: metrics, Acks (only for what was
/// stored, all of them sent together through `out`), alarms and MQTT events.
fn answer(ingest: &Ingest, c: Committed, out: &mut SendBatch) {
    let Committed {
        telemetry,
        wide,
        noted,
        acks,
        wide_acks,
        others,
        outcomes,
        alarm_rows,
        alarm_wide,
    } = c;
    if let Err(e) = &noted {
        // Stored, but not marked estimated: no BacklogAck for those batches, so the device
        // sends them again and the note is made then (it is recomputed from the stored
        // records, so nothing is counted twice).
        ingest.metrics.storage_error();
        tracing::warn!(%e, "estimated boots not noted");
    }
    // Committed: now, and only now, acknowledge.
    let acknowledge = |acks: Vec<OwedAck>, out: &mut SendBatch| {
        for (device_id, session_id, through_seq, ack) in acks {
            let estimated = matches!(
                ack,
                Acknowledge::Backlog {
                    estimated: true,
                    ..
                }
            );
            if !estimated || noted.is_ok() {
                send_ack(ingest, device_id, session_id, through_seq, ack, out);
            }
        }
        let sealed = out.len();
        let sent = out.send(&ingest.socket);
        if sent < sealed {
            tracing::debug!(lost = sealed - sent, "acks not sent");
        }
        ingest.metrics.acks_sent(sent as u64);
    };
    match telemetry {
        Ok(new) => {
            ingest.metrics.records_stored(new.len() as u64);
            ingest.metrics.write_batch();
            acknowledge(acks, out);
            ingest.alarms.telemetry(&alarm_rows);
            // Only what this commit stored: a retransmission stored before (here or by another
            // server of the fleet) was published then.
            ingest.mqtt.offer(crate::mqtt::Event::Records(new));
        }
        Err(e) => {
            // No Ack: the devices keep the records and retransmit them.
            ingest.metrics.storage_error();
            tracing::warn!(%e, batches = acks.len(), "telemetry commit failed");
        }
    }
    match wide {
        Ok(new) => {
            ingest.metrics.wide_records_stored(new.len() as u64);
            acknowledge(wide_acks, out);
            ingest.alarms.wide(&alarm_wide);
            // Only what this commit stored, as for the narrow records: a retransmission stored
            // before (here or by another server of the fleet) was published then.
            if !new.is_empty() {
                ingest.mqtt.offer(crate::mqtt::Event::Wide(new));
            }
        }
        Err(e) => {
            ingest.metrics.storage_error();
            tracing::warn!(%e, batches = wide_acks.len(), "wide telemetry commit failed");
        }
    }
    for (job, o) in others.iter().zip(outcomes) {
        if !matches!(o, Outcome::Failed(_)) {
            alarm_event(ingest, job, &o);
            mqtt_event(ingest, job, &o);
        }
        match o {
            Outcome::Synced => ingest.metrics.config_synced(),
            Outcome::RolledBack => ingest.metrics.config_rolled_back(),
            Outcome::Nothing => {}
            Outcome::Failed(e) => {
                ingest.metrics.storage_error();
                tracing::warn!(%e, "write failed");
                forget_confirmation(ingest, job);
            }
        }
    }
}

/// Hands a committed status or configuration confirmation to the alarm engine.
fn alarm_event(ingest: &Ingest, job: &WriteJob, o: &Outcome) {
    use crate::alarms::task::Event;
    match (job, o) {
        (
            WriteJob::Status {
                device_id,
                status,
                at,
            },
            _,
        ) => ingest.alarms.offer(Event::Status {
            device_id: *device_id,
            transport: status.transport,
            log_drops: status.log_drops,
            at: *at,
        }),
        (
            WriteJob::ChannelFaults {
                device_id,
                faults,
                at,
            },
            _,
        ) => ingest.alarms.offer(Event::ChannelFaults {
            device_id: *device_id,
            faults: faults.clone(),
            at: *at,
        }),
        (
            WriteJob::ConfigAck { device_id, at, .. }
            | WriteJob::ConfigRunning { device_id, at, .. },
            Outcome::Synced | Outcome::RolledBack,
        ) => ingest.alarms.offer(Event::ConfigSettled {
            device_id: *device_id,
            at: *at,
        }),
        _ => {}
    }
}

/// Hands a committed status report or configuration outcome to the MQTT publisher.
fn mqtt_event(ingest: &Ingest, job: &WriteJob, o: &Outcome) {
    use crate::mqtt::{ConfigEvent, Event};
    let e = match (job, o) {
        (
            WriteJob::Status {
                device_id,
                status,
                at,
            },
            _,
        ) => Event::Status {
            device_id: *device_id,
            status: *status,
            at: *at,
        },
        (
            WriteJob::ConfigAck {
                device_id,
                version,
                at,
                ..
            }
            | WriteJob::ConfigRunning {
                device_id,
                version,
                at,
            },
            Outcome::Synced | Outcome::RolledBack,
        ) => Event::Config {
            device_id: *device_id,
            version: *version,
            state: if matches!(o, Outcome::RolledBack) {
                ConfigEvent::RolledBack
            } else {
                ConfigEvent::Applied
            },
            at: *at,
        },
        _ => return,
    };
    ingest.mqtt.offer(e);
}

/// A confirmation that could not be stored must not count as stored: the session table goes
/// back to *pending* for that version, so the device's next Keepalive or Status (which reports
/// the version it runs) writes the confirmation again. A failed rolled-back report stays as it
/// is in memory: going back to pending would push the bad network settings once more.
fn forget_confirmation(ingest: &Ingest, job: &WriteJob) {
    let (device_id, version) = match job {
        WriteJob::ConfigAck {
            device_id,
            version,
            result,
            ..
        } if *result != ConfigResult::RolledBack => (*device_id, *version),
        WriteJob::ConfigRunning {
            device_id, version, ..
        } => (*device_id, *version),
        _ => return,
    };
    ingest.links.with(device_id, |link| {
        if let Some(d) = link.and_then(|l| l.desired.as_mut()) {
            if d.version() == version {
                d.set_state(crate::storage::ConfigState::Pending);
            }
        }
    });
}

/// Sends the answer `ack` says to a committed batch: an Ack (0x81) is sealed into `out`, which
/// the caller sends with the batch's others; a BacklogAck (0x87, rare: only after an outage) is
/// sent at once.
fn send_ack(
    ingest: &Ingest,
    device_id: u32,
    session_id: u32,
    through_seq: u32,
    ack: Acknowledge,
    out: &mut SendBatch,
) {
    ingest.links.with(device_id, |link| {
        let Some(link) = link else {
            return;
        };
        // Only in the session that carried the batch: a new session may be a new boot, whose
        // sequence numbers start again.
        if link
            .live
            .as_ref()
            .is_none_or(|l| l.session.session_id() != session_id)
        {
            return;
        }
        match ack {
            Acknowledge::Ack => {
                let ack = Message::Ack {
                    through_seq,
                    server_time: crate::clock::server_time(),
                };
                let mut buf = [0u8; tek_proto::MAX_DATAGRAM];
                if let Some((n, to)) = Ingest::seal(link, &ack, &mut buf) {
                    out.push(&buf[..n], to);
                }
            }
            Acknowledge::Backlog { boot, .. } => {
                let ack = BacklogMessage::BacklogAck { boot, through_seq };
                if ingest.send_backlog_message(link, &ack) {
                    ingest.metrics.backlog_ack_sent();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{AuditFilter, AuditStore, ConfigStore, DeviceStore, NewDevice};
    use tek_proto::crypto::Key;
    use tek_proto::message::Config;

    /// Issue 19 point 7: a rollback reported by the controller is in the audit log.
    #[test]
    fn a_rollback_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::sqlite::Sqlite::open_dir(dir.path()).unwrap();
        db.add_devices(
            &[NewDevice {
                id: 4,
                name: "Pool".into(),
                key: Key([0; 16]),
            }],
            0,
        )
        .unwrap();
        let v = db.save_config(4, &Config::default(), 10).unwrap();
        let job = WriteJob::ConfigAck {
            device_id: 4,
            version: v,
            result: ConfigResult::RolledBack,
            at: 20,
        };
        assert!(matches!(apply(&db, &job), Outcome::RolledBack));
        let log = db
            .audit(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(log.len(), 1);
        let e = &log[0];
        assert_eq!((e.at, e.entry.actor.as_str()), (20, "controller"));
        assert_eq!(e.entry.action, "config.rollback");
        assert_eq!(e.entry.device_id, Some(4));
        assert!(e.entry.detail.starts_with(&format!("v{v} rolled back")));
        // A repeated ConfigAck changes nothing and adds nothing.
        assert!(matches!(apply(&db, &job), Outcome::Nothing));
        assert_eq!(
            db.audit(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .unwrap()
            .len(),
            1
        );
    }
}
