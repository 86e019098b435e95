//! Records of earlier boots (PROTOCOL.md 18) as this server speaks it.
//!
//! * **Accepts (0x86)** answers every Capabilities (0x06) with feature bit 4 (`backlog`), in the
//!   session that carried it ([`Ingest::send_accepts`], called from `udp/channels.rs`): this
//!   server stores Backlog and answers it with BacklogAck.
//! * **Backlog (0x0A)** ([`Ingest::on_backlog`]): a boot of 0 (refused by the parser) or not
//!   below the session's boot is `range` and dropped. Records in Telemetry's layout go the way
//!   a Telemetry's go — [`super::dispatch::telemetry_rows`] stamps them `arrival - age`, under
//!   the Backlog's boot, and the writer stores them idempotently on (device, boot, seq) in the
//!   same transaction, rollups, alarms and MQTT included — and are answered with **BacklogAck**
//!   (0x87) once committed (`writer.rs`, `send_ack`); with the *estimated* flag the writer also
//!   notes the boot ([`crate::storage::BacklogStore`]) before that answer. Records in
//!   WideTelemetry's layout go the way a WideTelemetry's go (`udp/channels.rs`:
//!   [`super::dispatch::wide_rows`], [`crate::storage::WideStore`]), under the Backlog's boot,
//!   and are answered with BacklogAck the same way, the estimated flag included. The
//!   configuration version kept with them is the one the device reported in the current
//!   session: a Backlog does not say which one the earlier boot ran.
//! * Accepts and BacklogAck from a device are of the other direction: `unknown_message`.

use super::sessions::Link;
use super::Ingest;
use crate::metrics::DropReason;
use crate::write_job::{Acknowledge, WriteJob};
use tek_proto::backlog::{accepts, Backlog, BacklogMessage, Records};

impl Ingest {
    /// Answers a Capabilities with the backlog bit: Accepts with bit 0 (PROTOCOL.md 18.1).
    pub(super) fn send_accepts(&self, link: &mut Link) {
        if self.send_backlog_message(link, &BacklogMessage::Accepts(accepts::BACKLOG)) {
            self.metrics.accepts_sent();
        }
    }

    /// A Backlog in an open session of device `id`; its records become a write job.
    pub(super) fn on_backlog(
        &self,
        id: u32,
        link: &Link,
        b: Backlog<'_>,
        at: i64,
        jobs: &mut Vec<WriteJob>,
    ) -> Result<(), DropReason> {
        let live = link.live.as_ref().ok_or(DropReason::StaleSession)?;
        // Only earlier boots: the session's own boot travels in Telemetry, acknowledged by Ack.
        if b.boot >= live.boot {
            return Err(DropReason::Range);
        }
        match b.records {
            Records::Telemetry(t) => {
                self.metrics.backlog(u64::from(t.count()));
                jobs.push(WriteJob::Telemetry {
                    device_id: id,
                    session_id: live.session.session_id(),
                    through_seq: t.last_seq(),
                    ack: Acknowledge::Backlog {
                        boot: b.boot,
                        estimated: b.estimated,
                    },
                    rows: super::dispatch::telemetry_rows(id, b.boot, &t, at),
                });
            }
            Records::Wide(w) => {
                self.metrics.backlog_wide(u64::from(w.count()));
                jobs.push(WriteJob::WideTelemetry {
                    device_id: id,
                    session_id: live.session.session_id(),
                    through_seq: w.last_seq(),
                    ack: Acknowledge::Backlog {
                        boot: b.boot,
                        estimated: b.estimated,
                    },
                    rows: super::dispatch::wide_rows(id, b.boot, link.reported_version, &w, at),
                });
            }
        }
        Ok(())
    }

    /// Seals a message of PROTOCOL.md 18 in the link's live session and sends it to the link's
    /// endpoint (as [`Ingest::send`] does for version 1 messages). Returns whether it was handed
    /// to the socket.
    pub(crate) fn send_backlog_message(&self, link: &mut Link, msg: &BacklogMessage<'_>) -> bool {
        let emit = |body: &mut [u8]| msg.emit(body).is_ok();
        self.send_extension(link, msg.buffer_len(), emit, msg)
    }
}
