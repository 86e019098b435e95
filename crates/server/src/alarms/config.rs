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
//! # ca_file = "/etc/tek/ca.pem" # PEM certificates trusted for SMTP and https:// webhooks, in
//! #                           # addition to the system's roots (a private CA, a relay's own)
//!
//! [alarms.smtp]
//! host = "127.0.0.1"          # the mail relay; its certificate must name this host
//! tls = "starttls"            # "starttls" (required, never falls back to plain), "tls"
//!                             # (implicit TLS, RFC 8314), or "none" (plain SMTP: only for a
//!                             # relay on this machine)
//! # port = 587                # default by `tls`: starttls 587, tls 465, none 25
//! from = "tek@localhost"
//! # username = "tek"          # AUTH PLAIN/LOGIN, only if the relay asks for it; never sent
//! # password = "..."          # in clear over the network (refused with tls = "none" unless
//!                             # the host is a loopback address)
//! ```

use serde::Deserialize;
use std::path::PathBuf;

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
    /// A PEM file of certificates trusted for TLS deliveries besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The mail relay.
    pub smtp: Smtp,
}

/// The SMTP relay alarm e-mail goes through.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    /// Host name or address (checked against the relay's certificate).
    pub host: String,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// Port; `None`: the usual one for `tls` ([`Smtp::port`]).
    pub port: Option<u16>,
    /// Sender address.
    pub from: String,
    /// User name, if the relay requires authentication.
    pub username: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
}

/// How the connection to the SMTP relay is protected.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection, then `STARTTLS` (RFC 3207); a relay that does not offer it, or whose
    /// certificate does not verify, fails the delivery (no fallback to plain text).
    #[default]
    Starttls,
    /// TLS from the first byte (implicit TLS, RFC 8314), usually port 465.
    Tls,
    /// Plain SMTP, no encryption: for a relay on this machine.
    None,
}

impl Smtp {
    /// The port to connect to: the configured one, else 587 (STARTTLS, the submission port),
    /// 465 (implicit TLS) or 25 (plain).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("tls", &self.tls)
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
            ca_file: None,
            smtp: Smtp::default(),
        }
    }
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            host: "127.0.0.1".into(),
            tls: SmtpTls::default(),
            port: None,
            from: "tek@localhost".into(),
            username: None,
            password: None,
        }
    }
}

impl Smtp {
    /// Whether the relay is this machine (`localhost` or a loopback address).
    fn is_loopback(&self) -> bool {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
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
        if self.smtp.port == Some(0) {
            return Err("alarms.smtp.port must not be 0".into());
        }
        if self.smtp.tls == SmtpTls::None
            && self.smtp.password.is_some()
            && !self.smtp.is_loopback()
        {
            return Err(format!(
                "alarms.smtp: a password would cross the network in clear text to {:?}; set \
                 tls = \"starttls\" or \"tls\"",
                self.smtp.host
            ));
        }
        if let Some(path) = &self.ca_file {
            super::tls::ca_file_certs(path).map_err(|e| e.to_string())?;
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
        assert_eq!(parsed.smtp.port, Some(2525));
        assert_eq!(parsed.smtp.port(), 2525);
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
        assert_eq!(c.alarms.smtp.tls, SmtpTls::Starttls);
        assert_eq!(c.alarms.smtp.port(), 587);
        let bad = crate::Config::from_toml("[alarms.smtp]\nfrom = \"nobody\"\n", p).unwrap_err();
        assert!(bad.to_string().contains("alarms.smtp.from"), "{bad}");
        assert!(crate::Config::from_toml("[alarms]\nflood_max = 0\n", p).is_err());
    }

    #[test]
    fn tls_modes_ports_and_clear_text_passwords() {
        let smtp = |toml: &str| toml::from_str::<AlarmsConfig>(toml).map(|c| c.smtp);
        let s = smtp("[smtp]\nhost = \"mail\"\ntls = \"tls\"\n").unwrap();
        assert_eq!((s.tls, s.port()), (SmtpTls::Tls, 465));
        let s = smtp("[smtp]\ntls = \"none\"\n").unwrap();
        assert_eq!((s.tls, s.port()), (SmtpTls::None, 25));
        let s = smtp("[smtp]\ntls = \"starttls\"\nport = 25\n").unwrap();
        assert_eq!((s.tls, s.port()), (SmtpTls::Starttls, 25));
        assert!(smtp("[smtp]\ntls = \"ssl\"\n").is_err());

        // AUTH over plain SMTP: only to this machine.
        let mut c = AlarmsConfig::default();
        c.smtp.tls = SmtpTls::None;
        c.smtp.username = Some("u".into());
        c.smtp.password = Some("p".into());
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            c.smtp.host = host.into();
            c.validate().unwrap();
        }
        c.smtp.host = "mail.example".into();
        let e = c.validate().unwrap_err();
        assert!(e.contains("clear text"), "{e}");
        c.smtp.tls = SmtpTls::Starttls;
        c.validate().unwrap();
        c.smtp.port = Some(0);
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_bad_ca_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = std::path::Path::new("tek.toml");
        let missing = dir.path().join("nope.pem");
        let toml = format!("[alarms]\nca_file = {:?}\n", missing.display().to_string());
        let e = crate::Config::from_toml(&toml, p).unwrap_err().to_string();
        assert!(
            e.contains("alarms.ca_file") && e.contains("nope.pem"),
            "{e}"
        );
        let ca = super::super::tls_tests::Ca::new("tek test CA");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        let toml = format!("[alarms]\nca_file = {:?}\n", good.display().to_string());
        let c = crate::Config::from_toml(&toml, p).unwrap();
        assert_eq!(c.alarms.ca_file.as_deref(), Some(good.as_path()));
    }
}
