//! Devices and their configuration: renaming, and saving an edited configuration as a new
//! version (validated, audited, and not saved when nothing changed). The pages (`web::device`,
//! `web::configure`, `web::schedules`) and the JSON API (`api::devices`, `api::config`,
//! `api::schedules`) call them.

use crate::web::auth::Principal;
use crate::web::error::WebError;
use crate::web::Web;
use serde::Serialize;
use tek_proto::message::Config;

/// What the UI shows for a device's configuration: the spinner while a change waits for the
/// controller, green once it confirmed, red when it rolled the change back. The names are the
/// JSON API's (`config.state`), the page's `data-state`, and what `static/app.js` compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigStatus {
    /// Never configured: version 0, the factory configuration.
    Factory,
    /// The newest version waits for the controller's confirmation (spinner).
    Pending,
    /// The controller confirmed the newest version (green).
    Synced,
    /// The controller could not reach a server with the newest version and restored the
    /// previous one (red).
    RolledBack,
}

impl ConfigStatus {
    /// Every state, for the tests that hold the browser code to these names.
    pub const ALL: [ConfigStatus; 4] = [
        ConfigStatus::Factory,
        ConfigStatus::Pending,
        ConfigStatus::Synced,
        ConfigStatus::RolledBack,
    ];

    /// The name as JSON, HTML and the script carry it (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigStatus::Factory => "factory",
            ConfigStatus::Pending => "pending",
            ConfigStatus::Synced => "synced",
            ConfigStatus::RolledBack => "rolled_back",
        }
    }
}

impl std::fmt::Display for ConfigStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

#[cfg(test)]
mod tests {
    use super::ConfigStatus;

    #[test]
    fn config_status_names_are_the_serde_names() {
        for s in ConfigStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    /// The script names the configuration states once (`const CONFIG` in `static/app.js`) and
    /// compares with those names only: each must be a [`ConfigStatus`] and each status must be
    /// there, or a renamed state would silently stop the spinner or the red dot.
    #[test]
    fn the_script_names_the_config_states_as_the_server_does() {
        let js = include_str!("../web/static/app.js");
        let line = js
            .lines()
            .find(|l| l.trim_start().starts_with("const CONFIG = {"))
            .expect("app.js names the configuration states in `const CONFIG = {...}`");
        let mut named: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        named.sort_unstable();
        let mut ours: Vec<&str> = ConfigStatus::ALL.iter().map(|s| s.as_str()).collect();
        ours.sort_unstable();
        assert_eq!(named, ours);
        for quoted in ["factory", "pending", "synced", "rolled_back"] {
            let literal = format!("state === \"{quoted}\"");
            assert!(
                !js.contains(&literal),
                "app.js compares {literal} instead of CONFIG"
            );
        }
    }
}
