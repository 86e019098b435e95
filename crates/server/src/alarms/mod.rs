//! Alarms: per-device rules on telemetry channels and device state, evaluated as committed
//! telemetry and status arrive, with hold-offs, acknowledgement, shelving, escalation through
//! destination lists, flood suppression, and notification by e-mail (SMTP) and webhook
//! (HTTP POST signed with HMAC-SHA256).
//!
//! Layers, by data flow:
//! * [`rules`] — what users write (conditions, restore conditions, hold-offs, severity, lists)
//!   and the pool templates.
//! * [`engine`] — logic without I/O: events and time in, [`engine::Action`]s out, per-rule
//!   deadlines in one ordered set (no scan over devices). Unit-tested with a fake clock.
//! * [`task`] — the alarm task: a bounded queue fed by the writer after each commit (never
//!   blocking ingest), the engine, and the storage writes of its actions.
//! * [`deliver`] — the delivery queue (bounded) and its workers: SMTP and webhooks, with
//!   retries; every attempt's result lands in the notification log.
//! * [`config`] — the `[alarms]` section of the server's configuration.

pub mod config;
pub mod deliver;
pub mod engine;
pub mod rules;
pub mod task;

pub use config::AlarmsConfig;
