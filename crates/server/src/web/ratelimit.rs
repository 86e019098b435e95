//! Login rate limiting: token buckets per e-mail address and per client address, in memory.
//!
//! Every attempt costs a token (successful ones too: a correct guess is still a guess, and each
//! attempt costs an argon2 computation). Memory is bounded: at most [`MAX_KEYS`] buckets; when
//! full, buckets that have refilled completely (carry no information) are dropped, and if none
//! has, the attempt is refused — an attacker filling the table only locks out new keys briefly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// The login limiter: per e-mail (5 at once, then 1 per 12 s) and per client address (20 at
/// once, then 1 per 3 s).
#[derive(Debug)]
pub struct LoginLimiter {
    by_email: Buckets,
    by_addr: Buckets,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            by_email: Buckets::new(5, Duration::from_secs(12)),
            by_addr: Buckets::new(20, Duration::from_secs(3)),
        }
    }
}

impl LoginLimiter {
    /// Admits one attempt, or says how many seconds to wait.
    pub fn admit(&mut self, email: &str, addr: Option<&str>, now: Instant) -> Result<(), u64> {
        if let Some(a) = addr {
            self.by_addr.take(a, now)?;
        }
        self.by_email.take(&email.to_lowercase(), now)
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
        assert!(l.admit("a@x.y", Some("127.0.0.2"), t0).is_err());
        l.admit("b@x.y", Some("127.0.0.1"), t0).unwrap();
    }
}
