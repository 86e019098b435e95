//! Sealed 15-minute rollups in PostgreSQL ([`crate::storage::quarter`]): the reads that merge
//! rows and blobs in one snapshot (a repeatable-read transaction), the sealing pass and the
//! retention.

use super::Postgres;
use crate::storage::energy::MeterData;
use crate::storage::quarter::{self, Part, QuarterStore};
use crate::storage::rollup::{Interval, COLUMN_COUNT};
use crate::storage::Result;
use deadpool_postgres::Transaction;
use tokio_postgres::{IsolationLevel, Row};

/// Serializes sealing passes of several servers on one database (the blob of a day is read,
/// merged and written back); the number is arbitrary but fixed.
const SEAL_LOCK: i64 = 0x7465_6b5f_7175_6172; // "tek_quar"

fn values(r: &Row) -> [Option<i64>; COLUMN_COUNT] {
    let mut v = [None; COLUMN_COUNT];
    for (i, x) in v.iter_mut().enumerate() {
        *x = r.get(i);
    }
    v
}

/// Device `device`'s 15-minute rows with `a <= start < b` and its sealed days over them: what
/// both readers below start from. `tx` is a repeatable-read transaction, so both reads see one
/// snapshot.
async fn rows_and_days(
    tx: &Transaction<'_>,
    device: u32,
    a: i64,
    b: i64,
) -> Result<(Vec<Interval>, quarter::DayBlobs)> {
    let dev = i64::from(device);
    let rows = tx
        .query(&quarter::rows_sql(), &[&dev, &a, &b])
        .await?
        .iter()
        .map(|r| quarter::interval_from_values(&values(r)))
        .collect::<Result<Vec<_>>>()?;
    let (d0, d1) = quarter::days_of(a, b);
    let blobs: quarter::DayBlobs = tx
        .query(quarter::BLOBS, &[&dev, &d0, &d1])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok((rows, blobs))
}

/// Device `device`'s intervals with `a <= start < b`, rows and sealed days merged, ordered by
/// start; `tx` is a repeatable-read transaction, so both reads see one snapshot.
pub(super) async fn intervals(
    tx: &Transaction<'_>,
    device: u32,
    a: i64,
    b: i64,
    part: Part,
) -> Result<Vec<Interval>> {
    let (rows, blobs) = rows_and_days(tx, device, a, b).await?;
    let mut all = quarter::merged(device, &blobs, rows, part)?;
    all.retain(|i| i.rollup.start >= a && i.rollup.start < b);
    Ok(all)
}

/// Device `device`'s meter data of `[from, to)` from its rows and sealed days over
/// [`quarter::energy_window`], decoded day by day ([`quarter::meter_data_sealed`]); `tx` is a
/// repeatable-read transaction, so both reads see one snapshot.
pub(super) async fn meter_data(
    tx: &Transaction<'_>,
    device: u32,
    from: i64,
    to: i64,
) -> Result<MeterData> {
    let (a, b) = quarter::energy_window(from, to);
    let (rows, blobs) = rows_and_days(tx, device, a, b).await?;
    let rows: Vec<_> = rows.into_iter().map(|i| i.rollup).collect();
    quarter::meter_data_sealed(device, &blobs, &rows, from, to)
}

/// A read-only repeatable-read transaction on `c`.
pub(super) async fn snapshot(c: &mut deadpool_postgres::Object) -> Result<Transaction<'_>> {
    Ok(c.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

impl QuarterStore for Postgres {
    fn seal_quarter_rollups(&self, now: i64) -> Result<u64> {
        let before = quarter::seal_before(now);
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let take = quarter::take_sql();
            let mut sealed = 0u64;
            loop {
                // One transaction per batch, so ingest's upserts wait for one batch at most.
                let tx = c.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEAL_LOCK])
                    .await?;
                let rows = tx
                    .query(&take, &[&before, &quarter::SEAL_BATCH_ROWS])
                    .await?
                    .iter()
                    .map(|r| quarter::interval_from_values(&values(r)))
                    .collect::<Result<Vec<_>>>()?;
                if rows.is_empty() {
                    return Ok(sealed);
                }
                sealed += rows.len() as u64;
                for ((device, day), group) in quarter::by_day(rows) {
                    let dev = i64::from(device);
                    let old: Option<Vec<u8>> = tx
                        .query_opt(quarter::BLOB, &[&dev, &day])
                        .await?
                        .map(|r| r.get(0));
                    let blob = quarter::reseal(device, day, old.as_deref(), &group)?;
                    tx.execute(quarter::PUT_BLOB, &[&dev, &day, &blob]).await?;
                }
                tx.commit().await?;
            }
        })
    }

    fn expire_quarter_rollups(&self, now: i64, days: u32) -> Result<()> {
        let Some(horizon) = quarter::retention_horizon(now, days) else {
            return Ok(());
        };
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            for sql in quarter::EXPIRE {
                tx.execute(sql, &[&horizon]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

// Tested through `storage::suite` (every backend runs the same checks).
