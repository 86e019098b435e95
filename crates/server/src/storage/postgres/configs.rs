//! Configuration versions in PostgreSQL. The device row carries the summary (desired, applied,
//! rolled back), as in the SQLite backend. A save takes the feed lock (gap-free `seq` in commit
//! order) and notifies every listening server in the same transaction.

use super::{locks, u32_col, Postgres, CHANNEL};
use crate::storage::configs::{
    valid_items, ConfigRecord, ConfigState, ConfigStore, ConfigTransition,
};
use crate::storage::{sql_limit, Error, Result};
use tek_proto::message::Config;
use tokio_postgres::Row;

const COLUMNS: &str = "seq, device_id, version, items, saved_at, state, acked_at, sealed";

fn convert(vault: Option<&crate::vault::Vault>, r: &Row) -> Result<ConfigRecord> {
    let device_id: i64 = r.get(1);
    let state: &str = r.get(5);
    let (id, version) = (
        u32_col(device_id, "device id")?,
        u32_col(r.get(2), "config version")?,
    );
    let items = crate::storage::sealed::open_items(vault, id, version, r.get(7), r.get(3))?;
    Ok(ConfigRecord {
        device_id: id,
        version,
        config: Config::parse_items(&items)
            .map_err(|e| Error::Corrupt(format!("config items of device {device_id}: {e}")))?,
        saved_at: r.get(4),
        state: ConfigState::parse(state)
            .ok_or_else(|| Error::Corrupt(format!("config state {state:?}")))?,
        acked_at: r.get(6),
        seq: r.get(0),
    })
}

impl ConfigStore for Postgres {
    fn save_config(&self, device_id: u32, config: &Config, now: i64) -> Result<u32> {
        let items = valid_items(config)?;
        // Without the master key (a command run without --master-key) the items are stored in
        // the clear, and sealed when a server next connects (storage::sealed).
        let vault = self.vault.clone();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::CONFIG_FEED])
                .await?;
            let desired: i64 = tx
                .query_opt(
                    "SELECT config_desired FROM devices WHERE id = $1 FOR UPDATE",
                    &[&i64::from(device_id)],
                )
                .await?
                .ok_or(Error::NotFound(device_id))?
                .get(0);
            let version = u32_col(desired + 1, "config version")?;
            let (items, sealed) = match &vault {
                Some(v) => (
                    crate::storage::sealed::seal_items(v, device_id, version, &items)?,
                    true,
                ),
                None => (items, false),
            };
            tx.execute(
                "INSERT INTO configs (device_id, version, items, saved_at, sealed) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &i64::from(device_id),
                    &i64::from(version),
                    &items,
                    &now,
                    &sealed,
                ],
            )
            .await?;
            tx.execute(
                "UPDATE devices SET config_desired = $2 WHERE id = $1",
                &[&i64::from(device_id), &i64::from(version)],
            )
            .await?;
            tx.execute("SELECT pg_notify($1, 'config')", &[&CHANNEL])
                .await?;
            tx.commit().await?;
            Ok(version)
        })
    }

    fn latest_config(&self, device_id: u32) -> Result<Option<ConfigRecord>> {
        let vault = self.vault.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM configs WHERE device_id = $1
                     ORDER BY version DESC LIMIT 1"
                ),
                &[&i64::from(device_id)],
            )
            .await?
            .as_ref()
            .map(|r| convert(vault.as_deref(), r))
            .transpose()
        })
    }

    fn config_version(&self, device_id: u32, version: u32) -> Result<Option<ConfigRecord>> {
        let vault = self.vault.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM configs WHERE device_id = $1 AND version = $2"),
                &[&i64::from(device_id), &i64::from(version)],
            )
            .await?
            .as_ref()
            .map(|r| convert(vault.as_deref(), r))
            .transpose()
        })
    }

    fn configs_since(&self, seq: i64, n: usize) -> Result<Vec<ConfigRecord>> {
        let vault = self.vault.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!("SELECT {COLUMNS} FROM configs WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    &[&seq, &sql_limit(n)],
                )
                .await?;
            rows.iter().map(|r| convert(vault.as_deref(), r)).collect()
        })
    }

    fn config_cursor(&self) -> Result<i64> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let v: Option<i64> = c
                .query_one("SELECT MAX(seq) FROM configs", &[])
                .await?
                .get(0);
            Ok(v.unwrap_or(0))
        })
    }

    fn set_config_state(&self, change: &ConfigTransition) -> Result<bool> {
        let change = *change;
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let (d, v) = (i64::from(change.device_id), i64::from(change.version));
            let changed = tx
                .execute(
                    "UPDATE configs SET state = $3, acked_at = $4
                     WHERE device_id = $1 AND version = $2 AND state <> $3
                       AND ($5::text IS NULL OR state = $5)",
                    &[
                        &d,
                        &v,
                        &change.to.as_str(),
                        &change.at,
                        &change.from.map(|s| s.as_str()),
                    ],
                )
                .await?;
            if changed == 1 {
                let column = change.summary_column();
                tx.execute(
                    &format!(
                        "UPDATE devices SET {column} = GREATEST(COALESCE({column}, 0), $2)
                         WHERE id = $1"
                    ),
                    &[&d, &v],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(changed == 1)
        })
    }

    fn pending_config_count(&self) -> Result<u64> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let n: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM devices WHERE config_desired > config_applied
                     AND (config_rolled_back IS NULL OR config_rolled_back < config_desired)",
                    &[],
                )
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }
}
