//! The states the faces show, named once: the JSON API, the pages and `static/app.js` carry
//! these names. A leaf: it imports nothing of the server, so the page layout and every face
//! may use it.

use serde::Serialize;

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

/// Where an alarm stands, as the alarms page (`st-…` classes, the state column), the JSON API
/// (`state`) and MQTT carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmStatus {
    /// Raised, nobody acknowledged it yet.
    Active,
    /// Someone acknowledged it; the condition still holds.
    Acknowledged,
    /// The condition went away.
    Cleared,
}

impl AlarmStatus {
    /// Every state.
    pub const ALL: [AlarmStatus; 3] = [
        AlarmStatus::Active,
        AlarmStatus::Acknowledged,
        AlarmStatus::Cleared,
    ];

    /// The state of an alarm cleared at `cleared_at` (if it was) and acknowledged at
    /// `acked_at`: cleared wins over acknowledged.
    pub fn of(cleared_at: Option<i64>, acked_at: Option<i64>) -> AlarmStatus {
        match (cleared_at, acked_at) {
            (Some(_), _) => AlarmStatus::Cleared,
            (None, Some(_)) => AlarmStatus::Acknowledged,
            (None, None) => AlarmStatus::Active,
        }
    }

    /// The name (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmStatus::Active => "active",
            AlarmStatus::Acknowledged => "acknowledged",
            AlarmStatus::Cleared => "cleared",
        }
    }
}

impl std::fmt::Display for AlarmStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{AlarmStatus, ConfigStatus};

    #[test]
    fn alarm_status_names_are_the_serde_names_and_cleared_wins() {
        for s in AlarmStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(AlarmStatus::of(None, None), AlarmStatus::Active);
        assert_eq!(AlarmStatus::of(None, Some(5)), AlarmStatus::Acknowledged);
        assert_eq!(AlarmStatus::of(Some(9), Some(5)), AlarmStatus::Cleared);
        assert_eq!(AlarmStatus::of(Some(9), None), AlarmStatus::Cleared);
    }

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
