//! The audit log in SQLite.

use super::{u32_col, Sqlite};
use crate::storage::audit::{AuditEntry, AuditFilter, AuditStore, NewAuditEntry};
use crate::storage::Result;
use rusqlite::params;
use rusqlite::types::Value;

impl AuditStore for Sqlite {
    fn append_audit(&self, e: &NewAuditEntry, now: i64) -> Result<i64> {
        let conn = self.writer()?;
        conn.execute(
            "INSERT INTO audit_log (at, user_id, actor, action, device_id, site_id, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                now,
                e.user_id,
                e.actor,
                e.action,
                e.device_id,
                e.site_id,
                e.detail
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut sql = String::from(
            "SELECT id, at, user_id, actor, action, device_id, site_id, detail
             FROM audit_log WHERE 1 = 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(sites) = &f.sites {
            // Site ids are integers we bound ourselves; an empty list matches nothing.
            sql.push_str(" AND site_id IN (SELECT value FROM json_each(?))");
            let list: Vec<String> = sites.iter().map(i64::to_string).collect();
            args.push(Value::Text(format!("[{}]", list.join(","))));
        }
        if let Some(d) = f.device_id {
            sql.push_str(" AND device_id = ?");
            args.push(Value::Integer(d.into()));
        }
        if let Some(b) = f.before {
            sql.push_str(" AND id < ?");
            args.push(Value::Integer(b));
        }
        sql.push_str(" ORDER BY id DESC LIMIT CAST(? AS INTEGER)");
        args.push(Value::Integer(i64::try_from(f.limit).unwrap_or(i64::MAX)));
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let device: Option<i64> = r.get(5)?;
            out.push(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                entry: NewAuditEntry {
                    user_id: r.get(2)?,
                    actor: r.get(3)?,
                    action: r.get(4)?,
                    device_id: device.map(|d| u32_col(d, "device id")).transpose()?,
                    site_id: r.get(6)?,
                    detail: r.get(7)?,
                },
            });
        }
        Ok(out)
    }
}

// Tested through `storage::suite` (every backend runs the same checks).
