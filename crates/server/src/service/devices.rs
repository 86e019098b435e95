//! Devices and their configuration: renaming, and saving an edited configuration as a new
//! version (validated, audited, and not saved when nothing changed). The pages (`web::device`,
//! `web::configure`, `web::schedules`) and the JSON API (`api::devices`, `api::config`,
//! `api::schedules`) call them.

use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use tek_proto::message::Config;

pub use super::states::ConfigStatus;

/// Saves `edit` applied to the device's newest configuration as a new version, with an audit
/// entry; returns the version.
pub async fn save_edited(
    web: &Web,
    p: &Principal,
    id: u32,
    edit: impl FnOnce(&mut Config) -> Result<String, WebError>,
) -> Result<u32, WebError> {
    Ok(save_if_changed(web, p, id, edit).await?.version)
}

/// What [`save_if_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// The new version, or the newest one when nothing changed.
    pub version: u32,
    /// False when the edit left the configuration as it was: no version was made.
    pub changed: bool,
}

/// [`save_edited`], telling whether a version was made. An edit that changes nothing makes no
/// new version and no audit entry (saving an untouched form is not a change) — unless the newest
/// version was rolled back by the controller: saving it again is a deliberate new attempt.
pub async fn save_if_changed(
    web: &Web,
    p: &Principal,
    id: u32,
    edit: impl FnOnce(&mut Config) -> Result<String, WebError>,
) -> Result<Saved, WebError> {
    web.check_device(&p.user, id).await?;
    let latest = web.db_call(move |db| db.latest_config(id)).await?;
    let current = latest
        .as_ref()
        .map_or_else(Config::default, |r| r.config.clone());
    let mut next = current.clone();
    let detail = edit(&mut next)?;
    next.validate()
        .map_err(|e| WebError::Invalid(format!("the configuration is not valid: {e}")))?;
    if let Some(r) = &latest {
        if next == current && r.state != crate::storage::ConfigState::RolledBack {
            return Ok(Saved {
                version: r.version,
                changed: false,
            });
        }
    }
    let version = web.api.save_config(id, next).await?;
    web.audit(
        p,
        "config.save",
        Some(id),
        None,
        format!("v{version}: {detail}"),
    )
    .await?;
    Ok(Saved {
        version,
        changed: true,
    })
}

/// Longest device name, characters.
pub const MAX_NAME: usize = 64;

/// Renames a device `p` may change (as for its configuration), with an audit entry; the page
/// form and the API both call this. Returns the name as stored (trimmed).
pub async fn rename(web: &Web, p: &Principal, id: u32, name: &str) -> Result<String, WebError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(format!(
            "name: 1 to {MAX_NAME} printable characters"
        )));
    }
    let old = web.device_for(&p.user, id).await?.device.name;
    let n = name.clone();
    web.db_call(move |db| db.rename_device(id, &n)).await?;
    // Home Assistant shows the name: its discovery documents go out again.
    web.api
        .mqtt()
        .offer(crate::mqtt::Event::Renamed { device_id: id });
    web.audit(
        p,
        "device.rename",
        Some(id),
        None,
        format!("{old:?} -> {name:?}"),
    )
    .await?;
    Ok(name)
}
