//! Authorization: which devices a user may see and change, checked before any device data is
//! read, and the audit entry that goes with every change.
//!
//! Rules: an admin sees every device and manages users, sites and assignment; any other user
//! sees exactly the devices assigned to sites they are a member of. A device outside that set is
//! answered as "not found", the same as a device that does not exist, so ids cannot be probed.

use super::Web;
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::inproc::DeviceState;
use crate::storage::NewAuditEntry;
use crate::storage::UserRecord;
use std::collections::BTreeSet;

/// The devices a user may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// Every device (admin).
    All,
    /// These.
    Some(BTreeSet<u32>),
}

impl Visible {
    /// Whether `id` is visible.
    pub fn contains(&self, id: u32) -> bool {
        match self {
            Visible::All => true,
            Visible::Some(s) => s.contains(&id),
        }
    }
}

impl Web {
    /// The devices `user` may see.
    pub async fn visible(&self, user: &UserRecord) -> Result<Visible, WebError> {
        if user.is_admin {
            return Ok(Visible::All);
        }
        let uid = user.id;
        let ids = self.db_call(move |db| db.user_device_ids(uid)).await?;
        Ok(Visible::Some(ids.into_iter().collect()))
    }

    /// Refuses with 404 unless `user` may see device `id`.
    pub async fn check_device(&self, user: &UserRecord, id: u32) -> Result<(), WebError> {
        if user.is_admin {
            return Ok(());
        }
        let uid = user.id;
        let ids = self.db_call(move |db| db.user_device_ids(uid)).await?;
        if ids.binary_search(&id).is_ok() {
            Ok(())
        } else {
            Err(WebError::NotFound)
        }
    }

    /// The state of a device `user` may see (404 otherwise).
    pub async fn device_for(&self, user: &UserRecord, id: u32) -> Result<DeviceState, WebError> {
        self.check_device(user, id).await?;
        Ok(self.api.device_state(id).await?)
    }

    /// The states of every device `user` may see, by id.
    pub async fn devices_for(&self, user: &UserRecord) -> Result<Vec<DeviceState>, WebError> {
        match self.visible(user).await? {
            Visible::All => Ok(self.api.devices().await?),
            Visible::Some(ids) => {
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    match self.api.device_state(id).await {
                        Ok(s) => out.push(s),
                        // Deleted between the two reads: not visible any more.
                        Err(crate::inproc::ApiError::Storage(crate::storage::Error::NotFound(
                            _,
                        ))) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(out)
            }
        }
    }

    /// Refuses with 403 unless `user` is an admin.
    pub fn require_admin(user: &UserRecord) -> Result<(), WebError> {
        if user.is_admin {
            Ok(())
        } else {
            Err(WebError::Forbidden("administrators only"))
        }
    }

    /// Appends an audit entry for a change `who` made (about `device`, which also files it under
    /// the device's site, or about `site`).
    pub async fn audit(
        &self,
        who: &Principal,
        action: &str,
        device: Option<u32>,
        site: Option<i64>,
        detail: String,
    ) -> Result<(), WebError> {
        let via = match who.via {
            super::auth::Via::Cookie { .. } => "web",
            super::auth::Via::Token => "api",
            super::auth::Via::Mqtt => "mqtt",
        };
        let mut entry = NewAuditEntry {
            user_id: Some(who.user.id),
            actor: format!("{} ({via})", who.user.email),
            action: action.to_owned(),
            device_id: device,
            site_id: site,
            detail,
        };
        let now = crate::clock::unix_now();
        self.db_call(move |db| {
            if entry.site_id.is_none() {
                if let Some(d) = entry.device_id {
                    entry.site_id = db.device_site(d)?;
                }
            }
            db.append_audit(&entry, now)
        })
        .await?;
        Ok(())
    }
}
