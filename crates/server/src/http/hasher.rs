//! Password checks on threads of their own, at a lower CPU priority (nice 10 on Linux): a login
//! flood then takes only CPU time that ingest and the other requests leave over, instead of
//! competing with them as equals. The number of checks at once is bounded before a job gets here
//! ([`super::ratelimit::HashGate`]); there is one thread per permit, so a job never waits behind
//! another.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The password-check threads; they end when this is dropped.
pub struct Hasher {
    tx: SyncSender<Job>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher")
    }
}

impl Hasher {
    /// `threads` threads (at least 1).
    pub fn new(threads: usize) -> std::io::Result<Hasher> {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("tek-hash-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Hasher { tx })
    }

    /// Runs `f` on a check thread; `None` if none could take it (the caller answers 503).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (otx, orx) = tokio::sync::oneshot::channel();
        self.tx
            .try_send(Box::new(move || {
                let _ = otx.send(f());
            }))
            .ok()?;
        orx.await.ok()
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// nice 10 for the calling thread (Linux: `setpriority` on a thread id affects that thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread with valid arguments.
        let r = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10)
        };
        if r != 0 {
            tracing::debug!("cannot lower the priority of a password-check thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_refuses_beyond_its_threads() {
        let h = Arc::new(Hasher::new(1).unwrap());
        assert_eq!(h.run(|| 6 * 7).await, Some(42));
        // One job running and one queued fill it; a third is refused at once. Each step waits
        // for the one before (the check thread runs at a lower priority and may start late on
        // a loaded machine), so the outcome does not depend on timing.
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate_rx = Arc::new(Mutex::new(gate_rx));
        let blocked_job = || {
            let (h, g, started) = (h.clone(), gate_rx.clone(), started_tx.clone());
            tokio::spawn(async move {
                h.run(move || {
                    let _ = started.send(());
                    let _ = g.lock().unwrap().recv();
                })
                .await
            })
        };
        let first = blocked_job();
        let started_rx = tokio::task::spawn_blocking(move || {
            started_rx.recv().unwrap();
            started_rx
        })
        .await
        .unwrap();
        let second = blocked_job();
        // On this single-threaded runtime, yielding runs `second` up to its queued job.
        tokio::task::yield_now().await;
        assert!(started_rx.try_recv().is_err(), "the second job ran early");
        assert_eq!(h.run(|| ()).await, None);
        gate_tx.send(()).unwrap();
        gate_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Some(()));
        assert_eq!(second.await.unwrap(), Some(()));
    }
}
