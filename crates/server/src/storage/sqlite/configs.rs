//! Configuration versions in SQLite. The device row carries the summary (desired, applied,
//! rolled back) so that state queries and the pending gauge are one cheap read.

use super::{u32_col, Sqlite};
use crate::storage::configs::{
    valid_items, ConfigRecord, ConfigState, ConfigStore, ConfigTransition,
};
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};
use tek_proto::message::Config;

const COLUMNS: &str = "seq, device_id, version, items, saved_at, state, acked_at, sealed";

type Raw = (i64, i64, i64, Vec<u8>, i64, String, Option<i64>, bool);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    // rusqlite maps a row to a tuple of its columns, in order.
    r.try_into()
}

fn convert(vault: &crate::vault::Vault, raw: Raw) -> Result<ConfigRecord> {
    let (seq, device_id, version, items, saved_at, state, acked_at, sealed) = raw;
    let (id, v) = (
        u32_col(device_id, "device id")?,
        u32_col(version, "config version")?,
    );
    let items = crate::storage::sealed::open_items(Some(vault), id, v, sealed, items)?;
    Ok(ConfigRecord {
        device_id: id,
        version: v,
        config: Config::parse_items(&items)
            .map_err(|e| Error::Corrupt(format!("config items of device {device_id}: {e}")))?,
        saved_at,
        state: ConfigState::parse(&state)
            .ok_or_else(|| Error::Corrupt(format!("config state {state:?}")))?,
        acked_at,
        seq,
    })
}

impl ConfigStore for Sqlite {
    fn save_config(&self, device_id: u32, config: &Config, now: i64) -> Result<u32> {
        let items = valid_items(config)?;
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let desired: i64 = tx
            .query_row(
                "SELECT config_desired FROM devices WHERE id = ?1",
                params![device_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(Error::NotFound(device_id))?;
        let version = u32_col(desired + 1, "config version")?;
        let items = crate::storage::sealed::seal_items(&self.vault, device_id, version, &items)?;
        tx.execute(
            "INSERT INTO configs (device_id, version, items, saved_at, sealed) \
             VALUES (?1, ?2, ?3, ?4, 1)",
            params![device_id, version, items, now],
        )?;
        tx.execute(
            "UPDATE devices SET config_desired = ?2 WHERE id = ?1",
            params![device_id, version],
        )?;
        tx.commit()?;
        Ok(version)
    }

    fn latest_config(&self, device_id: u32) -> Result<Option<ConfigRecord>> {
        let conn = self.reader()?;
        conn.query_row(
            &format!(
                "SELECT {COLUMNS} FROM configs WHERE device_id = ?1 ORDER BY version DESC LIMIT 1"
            ),
            params![device_id],
            raw,
        )
        .optional()?
        .map(|r| convert(&self.vault, r))
        .transpose()
    }

    fn config_version(&self, device_id: u32, version: u32) -> Result<Option<ConfigRecord>> {
        let conn = self.reader()?;
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM configs WHERE device_id = ?1 AND version = ?2"),
            params![device_id, version],
            raw,
        )
        .optional()?
        .map(|r| convert(&self.vault, r))
        .transpose()
    }

    fn configs_since(&self, seq: i64, limit: usize) -> Result<Vec<ConfigRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM configs WHERE seq > ?1 ORDER BY seq LIMIT CAST(?2 AS INTEGER)"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![seq, limit], raw)?;
        rows.map(|r| convert(&self.vault, r?)).collect()
    }

    fn config_cursor(&self) -> Result<i64> {
        let conn = self.reader()?;
        let v: Option<i64> = conn.query_row("SELECT MAX(seq) FROM configs", [], |r| r.get(0))?;
        Ok(v.unwrap_or(0))
    }

    fn set_config_state(&self, change: &ConfigTransition) -> Result<bool> {
        let (device_id, version) = (change.device_id, change.version);
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE configs SET state = ?3, acked_at = ?4
             WHERE device_id = ?1 AND version = ?2 AND state != ?3 AND (?5 IS NULL OR state = ?5)",
            params![
                device_id,
                version,
                change.to.as_str(),
                change.at,
                change.from.map(|s| s.as_str())
            ],
        )?;
        if changed == 1 {
            let column = change.summary_column();
            tx.execute(
                &format!(
                    "UPDATE devices SET {column} = MAX(COALESCE({column}, 0), ?2) WHERE id = ?1"
                ),
                params![device_id, version],
            )?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    fn pending_config_count(&self) -> Result<u64> {
        let conn = self.reader()?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM devices WHERE config_desired > config_applied
             AND (config_rolled_back IS NULL OR config_rolled_back < config_desired)",
            [],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}
