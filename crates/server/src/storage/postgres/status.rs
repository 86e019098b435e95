//! Device status and monthly traffic in PostgreSQL, kept in the status' 55-byte wire form as in
//! the SQLite backend. The device row's lock (taken by the `last_seen` update) serialises two
//! servers storing statuses of the same device, so no traffic delta is counted twice.

use super::Postgres;
use crate::storage::status::{
    decode, encode, month_of, traffic_since, StatusRecord, StatusStore, TrafficMonth,
};
use crate::storage::{Error, Result};
use tek_proto::message::Status;

impl StatusStore for Postgres {
    fn store_status(&self, device_id: u32, status: &Status, now: i64) -> Result<()> {
        let body = encode(status)?;
        let status = *status;
        self.run(move |s| async move {
            let d = i64::from(device_id);
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let touched = tx
                .execute(
                    "UPDATE devices SET last_seen = GREATEST(COALESCE(last_seen, 0), $2)
                     WHERE id = $1",
                    &[&d, &now],
                )
                .await?;
            if touched == 0 {
                return Err(Error::NotFound(device_id));
            }
            let prev = tx
                .query_opt("SELECT body FROM device_status WHERE device_id = $1", &[&d])
                .await?;
            let delta = traffic_since(prev.as_ref().map(|r| r.get::<_, &[u8]>(0)), &status);
            tx.execute(
                "INSERT INTO traffic (device_id, month, eth_tx, eth_rx, gsm_tx, gsm_rx)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (device_id, month) DO UPDATE SET
                   eth_tx = traffic.eth_tx + excluded.eth_tx,
                   eth_rx = traffic.eth_rx + excluded.eth_rx,
                   gsm_tx = traffic.gsm_tx + excluded.gsm_tx,
                   gsm_rx = traffic.gsm_rx + excluded.gsm_rx",
                &[
                    &d,
                    &month_of(now),
                    &delta[0],
                    &delta[1],
                    &delta[2],
                    &delta[3],
                ],
            )
            .await?;
            tx.execute(
                "INSERT INTO device_status (device_id, received_at, body) VALUES ($1, $2, $3)
                 ON CONFLICT (device_id) DO UPDATE SET
                   received_at = excluded.received_at, body = excluded.body",
                &[&d, &now, &&body[..]],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn latest_status(&self, device_id: u32) -> Result<Option<StatusRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let Some(row) = c
                .query_opt(
                    "SELECT received_at, body FROM device_status WHERE device_id = $1",
                    &[&i64::from(device_id)],
                )
                .await?
            else {
                return Ok(None);
            };
            let status = decode(device_id, row.get::<_, &[u8]>(1))?;
            Ok(Some(StatusRecord {
                device_id,
                received_at: row.get(0),
                status,
            }))
        })
    }

    fn latest_status_of(&self, device_ids: &[u32]) -> Result<Vec<Option<StatusRecord>>> {
        let device_ids = device_ids.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            super::of_devices(
                &c,
                "SELECT device_id, received_at, body FROM device_status
                 WHERE device_id = ANY($1)",
                &device_ids,
                |device_id, row| {
                    Ok(StatusRecord {
                        device_id,
                        received_at: row.get(1),
                        status: decode(device_id, row.get::<_, &[u8]>(2))?,
                    })
                },
            )
            .await
        })
    }

    fn traffic(&self, device_id: u32) -> Result<Vec<TrafficMonth>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT month, eth_tx, eth_rx, gsm_tx, gsm_rx FROM traffic
                     WHERE device_id = $1 ORDER BY month DESC",
                    &[&i64::from(device_id)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| TrafficMonth {
                    month: r.get(0),
                    eth_tx: r.get::<_, i64>(1).max(0) as u64,
                    eth_rx: r.get::<_, i64>(2).max(0) as u64,
                    gsm_tx: r.get::<_, i64>(3).max(0) as u64,
                    gsm_rx: r.get::<_, i64>(4).max(0) as u64,
                })
                .collect())
        })
    }
}
