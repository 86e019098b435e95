//! Versioned device configurations: every save is a new version (previous + 1), kept with what
//! the device did with it.

use super::{Error, Result};
use tek_proto::message::{Config, ConfigResult};

/// The item list both backends store for `config` (sealed), once it passed validation: an
/// invalid configuration is refused before any SQL runs.
pub fn valid_items(config: &Config) -> Result<Vec<u8>> {
    config.validate().map_err(Error::InvalidConfig)?;
    let mut items = vec![0u8; config.items_len()];
    config
        .emit_items(&mut items)
        .ok_or_else(|| Error::Backend("config encoding failed".into()))?;
    Ok(items)
}

/// What became of a configuration version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigState {
    /// Saved, not confirmed yet.
    Pending,
    /// Confirmed by the device, in effect.
    Applied,
    /// Confirmed; its fixed IP settings take effect at the device's next reset.
    AppliedAtReset,
    /// The device could not reach a server with it and restored the previous one.
    RolledBack,
}

impl ConfigState {
    /// The state a ConfigAck result puts a version in.
    pub fn from_result(r: ConfigResult) -> ConfigState {
        match r {
            ConfigResult::Applied => ConfigState::Applied,
            ConfigResult::AppliedAtReset => ConfigState::AppliedAtReset,
            ConfigResult::RolledBack => ConfigState::RolledBack,
        }
    }

    /// Stable text form used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigState::Pending => "pending",
            ConfigState::Applied => "applied",
            ConfigState::AppliedAtReset => "applied_at_reset",
            ConfigState::RolledBack => "rolled_back",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<ConfigState> {
        Some(match s {
            "pending" => ConfigState::Pending,
            "applied" => ConfigState::Applied,
            "applied_at_reset" => ConfigState::AppliedAtReset,
            "rolled_back" => ConfigState::RolledBack,
            _ => return None,
        })
    }

    /// Whether the device confirmed it.
    pub fn is_synced(self) -> bool {
        matches!(self, ConfigState::Applied | ConfigState::AppliedAtReset)
    }
}

/// One saved configuration version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRecord {
    /// Device.
    pub device_id: u32,
    /// Version (1 = first saved; 0 is the factory configuration and never stored).
    pub version: u32,
    /// The configuration (valid: it was validated before saving).
    pub config: Config,
    /// When it was saved.
    pub saved_at: i64,
    /// What became of it.
    pub state: ConfigState,
    /// When the device answered.
    pub acked_at: Option<i64>,
    /// Position in the global change feed (see [`ConfigStore::configs_since`]).
    pub seq: i64,
}

/// A version's move to another state: the rule both backends apply under their SQL. The move
/// happens only if the version is not in `to` already (a repeated ConfigAck changes nothing)
/// and, when `from` is given, only from that state; the device's summary column
/// ([`summary_column`](Self::summary_column)) then rises to the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigTransition {
    /// Device.
    pub device_id: u32,
    /// The version that moves.
    pub version: u32,
    /// The state the version moves to.
    pub to: ConfigState,
    /// The only state it may move from (`None`: any other).
    pub from: Option<ConfigState>,
    /// When (the version's `acked_at`).
    pub at: i64,
}

impl ConfigTransition {
    /// The device answered `version` with `result` at `at`.
    pub fn acked(device_id: u32, version: u32, result: ConfigResult, at: i64) -> Self {
        ConfigTransition {
            device_id,
            version,
            to: ConfigState::from_result(result),
            from: None,
            at,
        }
    }

    /// The device reports running a pending `version` (its ConfigAck was lost): synced.
    pub fn running(device_id: u32, version: u32, at: i64) -> Self {
        ConfigTransition {
            device_id,
            version,
            to: ConfigState::Applied,
            from: Some(ConfigState::Pending),
            at,
        }
    }

    /// The `devices` column that records the newest version in the new state: the confirmed
    /// one, or the rolled-back one.
    pub fn summary_column(self) -> &'static str {
        if self.to.is_synced() {
            "config_applied"
        } else {
            "config_rolled_back"
        }
    }
}

/// Configuration operations.
pub trait ConfigStore {
    /// Validates `config` and saves it as the device's next version; returns the version.
    fn save_config(&self, device_id: u32, config: &Config, now: i64) -> Result<u32>;
    /// The newest version of a device, if any was saved.
    fn latest_config(&self, device_id: u32) -> Result<Option<ConfigRecord>>;
    /// One version of a device's configuration, if it exists.
    fn config_version(&self, device_id: u32, version: u32) -> Result<Option<ConfigRecord>>;
    /// Versions saved after feed position `seq`, oldest first, at most `limit`.
    fn configs_since(&self, seq: i64, limit: usize) -> Result<Vec<ConfigRecord>>;
    /// The current end of the change feed.
    fn config_cursor(&self) -> Result<i64>;
    /// Applies `change` to its version and the device's summary in one transaction (the SQL
    /// of the rule [`ConfigTransition`] states). Returns whether the state changed.
    fn set_config_state(&self, change: &ConfigTransition) -> Result<bool>;
    /// Records the device's answer for a version. Returns whether the state changed (a repeated
    /// ConfigAck changes nothing).
    fn config_acked(
        &self,
        device_id: u32,
        version: u32,
        result: ConfigResult,
        now: i64,
    ) -> Result<bool> {
        self.set_config_state(&ConfigTransition::acked(device_id, version, result, now))
    }
    /// Marks a pending version synced because the device reports running it (its ConfigAck was
    /// lost). Returns whether the state changed.
    fn config_running(&self, device_id: u32, version: u32, now: i64) -> Result<bool> {
        self.set_config_state(&ConfigTransition::running(device_id, version, now))
    }
    /// Devices whose newest version is still pending.
    fn pending_config_count(&self) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_name_their_state_and_summary_column() {
        let applied = ConfigTransition::acked(3, 2, ConfigResult::Applied, 70);
        assert_eq!((applied.to, applied.from), (ConfigState::Applied, None));
        assert_eq!((applied.device_id, applied.version, applied.at), (3, 2, 70));
        assert_eq!(applied.summary_column(), "config_applied");
        let at_reset = ConfigTransition::acked(3, 2, ConfigResult::AppliedAtReset, 70);
        assert_eq!(at_reset.summary_column(), "config_applied");
        let rolled = ConfigTransition::acked(3, 2, ConfigResult::RolledBack, 70);
        assert_eq!(rolled.summary_column(), "config_rolled_back");
        let running = ConfigTransition::running(3, 2, 70);
        assert_eq!(
            (running.to, running.from),
            (ConfigState::Applied, Some(ConfigState::Pending))
        );
    }
}
