//! Login rate limiting: token buckets per client address, per account and address, and per
//! account ([`LoginLimiter`]), in memory; and the bound on password checks running at once
//! ([`HashGate`]).
//!
//! Every attempt costs a token (successful ones too: a correct guess is still a guess, and each
//! attempt costs an argon2 computation). Memory is bounded: at most [`MAX_KEYS`] buckets; when
//! full, buckets that have refilled completely (carry no information) are dropped, and if none
//! has, the attempt is refused — an attacker filling the table only locks out new keys briefly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most buckets kept per kind.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A set of token buckets keyed by string.
#[derive(Debug)]
pub struct Buckets {
    burst: f64,
    per_s: f64,
    map: HashMap<String, Bucket>,
}

impl Buckets {
    /// `burst` attempts at once, then one per `interval`.
    pub fn new(burst: u32, interval: Duration) -> Buckets {
        Buckets {
            burst: f64::from(burst),
            per_s: 1.0 / interval.as_secs_f64().max(1e-3),
            map: HashMap::new(),
        }
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_s).min(self.burst)
    }

    /// Takes a token for `key`; `Err(seconds until one is available)` if there is none.
    pub fn take(&mut self, key: &str, now: Instant) -> Result<(), u64> {
        if !self.map.contains_key(key) && self.map.len() >= MAX_KEYS {
            let burst = self.burst;
            let per_s = self.per_s;
            self.map.retain(|_, b| {
                (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s) < burst
            });
            if self.map.len() >= MAX_KEYS {
                return Err((1.0 / self.per_s).ceil() as u64);
            }
        }
        let b = self.map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let level = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_s)
            .min(self.burst);
        if level >= 1.0 {
            *b = Bucket {
                tokens: level - 1.0,
                at: now,
            };
            Ok(())
        } else {
            Err(((1.0 - level) / self.per_s).ceil().max(1.0) as u64)
        }
    }

    /// Tokens `key` has now (for tests and diagnostics).
    pub fn available(&self, key: &str, now: Instant) -> f64 {
        self.map.get(key).map_or(self.burst, |b| self.level(b, now))
    }
}

/// The login limiter, before any password is checked:
/// * per client address: 20 at once, then 1 per 3 s;
/// * per account and client address: 5 at once, then 1 per 12 s — a wrong guess locks out only
///   the address that made it, never the owner elsewhere;
/// * per account from addresses that have not signed in to it before: 20 at once, then 1 per
///   6 s — a bound on guessing spread over many addresses. Addresses the account signed in from
///   (the last [`KNOWN_PER_ACCOUNT`]) are exempt, so the owner still gets in from them.
///
/// * per client network (IPv4 /24, IPv6 /64): 20 at once, then 1 per second — many addresses
///   of one network (a rented block, one host's IPv6 /64) count together, so they cannot
///   multiply the per-address allowance into a steady stream of password checks.
///
/// Without a client address (a server embedded without connect info) only the account bucket
/// counts.
#[derive(Debug)]
pub struct LoginLimiter {
    by_addr: Buckets,
    by_network: Buckets,
    by_account_addr: Buckets,
    by_account: Buckets,
    known: HashMap<String, Vec<String>>,
}

/// Addresses remembered per account as ones it signed in from.
pub const KNOWN_PER_ACCOUNT: usize = 8;

/// An attempt the limiter let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The client address's allowance was (almost) full: it made no attempt in the last few
    /// seconds, so it is not one of those flooding, and may wait for the password-check slot
    /// kept for such addresses.
    pub fresh: bool,
}

/// How much of its allowance an address may lack and still count as fresh: half an attempt, i.e.
/// its last attempt was at least 1.5 s ago (refill 1 per 3 s) and there were no others before.
/// A flooding address never is; a user who retries after a refusal is again within seconds.
pub const FRESH_SPENT: f64 = 0.5;

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            by_addr: Buckets::new(20, Duration::from_secs(3)),
            by_network: Buckets::new(20, Duration::from_secs(1)),
            by_account_addr: Buckets::new(5, Duration::from_secs(12)),
            by_account: Buckets::new(20, Duration::from_secs(6)),
            known: HashMap::new(),
        }
    }
}

impl LoginLimiter {
    /// Admits one attempt, or says how many seconds to wait.
    pub fn admit(
        &mut self,
        email: &str,
        addr: Option<&str>,
        now: Instant,
    ) -> Result<Admitted, u64> {
        let account = email.to_lowercase();
        let Some(a) = addr else {
            self.by_account.take(&account, now)?;
            return Ok(Admitted { fresh: false });
        };
        let fresh = self.by_addr.available(a, now) >= self.by_addr.burst - FRESH_SPENT;
        self.by_addr.take(a, now)?;
        self.by_network.take(&network_of(a), now)?;
        self.by_account_addr.take(&format!("{account}\0{a}"), now)?;
        let known = self
            .known
            .get(&account)
            .is_some_and(|v| v.iter().any(|k| k == a));
        if !known {
            self.by_account.take(&account, now)?;
        }
        Ok(Admitted { fresh })
    }

