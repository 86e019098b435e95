//! Telemetry in SQLite: `INSERT OR IGNORE` on the (device, boot, seq) primary key makes a
//! retransmitted record a no-op; the records it stored are rolled up
//! ([`crate::storage::rollup`], 15 minutes and days) in the same transaction.

use super::{u32_col, Sqlite};
use crate::storage::rollup::{rollups_of, upsert_sql, Resolution};
use crate::storage::schema::Dialect;
use crate::storage::telemetry::{
    page_sql, page_start, TelemetryKey, TelemetryQuery, TelemetryRow, TelemetryStore,
};
use crate::storage::{Error, Result};
use rusqlite::params;
use rusqlite::types::Value;

impl TelemetryStore for Sqlite {
    fn insert_telemetry_new(&self, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let mut new = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO telemetry
                 (device_id, boot, seq, time, channels,
                  power_w, energy_wh, water_cc, air_cc, relays, ch5, ch6, ch7)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for r in rows {
                let v = |ch: u8| r.get(ch).map_or(Value::Null, |x| Value::Integer(x.into()));
                let stored = stmt.execute(params![
                    r.device_id,
                    r.boot,
                    r.seq,
                    r.time,
                    r.channels,
                    v(0),
                    v(1),
                    v(2),
                    v(3),
                    v(4),
                    v(5),
                    v(6),
                    v(7)
                ])?;
                if stored > 0 {
                    new.push(*r);
                }
            }
            for resolution in Resolution::ALL {
                let mut merge = tx.prepare_cached(&upsert_sql(
                    Dialect::Sqlite,
                    resolution,
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                             $16, $17, $18, $19, $20, $21, $22, $23)",
                ))?;
                for u in rollups_of(&new, resolution) {
                    merge.execute(rusqlite::params_from_iter(u.values()))?;
                }
            }
        }
        tx.commit()?;
        Ok(new)
    }

    fn telemetry_page(
        &self,
        q: &TelemetryQuery,
        after: Option<TelemetryKey>,
    ) -> Result<Vec<TelemetryRow>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&page_sql("?"))?;
        let (time, boot, seq) = page_start(q, after);
        let limit = crate::storage::sql_limit(q.limit);
        let mut rows = stmt.query(params![q.device_id, time, boot, seq, q.to, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let channels: i64 = r.get(4)?;
            let channels = u8::try_from(channels)
                .map_err(|_| Error::Corrupt(format!("channel mask {channels}")))?;
            let mut values = [0i32; 8];
            for (i, v) in values.iter_mut().enumerate() {
                let x: Option<i64> = r.get(5 + i)?;
                *v = x.map_or(Ok(0), |x| {
                    i32::try_from(x).map_err(|_| Error::Corrupt(format!("value {x}")))
                })?;
            }
            out.push(TelemetryRow {
                device_id: u32_col(r.get(0)?, "device id")?,
                boot: u32_col(r.get(1)?, "boot")?,
                seq: u32_col(r.get(2)?, "seq")?,
                time: r.get(3)?,
                channels,
                values,
            });
        }
        Ok(out)
    }

    fn telemetry_count(&self, device_id: u32) -> Result<u64> {
        self.rows_of_device("telemetry", device_id)
    }
}

impl Sqlite {
    /// How many rows of `table` (a table of records keyed by `device_id`) a device has.
    pub(super) fn rows_of_device(&self, table: &'static str, device_id: u32) -> Result<u64> {
        let conn = self.reader()?;
        let n: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE device_id = ?1"),
            params![device_id],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}
