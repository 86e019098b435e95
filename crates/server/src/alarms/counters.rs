//! The alarm subsystem's counters for `/metrics`, shared by the engine's task and the delivery
//! workers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the alarm subsystem, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events dropped because the engine's queue was full.
    pub events_dropped: AtomicU64,
    /// Alarms raised.
    pub raised: AtomicU64,
    /// Notifications delivered.
    pub sent: AtomicU64,
    /// Notifications given up on.
    pub failed: AtomicU64,
}

impl Counters {
    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "tek_alarm_events_dropped_total",
                "Events for the alarm engine dropped because its queue was full.",
                &self.events_dropped,
            ),
            ("tek_alarms_raised_total", "Alarms raised.", &self.raised),
            (
                "tek_alarm_notifications_sent_total",
                "Alarm notifications delivered (e-mail accepted by the relay, webhook 2xx).",
                &self.sent,
            ),
            (
                "tek_alarm_notifications_failed_total",
                "Alarm notifications given up on after every retry.",
                &self.failed,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