    /// Remembers that `email` signed in from `addr` (exempting it from the per-account bucket).
    pub fn signed_in(&mut self, email: &str, addr: Option<&str>) {
        let Some(a) = addr else { return };
        let account = email.to_lowercase();
        if !self.known.contains_key(&account) && self.known.len() >= MAX_KEYS {
            // Bounded memory: forget everything rather than grow (the only cost is that owners
            // count against the per-account bucket again until they next sign in).
            self.known.clear();
        }
        let v = self.known.entry(account).or_default();
        v.retain(|k| k != a);
        v.push(a.to_owned());
        if v.len() > KNOWN_PER_ACCOUNT {
            v.remove(0);
        }
    }
}

/// The network an address belongs to for [`LoginLimiter`]: its IPv4 /24 or IPv6 /64 (an
/// IPv4-mapped IPv6 address counts as IPv4); an address that does not parse is its own network.
pub fn network_of(addr: &str) -> String {
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => network_v4(v4),
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => network_v4(v4),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => addr.to_owned(),
    }
}

fn network_v4(a: std::net::Ipv4Addr) -> String {
    let [x, y, z, _] = a.octets();
    format!("{x}.{y}.{z}.0/24")
}

/// The bound on password checks running at once (each is an argon2id computation holding
/// 19 MiB and a core for tens of milliseconds).
///
/// `general` permits are taken without waiting: an attempt that finds none is answered 503 at
/// once, so a flood never queues work or memory. One more permit is kept for attempts from
/// fresh addresses (see [`Admitted::fresh`]); such an attempt may wait up to [`FRESH_WAIT`] for
/// it, with at most [`FRESH_WAITERS`] waiting — so a user signing in from an address that is not
/// flooding still gets through while the general permits are all held by a flood.
#[derive(Debug)]
pub struct HashGate {
    general: Arc<Semaphore>,
    fresh: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Longest wait of a fresh address for the reserved password-check permit.
pub const FRESH_WAIT: Duration = Duration::from_millis(1500);
/// Most attempts waiting for the reserved permit at once.
pub const FRESH_WAITERS: usize = 16;

/// A permit to check one password; dropping it frees the slot.
#[derive(Debug)]
pub struct HashPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl HashGate {
    /// `at_once` general permits (at least 1) plus the one kept for fresh addresses.
    pub fn new(at_once: usize) -> HashGate {
        give_large_blocks_back();
        HashGate {
            general: Arc::new(Semaphore::new(at_once.max(1))),
            fresh: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A permit, or `None` when every one is taken (the caller answers 503 at once).
    pub async fn enter(&self, admitted: Admitted) -> Option<HashPermit> {
        if let Ok(p) = self.general.clone().try_acquire_owned() {
            return Some(HashPermit(p));
        }
        if !admitted.fresh {
            return None;
        }
        if let Ok(p) = self.fresh.clone().try_acquire_owned() {
            return Some(HashPermit(p));
        }
        // The count is given back by a guard: a client that hangs up while waiting drops this
        // future mid-await, and a decrement after the await would then never run (the count
        // would creep up to FRESH_WAITERS and refuse every fresh address from then on).
        let _waiter = Waiter::enter(&self.waiting)?;
        let got = tokio::time::timeout(FRESH_WAIT, self.fresh.clone().acquire_owned()).await;
        match got {
            Ok(Ok(p)) => Some(HashPermit(p)),
            _ => None,
        }
    }

    /// Permits free now (general ones; for tests).
    pub fn available(&self) -> usize {
        self.general.available_permits()
    }
}

/// One place among the [`FRESH_WAITERS`]; given back when dropped, however the wait ends.
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Waiter<'a>> {
        if count.fetch_add(1, Ordering::AcqRel) >= FRESH_WAITERS {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiter(count))
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Makes glibc's allocator return large blocks (a password check's 19 MiB) to the system when
/// they are freed. By default glibc raises its mmap threshold to the size of the first large
/// block freed, after which such blocks come from per-thread arenas that never shrink: a burst
/// of logins on many blocking threads then left gigabytes resident. A fixed threshold keeps
/// every block of 1 MiB or more in its own mapping, unmapped on free.
fn give_large_blocks_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets an allocator parameter; any value is accepted or refused
            // by its return code.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
            if ok != 1 {
                tracing::warn!("mallopt(M_MMAP_THRESHOLD) refused");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = Buckets::new(3, Duration::from_secs(10));
        for _ in 0..3 {
            b.take("a", t0).unwrap();
        }
        assert_eq!(b.take("a", t0), Err(10));
        b.take("b", t0).unwrap();
        assert_eq!(b.take("a", t0 + Duration::from_secs(4)), Err(6));
        b.take("a", t0 + Duration::from_secs(10)).unwrap();
        assert!(b.take("a", t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn bounded_memory() {
        let t0 = Instant::now();
        let mut b = Buckets::new(1, Duration::from_secs(60));
        for i in 0..MAX_KEYS {
            b.take(&i.to_string(), t0).unwrap();
        }
        assert!(b.take("new", t0).is_err(), "table full of fresh buckets");
        // Once they have refilled, they carry nothing and make room.
        b.take("new", t0 + Duration::from_secs(61)).unwrap();
        assert!(b.map.len() <= MAX_KEYS);
    }

    #[test]
    fn login_limits_email_case_insensitively() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for i in 0..5 {
            let email = if i % 2 == 0 { "A@x.y" } else { "a@X.y" };
            l.admit(email, Some("127.0.0.1"), t0).unwrap();
        }
        assert!(l.admit("a@x.y", Some("127.0.0.1"), t0).is_err());
        l.admit("b@x.y", Some("127.0.0.1"), t0).unwrap();
    }

    #[test]
    fn a_guesser_locks_out_only_itself() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        l.admit("a@x.y", Some("10.0.0.1"), t0).unwrap();
        l.signed_in("a@x.y", Some("10.0.0.1"));
        for _ in 0..5 {
            l.admit("a@x.y", Some("6.6.6.6"), t0).unwrap();
        }
        assert!(l.admit("a@x.y", Some("6.6.6.6"), t0).is_err());
        // Spread over many addresses, guessing runs into the account's bound ...
        let refused = (0..40)
            .filter(|i| l.admit("a@x.y", Some(&format!("7.7.7.{i}")), t0).is_err())
            .count();
        assert!(refused >= 20, "{refused}");
        // ... which the owner's known address is exempt from.
        l.admit("A@X.Y", Some("10.0.0.1"), t0).unwrap();
    }

    #[test]
    fn fresh_addresses() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        let fresh: Vec<bool> = (0..6)
            .map(|i| {
                l.admit(&format!("{i}@x.y"), Some("1.1.1.1"), t0)
                    .unwrap()
                    .fresh
            })
            .collect();
        assert_eq!(fresh, [true, false, false, false, false, false]);
        // After a pause it is fresh again.
        let later = t0 + Duration::from_secs(30);
        assert!(l.admit("y@x.y", Some("1.1.1.1"), later).unwrap().fresh);
        assert!(!l.admit("z@x.y", None, t0).unwrap().fresh);
    }

