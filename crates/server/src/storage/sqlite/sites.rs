//! Sites, memberships and device assignment in SQLite.

use super::users::unique;
use super::{u32_col, Sqlite};
use crate::storage::sites::{SiteRecord, SiteStore};
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SiteRecord> {
    Ok(SiteRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        time_zone: r.get(3)?,
    })
}

fn ids(stmt: &mut rusqlite::CachedStatement<'_>, arg: i64) -> Result<Vec<u32>> {
    let raw = stmt
        .query_map(params![arg], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_iter().map(|v| u32_col(v, "device id")).collect()
}

/// Maps a foreign-key violation to `Missing(what)`.
pub(super) fn fk(e: rusqlite::Error, what: impl FnOnce() -> String) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            Error::Missing(what())
        }
        e => e.into(),
    }
}

impl SiteStore for Sqlite {
    fn create_site(&self, name: &str, now: i64) -> Result<i64> {
        let conn = self.writer()?;
        conn.execute(
            "INSERT INTO sites (name, created_at) VALUES (?1, ?2)",
            params![name, now],
        )
        .map_err(|e| unique(e, format!("site {name}")))?;
        Ok(conn.last_insert_rowid())
    }

    fn site(&self, id: i64) -> Result<Option<SiteRecord>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                "SELECT id, name, created_at, time_zone FROM sites WHERE id = ?1",
                params![id],
                record,
            )
            .optional()?)
    }

    fn site_by_name(&self, name: &str) -> Result<Option<SiteRecord>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                "SELECT id, name, created_at, time_zone FROM sites WHERE name = ?1",
                params![name],
                record,
            )
            .optional()?)
    }

    fn list_sites(&self) -> Result<Vec<SiteRecord>> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare_cached("SELECT id, name, created_at, time_zone FROM sites ORDER BY id")?;
        let rows = stmt.query_map([], record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_site(&self, id: i64) -> Result<()> {
        let n = self
            .writer()?
            .execute("DELETE FROM sites WHERE id = ?1", params![id])?;
        if n == 0 {
            return Err(Error::Missing(format!("site {id}")));
        }
        Ok(())
    }

    fn set_site_time_zone(&self, id: i64, time_zone: &str) -> Result<()> {
        let n = self.writer()?.execute(
            "UPDATE sites SET time_zone = ?2 WHERE id = ?1",
            params![id, time_zone],
        )?;
        if n == 0 {
            return Err(Error::Missing(format!("site {id}")));
        }
        Ok(())
    }

    fn grant_site(&self, user_id: i64, site_id: i64) -> Result<()> {
        self.writer()?
            .execute(
                "INSERT OR IGNORE INTO site_members (site_id, user_id) VALUES (?1, ?2)",
                params![site_id, user_id],
            )
            .map_err(|e| fk(e, || format!("user {user_id} or site {site_id}")))?;
        Ok(())
    }

    fn revoke_site(&self, user_id: i64, site_id: i64) -> Result<()> {
        self.writer()?.execute(
            "DELETE FROM site_members WHERE site_id = ?1 AND user_id = ?2",
            params![site_id, user_id],
        )?;
        Ok(())
    }

    fn user_sites(&self, user_id: i64) -> Result<Vec<SiteRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT s.id, s.name, s.created_at, s.time_zone FROM sites s
             JOIN site_members m ON m.site_id = s.id WHERE m.user_id = ?1 ORDER BY s.id",
        )?;
        let rows = stmt.query_map(params![user_id], record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn site_members(&self, site_id: i64) -> Result<Vec<i64>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT user_id FROM site_members WHERE site_id = ?1 ORDER BY user_id",
        )?;
        let rows = stmt.query_map(params![site_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn assign_devices(&self, device_ids: &[u32], site_id: Option<i64>) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM device_sites WHERE device_id = ?1")?;
            let mut ins =
                tx.prepare_cached("INSERT INTO device_sites (device_id, site_id) VALUES (?1, ?2)")?;
            for &d in device_ids {
                del.execute(params![d])?;
                if let Some(s) = site_id {
                    ins.execute(params![d, s])
                        .map_err(|e| fk(e, || format!("device {d} or site {s}")))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn device_site(&self, device_id: u32) -> Result<Option<i64>> {
        site_on(&*self.reader()?, device_id)
    }

    fn device_sites_of(&self, device_ids: &[u32]) -> Result<Vec<Option<i64>>> {
        // One connection, one cached statement and one read transaction for the page, as
        // `latest_status_of`.
        let conn = self.reader()?;
        let conn = conn.unchecked_transaction()?;
        device_ids.iter().map(|&d| site_on(&conn, d)).collect()
    }

    fn site_device_ids(&self, site_id: i64) -> Result<Vec<u32>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT device_id FROM device_sites WHERE site_id = ?1 ORDER BY device_id",
        )?;
        ids(&mut stmt, site_id)
    }

    fn user_device_ids(&self, user_id: i64) -> Result<Vec<u32>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT d.device_id FROM device_sites d
             JOIN site_members m ON m.site_id = d.site_id
             WHERE m.user_id = ?1 ORDER BY d.device_id",
        )?;
        ids(&mut stmt, user_id)
    }
}

// Tested through `storage::suite` (every backend runs the same checks).

/// The site of `device_id` on `conn`.
fn site_on(conn: &rusqlite::Connection, device_id: u32) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT site_id FROM device_sites WHERE device_id = ?1")?
        .query_row(params![device_id], |r| r.get(0))
        .optional()?)
}
