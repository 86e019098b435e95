//! Alarms: per-device rules on telemetry channels and device state, evaluated as committed
//! telemetry and status arrive, with hold-offs, acknowledgement, shelving, escalation through
//! destination lists, flood suppression, and notification by e-mail (SMTP over TLS) and webhook
//! (HTTPS POST signed with HMAC-SHA256).
//!
//! Layers, by data flow:
//! * [`rules`] — what users write (conditions, restore conditions, hold-offs, severity, lists)
//!   and the pool templates.
//! * [`engine`] — logic without I/O: events and time in, [`engine::Action`]s out, per-rule
//!   deadlines in one ordered set (no scan over devices). Unit-tested with a fake clock.
//! * [`task`] — the alarm task: a bounded queue fed by the writer after each commit (never
//!   blocking ingest), the engine, and the storage writes of its actions.
//! * [`deliver`] — the delivery queue (bounded) and its workers: SMTP (STARTTLS or implicit
//!   TLS) and webhooks (HTTPS), with retries; every attempt's result lands in the notification
//!   log.
//! * [`tls`] — the certificates trusted for delivery (system roots plus `alarms.ca_file`) and
//!   the rustls client configurations built on them.
//! * [`config`] — the `[alarms]` section of the server's configuration.

pub mod config;
pub mod counters;
pub mod deliver;
pub mod engine;
pub mod rules;
pub mod task;
pub mod tls;
#[cfg(test)]
mod tls_tests;

pub use config::AlarmsConfig;