    #[test]
    fn networks() {
        assert_eq!(network_of("10.1.2.3"), "10.1.2.0/24");
        assert_eq!(network_of("::ffff:10.1.2.3"), "10.1.2.0/24");
        assert_eq!(network_of("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(network_of("not an address"), "not an address");
    }

    #[test]
    fn many_addresses_of_one_network_share_its_allowance() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        // 256 addresses of one /24, one attempt each (each within its own allowance): the
        // network's 20 pass, the rest wait for its refill.
        let admitted = (0..=255)
            .filter(|i| {
                l.admit(&format!("u{i}@x.y"), Some(&format!("192.0.2.{i}")), t0)
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 20);
        let later = t0 + Duration::from_secs(2);
        assert!(l.admit("v@x.y", Some("192.0.2.9"), later).is_ok());
        // Another network is not affected.
        assert!(l.admit("w@x.y", Some("198.51.100.1"), t0).unwrap().fresh);
    }

    #[tokio::test]
    async fn a_fresh_waiter_that_hangs_up_gives_its_place_back() {
        let g = Arc::new(HashGate::new(1));
        let fresh = Admitted { fresh: true };
        let _general = g.enter(fresh).await.unwrap();
        let _kept = g.enter(fresh).await.unwrap();
        // Waiters whose clients hang up: their futures are dropped while they wait.
        for _ in 0..FRESH_WAITERS * 2 {
            let g = g.clone();
            let w = tokio::spawn(async move { g.enter(fresh).await.is_some() });
            tokio::time::sleep(Duration::from_millis(2)).await;
            w.abort();
            let _ = w.await;
        }
        assert_eq!(g.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn hash_gate_refuses_at_once_beyond_its_bound() {
        let g = HashGate::new(1);
        let flood = Admitted { fresh: false };
        let fresh = Admitted { fresh: true };
        let held = g.enter(flood).await.unwrap();
        assert_eq!(g.available(), 0);
        // A flooding address gets no permit and does not wait.
        let t = std::time::Instant::now();
        assert!(g.enter(flood).await.is_none());
        assert!(t.elapsed() < Duration::from_millis(100));
        // A fresh one gets the kept permit; a second fresh one waits for it.
        let kept = g.enter(fresh).await.unwrap();
        let waiter = tokio::spawn(async move {
            let got = g.enter(fresh).await.is_some();
            (g, got)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(kept);
        let (g, got) = waiter.await.unwrap();
        assert!(got);
        drop(held);
        assert_eq!(g.available(), 1);
    }
}
