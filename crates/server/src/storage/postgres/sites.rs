//! Sites, memberships and device assignment in PostgreSQL.

use super::{fk, u32_col, unique, Postgres};
use crate::storage::sites::{SiteRecord, SiteStore};
use crate::storage::{Error, Result};
use tokio_postgres::Row;

fn record(r: &Row) -> SiteRecord {
    SiteRecord {
        id: r.get(0),
        name: r.get(1),
        created_at: r.get(2),
        time_zone: r.get(3),
    }
}

fn ids(rows: &[Row]) -> Result<Vec<u32>> {
    rows.iter()
        .map(|r| u32_col(r.get(0), "device id"))
        .collect()
}

impl SiteStore for Postgres {
    fn create_site(&self, name: &str, now: i64) -> Result<i64> {
        let name = name.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_one(
                    "INSERT INTO sites (name, created_at) VALUES ($1, $2) RETURNING id",
                    &[&name, &now],
                )
                .await
                .map_err(|e| unique(e, || format!("site {name}")))?;
            Ok(row.get(0))
        })
    }

    fn site(&self, id: i64) -> Result<Option<SiteRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    "SELECT id, name, created_at, time_zone FROM sites WHERE id = $1",
                    &[&id],
                )
                .await?;
            Ok(row.as_ref().map(record))
        })
    }

    fn site_by_name(&self, name: &str) -> Result<Option<SiteRecord>> {
        let name = name.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    "SELECT id, name, created_at, time_zone FROM sites WHERE name = $1",
                    &[&name],
                )
                .await?;
            Ok(row.as_ref().map(record))
        })
    }

    fn list_sites(&self) -> Result<Vec<SiteRecord>> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT id, name, created_at, time_zone FROM sites ORDER BY id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(record).collect())
        })
    }

    fn delete_site(&self, id: i64) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c.execute("DELETE FROM sites WHERE id = $1", &[&id]).await?;
            if n == 0 {
                return Err(Error::Missing(format!("site {id}")));
            }
            Ok(())
        })
    }

    fn set_site_time_zone(&self, id: i64, time_zone: &str) -> Result<()> {
        let tz = time_zone.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute("UPDATE sites SET time_zone = $2 WHERE id = $1", &[&id, &tz])
                .await?;
            if n == 0 {
                return Err(Error::Missing(format!("site {id}")));
            }
            Ok(())
        })
    }

    fn grant_site(&self, user_id: i64, site_id: i64) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.execute(
                "INSERT INTO site_members (site_id, user_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&site_id, &user_id],
            )
            .await
            .map_err(|e| fk(e, || format!("user {user_id} or site {site_id}")))?;
            Ok(())
        })
    }

    fn revoke_site(&self, user_id: i64, site_id: i64) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.execute(
                "DELETE FROM site_members WHERE site_id = $1 AND user_id = $2",
                &[&site_id, &user_id],
            )
            .await?;
            Ok(())
        })
    }

    fn user_sites(&self, user_id: i64) -> Result<Vec<SiteRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT s.id, s.name, s.created_at, s.time_zone FROM sites s
                     JOIN site_members m ON m.site_id = s.id WHERE m.user_id = $1 ORDER BY s.id",
                    &[&user_id],
                )
                .await?;
            Ok(rows.iter().map(record).collect())
        })
    }

    fn site_members(&self, site_id: i64) -> Result<Vec<i64>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT user_id FROM site_members WHERE site_id = $1 ORDER BY user_id",
                    &[&site_id],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn assign_devices(&self, device_ids: &[u32], site_id: Option<i64>) -> Result<()> {
        let device_ids = device_ids.to_vec();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            for d in device_ids {
                let id = i64::from(d);
                tx.execute("DELETE FROM device_sites WHERE device_id = $1", &[&id])
                    .await?;
                if let Some(site) = site_id {
                    // An error aborts the transaction; dropping it rolls everything back.
                    tx.execute(
                        "INSERT INTO device_sites (device_id, site_id) VALUES ($1, $2)",
                        &[&id, &site],
                    )
                    .await
                    .map_err(|e| fk(e, || format!("device {d} or site {site}")))?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn device_site(&self, device_id: u32) -> Result<Option<i64>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    "SELECT site_id FROM device_sites WHERE device_id = $1",
                    &[&i64::from(device_id)],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn device_sites_of(&self, device_ids: &[u32]) -> Result<Vec<Option<i64>>> {
        let device_ids = device_ids.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            super::of_devices(
                &c,
                "SELECT device_id, site_id FROM device_sites WHERE device_id = ANY($1)",
                &device_ids,
                |_, row| Ok(row.get::<_, i64>(1)),
            )
            .await
        })
    }

    fn site_device_ids(&self, site_id: i64) -> Result<Vec<u32>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT device_id FROM device_sites WHERE site_id = $1 ORDER BY device_id",
                    &[&site_id],
                )
                .await?;
            ids(&rows)
        })
    }

    fn user_device_ids(&self, user_id: i64) -> Result<Vec<u32>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT d.device_id FROM device_sites d
                     JOIN site_members m ON m.site_id = d.site_id
                     WHERE m.user_id = $1 ORDER BY d.device_id",
                    &[&user_id],
                )
                .await?;
            ids(&rows)
        })
    }
}
