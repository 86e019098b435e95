//! What every long-running task of the server needs from the runtime: the shutdown signal and
//! a way to run blocking work (database calls, password hashing) off the async threads.
//!
//! A bottom module: it imports nothing of the server. Callers turn [`TaskFailed`] into their
//! own error (`storage::Error` has a `From` for it).

use std::fmt;
use tokio::sync::watch;

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A blocking task did not finish: it panicked or the runtime shut down under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailed(pub String);

impl fmt::Display for TaskFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocking task failed: {}", self.0)
    }
}

impl std::error::Error for TaskFailed {}

/// Runs `f` on tokio's blocking pool and returns its result; a task that did not finish
/// becomes `E::from(TaskFailed)`, so one `?` serves both failures.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<TaskFailed> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(TaskFailed(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Own(u8),
        Task,
    }

    impl From<TaskFailed> for Failure {
        fn from(_: TaskFailed) -> Self {
            Failure::Task
        }
    }

    #[tokio::test]
    async fn blocking_passes_the_result_and_the_error_through() {
        assert_eq!(blocking(|| Ok::<_, Failure>(7)).await, Ok(7));
        assert_eq!(
            blocking(|| Err::<u8, _>(Failure::Own(3))).await,
            Err(Failure::Own(3))
        );
    }

    #[tokio::test]
    async fn a_panicking_task_becomes_task_failed() {
        let got = blocking(|| -> Result<u8, Failure> { panic!("on purpose") }).await;
        assert_eq!(got, Err(Failure::Task));
    }

    #[tokio::test]
    async fn stopped_resolves_on_true_and_on_a_dropped_sender() {
        let (tx, mut rx) = watch::channel(false);
        tx.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), stopped(&mut rx))
            .await
            .expect("stop seen");
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        tokio::time::timeout(std::time::Duration::from_secs(5), stopped(&mut rx))
            .await
            .expect("a gone sender counts as stop");
    }
}
