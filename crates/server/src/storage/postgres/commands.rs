//! Commands in PostgreSQL. Queuing takes the command-feed lock (ids appear in commit order) and
//! notifies every listening server in the same transaction.

use super::{locks, u32_col, Postgres, CHANNEL};
use crate::storage::commands::{
    self, CommandAck, CommandRecord, CommandState, CommandStore, ACKABLE,
};
use crate::storage::{sql_limit, Error, Result};
use tek_proto::message::Command;
use tokio_postgres::Row;

const COLUMNS: &str = "id, device_id, kind, arg1, arg2, queued_at, state, acked_at, sent_boot";

fn convert(r: &Row) -> Result<CommandRecord> {
    let id: i64 = r.get(0);
    let (kind, a, b): (i64, i64, i64) = (r.get(2), r.get(3), r.get(4));
    let state: &str = r.get(6);
    Ok(CommandRecord {
        id: u32_col(id, "command id")?,
        device_id: u32_col(r.get(1), "device id")?,
        command: commands::decode(kind, a, b)
            .ok_or_else(|| Error::Corrupt(format!("command {id}: kind {kind} ({a}, {b})")))?,
        queued_at: r.get(5),
        state: CommandState::parse(state)
            .ok_or_else(|| Error::Corrupt(format!("command state {state:?}")))?,
        acked_at: r.get(7),
        sent_boot: r
            .get::<_, Option<i64>>(8)
            .map(|b| u32_col(b, "boot"))
            .transpose()?,
    })
}

impl CommandStore for Postgres {
    fn queue_command(&self, device_id: u32, command: &Command, now: i64) -> Result<u32> {
        let (kind, a, b) = commands::encode_valid(command)?;
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::COMMAND_FEED])
                .await?;
            let d = i64::from(device_id);
            if tx
                .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&d])
                .await?
                .is_none()
            {
                return Err(Error::NotFound(device_id));
            }
            tx.execute(
                "UPDATE commands SET state = 'expired', acked_at = $2
                 WHERE device_id = $1 AND state = 'queued' AND queued_at <= $3",
                &[&d, &now, &(now - commands::EXPIRE_AFTER_S)],
            )
            .await?;
            let waiting: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM commands WHERE device_id = $1 AND state = 'queued'",
                    &[&d],
                )
                .await?
                .get(0);
            if waiting >= i64::from(commands::MAX_PENDING) {
                return Err(commands::queue_full(device_id));
            }
            let id: i64 = tx
                .query_one(
                    "INSERT INTO commands (device_id, kind, arg1, arg2, queued_at)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&d, &kind, &a, &b, &now],
                )
                .await?
                .get(0);
            tx.execute("SELECT pg_notify($1, 'command')", &[&CHANNEL])
                .await?;
            tx.commit().await?;
            u32_col(id, "command id")
        })
    }

    fn pending_commands(&self, device_id: u32) -> Result<Vec<CommandRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM commands
                         WHERE device_id = $1 AND state = 'queued' ORDER BY id"
                    ),
                    &[&i64::from(device_id)],
                )
                .await?;
            rows.iter().map(convert).collect()
        })
    }

    fn commands_since(&self, after: u32, n: usize) -> Result<Vec<CommandRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!("SELECT {COLUMNS} FROM commands WHERE id > $1 ORDER BY id LIMIT $2"),
                    &[&i64::from(after), &sql_limit(n)],
                )
                .await?;
            rows.iter().map(convert).collect()
        })
    }

    fn command_cursor(&self) -> Result<u32> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let v: Option<i64> = c
                .query_one("SELECT MAX(id) FROM commands", &[])
                .await?
                .get(0);
            v.map_or(Ok(0), |v| u32_col(v, "command id"))
        })
    }

    fn apply_ack(&self, ack: &CommandAck) -> Result<bool> {
        let ack = *ack;
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    &format!(
                        "UPDATE commands SET state = $3, acked_at = $4
                         WHERE id = $1 AND device_id = $2 AND state IN {ACKABLE}"
                    ),
                    &[
                        &i64::from(ack.id),
                        &i64::from(ack.device_id),
                        &ack.to.as_str(),
                        &ack.at,
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn commands(&self, device_id: u32, n: usize) -> Result<Vec<CommandRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM commands WHERE device_id = $1
                         ORDER BY id DESC LIMIT $2"
                    ),
                    &[&i64::from(device_id), &sql_limit(n)],
                )
                .await?;
            rows.iter().map(convert).collect()
        })
    }

    fn expire_commands(&self, now: i64) -> Result<u64> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            Ok(c.execute(
                "UPDATE commands SET state = 'expired', acked_at = $1
                 WHERE state = 'queued' AND queued_at <= $2",
                &[&now, &(now - commands::EXPIRE_AFTER_S)],
            )
            .await?)
        })
    }

    fn command_sent(&self, device_id: u32, id: u32, boot: u32) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.execute(
                "UPDATE commands SET sent_boot = $3
                 WHERE id = $1 AND device_id = $2 AND state = 'queued'
                   AND (sent_boot IS NULL OR sent_boot < $3)",
                &[&i64::from(id), &i64::from(device_id), &i64::from(boot)],
            )
            .await?;
            Ok(())
        })
    }

    fn reboots_done(&self, device_id: u32, boot: u32, now: i64) -> Result<Vec<u32>> {
        let (kind, _, _) = commands::encode(&Command::Reboot);
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "UPDATE commands SET state = 'done', acked_at = $3
                     WHERE device_id = $1 AND state = 'queued' AND kind = $4 AND sent_boot < $2
                     RETURNING id",
                    &[&i64::from(device_id), &i64::from(boot), &now, &kind],
                )
                .await?;
            rows.iter()
                .map(|r| u32_col(r.get::<_, i64>(0), "command id"))
                .collect()
        })
    }
}
