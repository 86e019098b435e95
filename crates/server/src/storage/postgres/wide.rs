//! Wide telemetry records in PostgreSQL ([`crate::storage::wide`]). The table is not
//! partitioned, so its primary key is (device, boot, seq) and a plain `ON CONFLICT DO NOTHING`
//! makes a retransmission a no-op, whichever server of the fleet stores it (the unique index
//! serialises concurrent inserts of the same key). One statement per writer batch over column
//! arrays, returning the keys it stored, whose rollups ([`crate::storage::wide_rollup`]) are
//! merged by one more statement in the same transaction. Retention ([`expire`], from
//! `maintain`) deletes the records older than the horizon the telemetry partitions are dropped
//! at (their rollups stay, as the pool's do), and records already older are not stored (they
//! still count as accepted, as for telemetry).

use super::{u32_col, Postgres, Shared};
use crate::storage::schema::Dialect;
use crate::storage::telemetry::{TelemetryKey, TelemetryQuery};
use crate::storage::wide::{latest_sql, page_sql, WideRow, WideStore, WideValues};
use crate::storage::wide_rollup::{
    rollups_of, upsert_sql, ChannelAgg, RollupQuery, BACKFILL_PAGE, BACKFILL_ROWS, BUCKETS,
    COLUMN_COUNT,
};
use crate::storage::Result;
use std::collections::HashSet;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

const INSERT: &str = "
INSERT INTO telemetry_wide (device_id, boot, seq, time, config_version, mask, vals)
SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
                     $6::bytea[], $7::bytea[])
ON CONFLICT (device_id, boot, seq) DO NOTHING
RETURNING device_id, boot, seq";

fn convert(r: &Row) -> Result<WideRow> {
    let version: Option<i64> = r.get(4);
    Ok(WideRow {
        device_id: u32_col(r.get(0), "device id")?,
        boot: u32_col(r.get(1), "boot")?,
        seq: u32_col(r.get(2), "seq")?,
        time: r.get(3),
        config_version: version
            .map(|v| u32_col(v, "configuration version"))
            .transpose()?,
        values: WideValues::decode(r.get(5), r.get(6))?,
    })
}

/// The batch as column arrays, without rows repeated inside it and without rows older than the
/// retention horizon `keep_from`.
#[derive(Default)]
struct Columns {
    device_id: Vec<i64>,
    boot: Vec<i64>,
    seq: Vec<i64>,
    time: Vec<i64>,
    version: Vec<Option<i64>>,
    mask: Vec<Vec<u8>>,
    vals: Vec<Vec<u8>>,
}

fn columns(rows: &[WideRow], keep_from: Option<i64>) -> Columns {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut c = Columns::default();
    for r in rows {
        if keep_from.is_some_and(|k| r.time < k) || !seen.insert((r.device_id, r.boot, r.seq)) {
            continue;
        }
        let (mask, vals) = r.values.encode();
        c.device_id.push(i64::from(r.device_id));
        c.boot.push(i64::from(r.boot));
        c.seq.push(i64::from(r.seq));
        c.time.push(r.time);
        c.version.push(r.config_version.map(i64::from));
        c.mask.push(mask);
        c.vals.push(vals);
    }
    c
}

/// Deletes the wide records older than the retention horizon, if there is one.
pub(super) async fn expire(s: &Shared) -> Result<u64> {
    let Some(keep_from) = s.partitions.keep_from() else {
        return Ok(0);
    };
    let c = s.conn().await?;
    Ok(
        c.execute("DELETE FROM telemetry_wide WHERE time < $1", &[&keep_from])
            .await?,
    )
}

/// Merges the rollups of `new` (rows just stored) in the transaction `tx` that stored them:
/// one statement over column arrays.
async fn merge_rollups(tx: &impl GenericClient, new: &[WideRow]) -> Result<()> {
    let rollups = rollups_of(new);
    if rollups.is_empty() {
        return Ok(());
    }
    let mut columns: Vec<Vec<i64>> = (0..COLUMN_COUNT)
        .map(|_| Vec::with_capacity(rollups.len()))
        .collect();
    for u in &rollups {
        for (col, v) in columns.iter_mut().zip(u.values()) {
            col.push(v);
        }
    }
    let arrays: Vec<String> = (1..=COLUMN_COUNT)
        .map(|i| format!("${i}::int8[]"))
        .collect();
    let select = format!("SELECT * FROM unnest({})", arrays.join(", "));
    let params: Vec<&(dyn ToSql + Sync)> =
        columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    tx.execute(&upsert_sql(Dialect::Postgres, &select), &params)
        .await?;
    Ok(())
}

/// Migration 14's Rust step ([`crate::storage::schema::RustStep::WideRollups`]): rolls up the
/// wide records already stored, page by page in key order, in the migration's transaction.
pub(super) async fn backfill_rollups(tx: &impl GenericClient) -> Result<()> {
    let mut after = (-1i64, -1i64, -1i64);
    loop {
        let rows: Vec<WideRow> = tx
            .query(
                BACKFILL_PAGE,
                &[&after.0, &after.1, &after.2, &BACKFILL_ROWS],
            )
            .await?
            .iter()
            .map(convert)
            .collect::<Result<_>>()?;
        merge_rollups(tx, &rows).await?;
        match rows.last() {
            Some(r) if rows.len() as i64 == BACKFILL_ROWS => {
                after = (r.device_id.into(), r.boot.into(), r.seq.into());
            }
            _ => return Ok(()),
        }
    }
}

impl WideStore for Postgres {
    fn insert_wide_new(&self, rows: &[WideRow]) -> Result<Vec<WideRow>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let c = columns(rows, self.shared.partitions.keep_from());
        if c.device_id.is_empty() {
            return Ok(Vec::new());
        }
        let input = rows.to_vec();
        self.run(move |s| async move {
            let mut conn = s.conn().await?;
            let tx = conn.transaction().await?;
            let stored = tx
                .query(
                    INSERT,
                    &[
                        &c.device_id,
                        &c.boot,
                        &c.seq,
                        &c.time,
                        &c.version,
                        &c.mask,
                        &c.vals,
                    ],
                )
                .await?;
            let mut keys: HashSet<(i64, i64, i64)> = stored
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            // In input order; a row repeated in the batch counts once.
            let new: Vec<WideRow> = input
                .into_iter()
                .filter(|r| {
                    keys.remove(&(i64::from(r.device_id), i64::from(r.boot), i64::from(r.seq)))
                })
                .collect();
            merge_rollups(&*tx, &new).await?;
            tx.commit().await?;
            Ok(new)
        })
    }

    fn wide_channel_rollups(&self, q: &RollupQuery) -> Result<Vec<ChannelAgg>> {
        let p = q.params();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let params: Vec<&(dyn ToSql + Sync)> =
                p.iter().map(|x| x as &(dyn ToSql + Sync)).collect();
            Ok(c.query(BUCKETS, &params)
                .await?
                .iter()
                .map(|r| ChannelAgg::from_row(std::array::from_fn(|i| r.get(i))))
                .collect())
        })
    }

    fn wide_page(&self, q: &TelemetryQuery, after: Option<TelemetryKey>) -> Result<Vec<WideRow>> {
        self.keyset_page(page_sql("$"), q, after, convert)
    }

    fn latest_wide(&self, device_id: u32) -> Result<Option<WideRow>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(&latest_sql("$"), &[&i64::from(device_id)])
                .await?;
            row.as_ref().map(convert).transpose()
        })
    }

    fn wide_count(&self, device_id: u32) -> Result<u64> {
        self.rows_of_device("telemetry_wide", device_id)
    }
}
