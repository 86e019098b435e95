//! What every long-running task of the server needs from the runtime: the shutdown signal and
//! a way to run blocking work (database calls, password hashing) off the async threads.
//!
//! A bottom module: it imports nothing of the server. Callers turn [`TaskFailed`] into their
//! own error (`storage::Error` has a `From` for it).

use std::fmt;
use std::time::Duration;
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

/// glibc arenas the server's threads share ([`few_arenas`]).
pub const ARENAS: i32 = 2;

/// Makes the server's threads share [`ARENAS`] glibc malloc arenas instead of up to eight per
/// core. Each arena keeps what its threads freed for its own later use: a burst of handshakes
/// runs thousands of database loads on up to 512 blocking threads, and with 16 arenas each was
/// left holding its share of that burst, mostly free but in holes of a few kilobytes between
/// live blocks that no trim can hand back (~55 MB of 16 arenas at 100,000 configured devices,
/// `tek bench fleet`). With two, the next burst reuses the holes. Little is lost: the database
/// work those threads do is serialized on a handful of connections anyway, and each thread's
/// small-block cache (tcache) takes no arena lock. Call before the runtime starts its threads.
/// Elsewhere (other allocators) this does nothing.
pub fn few_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; a refused value is reported by its
        // return code and changes nothing.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
        if ok != 1 {
            tracing::warn!("mallopt(M_ARENA_MAX) refused");
        }
    }
}

/// How often [`release_memory`] hands free memory back.
pub const RELEASE_EVERY: Duration = Duration::from_secs(30);

/// Hands the allocator's free pages back to the system; returns whether any were. glibc keeps
/// what a thread frees in that thread's arena, resident, and gives back only the top of each
/// arena: a burst of handshakes (thousands of database loads on up to 512 blocking threads
/// sharing 16 arenas, each load's rows and buffers freed at once) left ~78 MB free but
/// resident among the sessions' long-lived allocations at 100,000 configured devices, ~780
/// bytes per device (`tek bench fleet`, BENCHMARKS.md). `malloc_trim` releases the whole free
/// pages inside every arena too. Elsewhere (other allocators) this does nothing.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists (under its locks) and
        // advises the kernel about whole free pages; no memory in use is touched.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The task that calls [`release_free_memory`] every [`RELEASE_EVERY`] on the blocking pool
/// (a trim of a large heap takes milliseconds, under each arena's lock in turn), until `stop`.
pub async fn release_memory(mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(RELEASE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stopped(&mut stop) => break,
        }
        let released = blocking(|| Ok::<_, TaskFailed>(release_free_memory())).await;
        tracing::trace!(?released, "free memory handed back");
    }
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

    /// Resident anonymous memory of this process, bytes (Linux).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn rss_anon() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Memory freed below a block still in use stays resident until trimmed: 64 MiB of small
    /// blocks freed under a pinned last one must mostly leave once released.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn free_memory_below_live_blocks_goes_back() {
        // Its own thread, so its own arena, which other tests do not fill back at once.
        std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..16 * 1024).map(|i| vec![i as u8; 4000]).collect();
            let pin = vec![1u8; 4000];
            drop(blocks);
            let before = rss_anon();
            assert!(release_free_memory(), "nothing was released");
            let after = rss_anon();
            assert!(
                before.saturating_sub(after) > 32 << 20,
                "RSS {before} -> {after} bytes"
            );
            drop(pin);
        })
        .join()
        .unwrap();
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
