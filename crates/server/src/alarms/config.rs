//! The `[alarms]` section of the server's TOML configuration.
//!
//! ```toml
//! [alarms]
//! flood_max = 10              # notifications per device and destination list per window ...
//! flood_window_s = 600        # ... the rest are summarised when the window ends
//! queue_capacity = 1000       # events waiting for the alarm engine (full: dropped, counted;
//!                             # one event is a committed batch, up to ingest.batch_records)
//! delivery_queue = 1000       # notifications waiting for delivery (full: logged as failed)
//! delivery_workers = 4        # deliveries in flight at once
//! retries = 3                 # attempts after the first failed one ...
//! retry_initial_ms = 2000     # ... waiting this long, doubling each time
//! timeout_ms = 10000          # one SMTP or webhook attempt
//!
//! [alarms.smtp]
//! host = "127.0.0.1"          # a mail relay (plain SMTP: relay to the internet over TLS from
//! port = 25                   # there; tek has no TLS client, see README "Alarms")
//! from = "tek@localhost"
//! # username = "tek"          # AUTH PLAIN/LOGIN, only if the relay asks for it
//! # password = "..."
//! ```

use serde::Deserialize;

/// Alarm settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// Most notifications per (device, destination list) per flood window.
    pub flood_max: u32,
    /// Flood window, seconds.
    pub flood_window_s: u32,
    /// Events queued for the alarm engine.
    pub queue_capacity: usize,
    /// Notifications queued for delivery.
    pub delivery_queue: usize,
    /// Concurrent deliveries.
    pub delivery_workers: usize,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// First retry delay, milliseconds (doubles).
    pub retry_initial_ms: u64,
    /// Timeout of one attempt, milliseconds.
    pub timeout_ms: u64,
    /// The mail relay.
    pub smtp: Smtp,
}

/// The SMTP relay alarm e-mail goes through.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Sender address.
    pub from: String,
    /// User name, if the relay requires authentication.
    pub username: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            flood_max: 10,
            flood_window_s: 600,
            queue_capacity: 1000,
            delivery_queue: 1000,
            delivery_workers: 4,
            retries: 3,
            retry_initial_ms: 2000,
            timeout_ms: 10_000,
            smtp: Smtp::default(),
        }
    }
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            host: "127.0.0.1".into(),
            port: 25,
            from: "tek@localhost".into(),
            username: None,
            password: None,
        }
    }
}

impl AlarmsConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.queue_capacity == 0 || self.delivery_queue == 0 || self.delivery_workers == 0 {
            return Err(
                "alarms.queue_capacity, delivery_queue and delivery_workers must be at least 1"
                    .into(),
            );
        }
        if self.flood_max == 0 || self.flood_window_s == 0 {
            return Err("alarms.flood_max and flood_window_s must be at least 1".into());
        }
        if self.timeout_ms == 0 {
            return Err("alarms.timeout_ms must be at least 1".into());
        }
        if self.smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "alarms.smtp.from: {:?} is not an e-mail address",
                self.smtp.from
            ));
        }
        if self.smtp.username.is_some() != self.smtp.password.is_some() {
            return Err("alarms.smtp: username and password go together".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_password_is_redacted() {
        let mut c = AlarmsConfig::default();
        c.validate().unwrap();
        c.smtp.username = Some("u".into());
        c.smtp.password = Some("hunter2".into());
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        c.smtp.from = "not an address".into();
        assert!(c.validate().is_err());
        let parsed: AlarmsConfig =
            toml::from_str("flood_max = 3\n[smtp]\nhost = \"mail\"\nport = 2525\n").unwrap();
        assert_eq!(parsed.flood_max, 3);
        assert_eq!(parsed.smtp.port, 2525);
        assert!(toml::from_str::<AlarmsConfig>("nope = 1").is_err());
    }

    #[test]
    fn part_of_the_server_config_file() {
        let p = std::path::Path::new("tek.toml");
        let c = crate::Config::from_toml(
            "[alarms]\nflood_window_s = 60\n[alarms.smtp]\nhost = \"mail.lan\"\nfrom = \"tek@pool.example\"\n",
            p,
        )
        .unwrap();
        assert_eq!(c.alarms.flood_window_s, 60);
        assert_eq!(c.alarms.smtp.host, "mail.lan");
        assert_eq!(c.alarms.smtp.port, 25);
        let bad = crate::Config::from_toml("[alarms.smtp]\nfrom = \"nobody\"\n", p).unwrap_err();
        assert!(bad.to_string().contains("alarms.smtp.from"), "{bad}");
        assert!(crate::Config::from_toml("[alarms]\nflood_max = 0\n", p).is_err());
    }
}
