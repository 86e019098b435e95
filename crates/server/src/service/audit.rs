//! The audit log as each user may read it: the entries of their sites (every entry for an
//! admin), newest first, a page at a time. Read by the audit page and `GET /api/audit`.

use crate::http::error::WebError;
use crate::http::Web;
use crate::storage::{AuditEntry, AuditFilter, UserRecord};
use serde::Deserialize;

/// Query of the audit page and API.
#[derive(Debug, Deserialize, Default)]
pub struct AuditQuery {
    /// Only this device.
    pub device: Option<u32>,
    /// Entries older than this id.
    pub before: Option<i64>,
    /// At most this many (1..=500, default 100).
    pub limit: Option<usize>,
}

impl Web {
    /// The audit entries `user` may read.
    pub async fn audit_for(
        &self,
        user: &UserRecord,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEntry>, WebError> {
        if let Some(d) = q.device {
            self.check_device(user, d).await?;
        }
        let sites = if user.is_admin {
            None
        } else {
            let uid = user.id;
            Some(
                self.db_call(move |db| db.user_sites(uid))
                    .await?
                    .into_iter()
                    .map(|s| s.id)
                    .collect(),
            )
        };
        let filter = AuditFilter {
            sites,
            device_id: q.device,
            before: q.before,
            limit: q.limit.unwrap_or(100).clamp(1, 500),
        };
        self.db_call(move |db| db.audit(&filter)).await
    }
}
