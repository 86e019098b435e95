//! The database health gate and the reconnect task.
//!
//! Why a gate: without it, every datagram that needs the database while PostgreSQL is away
//! would wait for a connect timeout, and the writer queue would back up behind them. With it, the
//! first failure marks the database down, later operations fail at once with
//! [`Error::Unavailable`] (telemetry is then not acknowledged, so devices keep it and retransmit),
//! and one task probes with exponential back-off until a connection works again.

use super::Shared;
use crate::storage::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// First wait before a reconnect attempt.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between reconnect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Up/down state, why it is down, and how often it came back.
#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
    reason: Mutex<String>,
    reconnects: AtomicU64,
    attempts: AtomicU64,
    wake: Notify,
}

impl Health {
    /// `Ok` while up; `Unavailable` with the reason while down.
    pub fn check(&self) -> Result<()> {
        if !self.down.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Err(Error::Unavailable(format!(
            "{reason} (reconnecting, {} attempts so far)",
            self.attempts.load(Ordering::Relaxed)
        )))
    }

    /// An operation found the database unreachable.
    pub fn down(&self, why: &str) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = why.to_owned();
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(reason = why, "database connection lost; reconnecting");
            self.wake.notify_one();
        }
    }

    /// An operation (or the reconnect probe) reached the database.
    pub fn up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            self.attempts.store(0, Ordering::Relaxed);
            tracing::info!("database connection restored");
        }
    }

    /// Whether the database is marked up.
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Times the database came back after being marked down.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// The next back-off interval.
pub fn next_backoff(prev: Duration) -> Duration {
    (prev * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
}

/// Waits for the database to be marked down, then probes it with back-off until it answers.
pub(crate) async fn reconnect_task(shared: Arc<Shared>) {
    loop {
        while shared.health.is_up() {
            shared.health.wake.notified().await;
        }
        let mut wait = BACKOFF_MIN;
        loop {
            tokio::time::sleep(wait).await;
            shared.health.attempts.fetch_add(1, Ordering::Relaxed);
            match probe(&shared).await {
                Ok(()) => {
                    shared.health.up();
                    break;
                }
                Err(e) => {
                    *shared
                        .health
                        .reason
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = e.to_string();
                    wait = next_backoff(wait);
                    tracing::debug!(%e, ?wait, "database still unreachable");
                }
            }
        }
    }
}

async fn probe(shared: &Shared) -> Result<()> {
    let c = shared.conn().await?;
    c.query_one("SELECT 1", &[]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_and_backoff() {
        let h = Health::default();
        assert!(h.check().is_ok());
        h.down("connection refused");
        let e = h.check().unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)));
        assert!(e.to_string().contains("connection refused"), "{e}");
        h.up();
        assert!(h.check().is_ok());
        assert_eq!(h.reconnects(), 1);
        h.up();
        assert_eq!(h.reconnects(), 1, "only a down-to-up change counts");
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            d = next_backoff(d);
            seen.push(d);
        }
        assert_eq!(seen[0], BACKOFF_MIN);
        assert_eq!(seen[1], BACKOFF_MIN * 2);
        assert_eq!(*seen.last().unwrap(), BACKOFF_MAX);
    }
}
