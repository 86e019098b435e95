//! Commands in SQLite. The AUTOINCREMENT id is both the wire id and the change-feed position.

use super::{u32_col, Sqlite};
use crate::storage::commands::{
    self, CommandAck, CommandRecord, CommandState, CommandStore, ACKABLE,
};
use crate::storage::{Error, Result};
use rusqlite::params;
use tek_proto::message::Command;

const COLUMNS: &str = "id, device_id, kind, arg1, arg2, queued_at, state, acked_at, sent_boot";

type Raw = (
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
    Option<i64>,
    Option<i64>,
);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    // rusqlite maps a row to a tuple of its columns, in order.
    r.try_into()
}

fn convert(raw: Raw) -> Result<CommandRecord> {
    let (id, device_id, kind, a, b, queued_at, state, acked_at, sent_boot) = raw;
    Ok(CommandRecord {
        id: u32_col(id, "command id")?,
        device_id: u32_col(device_id, "device id")?,
        command: commands::decode(kind, a, b)
            .ok_or_else(|| Error::Corrupt(format!("command {id}: kind {kind} ({a}, {b})")))?,
        queued_at,
        state: CommandState::parse(&state)
            .ok_or_else(|| Error::Corrupt(format!("command state {state:?}")))?,
        acked_at,
        sent_boot: sent_boot.map(|b| u32_col(b, "boot")).transpose()?,
    })
}

impl CommandStore for Sqlite {
    fn queue_command(&self, device_id: u32, command: &Command, now: i64) -> Result<u32> {
        let (kind, a, b) = commands::encode_valid(command)?;
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM devices WHERE id = ?1")?
            .exists(params![device_id])?;
        if !exists {
            return Err(Error::NotFound(device_id));
        }
        tx.execute(
            "UPDATE commands SET state = 'expired', acked_at = ?2
             WHERE device_id = ?1 AND state = 'queued' AND queued_at <= ?3",
            params![device_id, now, now - commands::EXPIRE_AFTER_S],
        )?;
        let waiting: i64 = tx.query_row(
            "SELECT COUNT(*) FROM commands WHERE device_id = ?1 AND state = 'queued'",
            params![device_id],
            |r| r.get(0),
        )?;
        if waiting >= i64::from(commands::MAX_PENDING) {
            return Err(commands::queue_full(device_id));
        }
        tx.execute(
            "INSERT INTO commands (device_id, kind, arg1, arg2, queued_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![device_id, kind, a, b, now],
        )?;
        let id = u32_col(tx.last_insert_rowid(), "command id")?;
        tx.commit()?;
        Ok(id)
    }

    fn pending_commands(&self, device_id: u32) -> Result<Vec<CommandRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM commands WHERE device_id = ?1 AND state = 'queued' ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![device_id], raw)?;
        rows.map(|r| convert(r?)).collect()
    }

    fn commands_since(&self, after: u32, limit: usize) -> Result<Vec<CommandRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM commands WHERE id > ?1 ORDER BY id LIMIT CAST(?2 AS INTEGER)"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![after, limit], raw)?;
        rows.map(|r| convert(r?)).collect()
    }

    fn command_cursor(&self) -> Result<u32> {
        let conn = self.reader()?;
        let v: Option<i64> = conn.query_row("SELECT MAX(id) FROM commands", [], |r| r.get(0))?;
        v.map_or(Ok(0), |v| u32_col(v, "command id"))
    }

    fn apply_ack(&self, ack: &CommandAck) -> Result<bool> {
        let n = self.writer()?.execute(
            &format!(
                "UPDATE commands SET state = ?3, acked_at = ?4
                 WHERE id = ?1 AND device_id = ?2 AND state IN {ACKABLE}"
            ),
            params![ack.id, ack.device_id, ack.to.as_str(), ack.at],
        )?;
        Ok(n == 1)
    }

    fn commands(&self, device_id: u32, limit: usize) -> Result<Vec<CommandRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM commands WHERE device_id = ?1 ORDER BY id DESC LIMIT CAST(?2 AS INTEGER)"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![device_id, limit], raw)?;
        rows.map(|r| convert(r?)).collect()
    }

    fn expire_commands(&self, now: i64) -> Result<u64> {
        let conn = self.writer()?;
        let n = conn.execute(
            "UPDATE commands SET state = 'expired', acked_at = ?1
             WHERE state = 'queued' AND queued_at <= ?2",
            params![now, now - commands::EXPIRE_AFTER_S],
        )?;
        Ok(n as u64)
    }

    fn command_sent(&self, device_id: u32, id: u32, boot: u32) -> Result<()> {
        let conn = self.writer()?;
        conn.execute(
            "UPDATE commands SET sent_boot = ?3
             WHERE id = ?1 AND device_id = ?2 AND state = 'queued'
               AND (sent_boot IS NULL OR sent_boot < ?3)",
            params![id, device_id, boot],
        )?;
        Ok(())
    }

    fn reboots_done(&self, device_id: u32, boot: u32, now: i64) -> Result<Vec<u32>> {
        let (kind, _, _) = commands::encode(&Command::Reboot);
        let conn = self.writer()?;
        let mut stmt = conn.prepare_cached(
            "UPDATE commands SET state = 'done', acked_at = ?3
             WHERE device_id = ?1 AND state = 'queued' AND kind = ?4 AND sent_boot < ?2
             RETURNING id",
        )?;
        let ids = stmt.query_map(params![device_id, boot, now, kind], |r| r.get::<_, i64>(0))?;
        ids.map(|id| u32_col(id?, "command id")).collect()
    }
}
