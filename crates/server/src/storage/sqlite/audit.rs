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
        sql.push_str(" ORDER BY id DESC LIMIT ?");
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

#[cfg(test)]
mod tests {
    use crate::storage::sqlite::tests::prepare;
    use crate::storage::*;

    fn entry(site: Option<i64>, device: Option<u32>, action: &str) -> NewAuditEntry {
        NewAuditEntry {
            user_id: Some(1),
            actor: "a@x".into(),
            action: action.into(),
            device_id: device,
            site_id: site,
            detail: "d".into(),
        }
    }

    #[test]
    fn filters_by_site_device_and_pages() {
        let (_d, db) = prepare();
        let a = db
            .append_audit(&entry(Some(1), Some(5), "config.save"), 10)
            .unwrap();
        let b = db
            .append_audit(&entry(Some(2), Some(6), "command.queue"), 11)
            .unwrap();
        let c = db
            .append_audit(&entry(None, None, "user.create"), 12)
            .unwrap();
        let all = db
            .audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![c, b, a]);
        assert_eq!(all[2].at, 10);
        assert_eq!(all[2].entry, entry(Some(1), Some(5), "config.save"));
        let site1 = db
            .audit(&AuditFilter {
                sites: Some(vec![1]),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(site1.len(), 1);
        let none = db
            .audit(&AuditFilter {
                sites: Some(vec![]),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert!(none.is_empty());
        let dev = db
            .audit(&AuditFilter {
                device_id: Some(6),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(dev[0].id, b);
        let page = db
            .audit(&AuditFilter {
                before: Some(c),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page[0].id, b);
    }
}
