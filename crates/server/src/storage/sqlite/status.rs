//! Device status and monthly traffic in SQLite. The status is kept in its 55-byte wire form, so
//! a new field never needs a migration here.

use super::Sqlite;
use crate::storage::status::{
    decode, encode, month_of, traffic_since, StatusRecord, StatusStore, TrafficMonth,
};
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};
use tek_proto::message::Status;

impl StatusStore for Sqlite {
    fn store_status(&self, device_id: u32, status: &Status, now: i64) -> Result<()> {
        let body = encode(status)?;
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let touched = tx.execute(
            "UPDATE devices SET last_seen = MAX(COALESCE(last_seen, 0), ?2) WHERE id = ?1",
            params![device_id, now],
        )?;
        if touched == 0 {
            return Err(Error::NotFound(device_id));
        }
        let prev: Option<Vec<u8>> = tx
            .query_row(
                "SELECT body FROM device_status WHERE device_id = ?1",
                params![device_id],
                |r| r.get(0),
            )
            .optional()?;
        let d = traffic_since(prev.as_deref(), status);
        tx.execute(
            "INSERT INTO traffic (device_id, month, eth_tx, eth_rx, gsm_tx, gsm_rx)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (device_id, month) DO UPDATE SET
               eth_tx = eth_tx + excluded.eth_tx, eth_rx = eth_rx + excluded.eth_rx,
               gsm_tx = gsm_tx + excluded.gsm_tx, gsm_rx = gsm_rx + excluded.gsm_rx",
            params![device_id, month_of(now), d[0], d[1], d[2], d[3]],
        )?;
        tx.execute(
            "INSERT INTO device_status (device_id, received_at, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET
               received_at = excluded.received_at, body = excluded.body",
            params![device_id, now, &body[..]],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn latest_status(&self, device_id: u32) -> Result<Option<StatusRecord>> {
        latest_on(&*self.reader()?, device_id)
    }

    fn latest_status_of(&self, device_ids: &[u32]) -> Result<Vec<Option<StatusRecord>>> {
        // One connection and one cached statement for the page: a connection from the pool and a
        // statement parsed again per device cost more than the read itself (issue 21).
        // One read transaction too: a statement outside one takes and drops the file's locks.
        let conn = self.reader()?;
        let conn = conn.unchecked_transaction()?;
        device_ids.iter().map(|&d| latest_on(&conn, d)).collect()
    }

    fn traffic(&self, device_id: u32) -> Result<Vec<TrafficMonth>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT month, eth_tx, eth_rx, gsm_tx, gsm_rx FROM traffic
             WHERE device_id = ?1 ORDER BY month DESC",
        )?;
        let rows = stmt.query_map(params![device_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        rows.map(|r| {
            let (month, a, b, c, d) = r?;
            Ok(TrafficMonth {
                month,
                eth_tx: a.max(0) as u64,
                eth_rx: b.max(0) as u64,
                gsm_tx: c.max(0) as u64,
                gsm_rx: d.max(0) as u64,
            })
        })
        .collect()
    }
}

/// The latest status of `device_id` on `conn`.
fn latest_on(conn: &rusqlite::Connection, device_id: u32) -> Result<Option<StatusRecord>> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT received_at, body FROM device_status WHERE device_id = ?1")?
        .query_row(params![device_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(received_at, body)| {
        Ok(StatusRecord {
            device_id,
            received_at,
            status: decode(device_id, &body)?,
        })
    })
    .transpose()
}
