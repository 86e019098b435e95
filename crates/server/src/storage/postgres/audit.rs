//! The audit log in PostgreSQL.

use super::{u32_col, Postgres};
use crate::storage::audit::{AuditEntry, AuditFilter, AuditStore, NewAuditEntry};
use crate::storage::{sql_limit, Result};
use tokio_postgres::types::ToSql;

impl AuditStore for Postgres {
    fn append_audit(&self, e: &NewAuditEntry, now: i64) -> Result<i64> {
        let e = e.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_one(
                    "INSERT INTO audit_log (at, user_id, actor, action, device_id, site_id, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[
                        &now,
                        &e.user_id,
                        &e.actor,
                        &e.action,
                        &e.device_id.map(i64::from),
                        &e.site_id,
                        &e.detail,
                    ],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let f = f.clone();
        self.run(move |s| async move {
            // Only the conditions asked for, so each query can use its index.
            let mut sql = String::from(
                "SELECT id, at, user_id, actor, action, device_id, site_id, detail
                 FROM audit_log WHERE TRUE",
            );
            let device = f.device_id.map(i64::from);
            let n = sql_limit(f.limit);
            let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(sites) = &f.sites {
                args.push(sites);
                sql.push_str(&format!(" AND site_id = ANY(${})", args.len()));
            }
            if let Some(d) = &device {
                args.push(d);
                sql.push_str(&format!(" AND device_id = ${}", args.len()));
            }
            if let Some(b) = &f.before {
                args.push(b);
                sql.push_str(&format!(" AND id < ${}", args.len()));
            }
            args.push(&n);
            sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
            let c = s.conn().await?;
            let rows = c.query(&sql, &args).await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: r.get(0),
                        at: r.get(1),
                        entry: NewAuditEntry {
                            user_id: r.get(2),
                            actor: r.get(3),
                            action: r.get(4),
                            device_id: r
                                .get::<_, Option<i64>>(5)
                                .map(|d| u32_col(d, "device id"))
                                .transpose()?,
                            site_id: r.get(6),
                            detail: r.get(7),
                        },
                    })
                })
                .collect()
        })
    }
}
