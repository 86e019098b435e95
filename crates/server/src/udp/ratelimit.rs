//! Token buckets for the handshake rate limits. No clock reads: time comes in as an argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: up to `burst` tokens, refilled continuously at `per_s` tokens per second.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, burst: u32, per_s: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_s).min(f64::from(burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again at `now` (so forgetting it changes nothing).
    pub fn is_full(&self, now: Instant, burst: u32, per_s: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * per_s >= f64::from(burst)
    }
}

/// One bucket per source address. Full buckets are forgotten, which bounds memory by the number
/// of addresses active within one refill time.
#[derive(Debug)]
pub struct IpLimiter {
    buckets: HashMap<IpAddr, TokenBucket>,
    burst: u32,
    per_s: f64,
    last_sweep: Instant,
}

impl IpLimiter {
    /// A limiter allowing `burst` Hellos at once and `per_s` per second per address.
    pub fn new(burst: u32, per_s: u32, now: Instant) -> IpLimiter {
        IpLimiter {
            buckets: HashMap::new(),
            burst,
            per_s: f64::from(per_s),
            last_sweep: now,
        }
    }

    /// Takes a token for `ip`.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_sweep) > Duration::from_secs(10)
            || self.buckets.len() > 100_000
        {
            let (burst, per_s) = (self.burst, self.per_s);
            self.buckets.retain(|_, b| !b.is_full(now, burst, per_s));
            self.last_sweep = now;
        }
        let (burst, per_s) = (self.burst, self.per_s);
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(burst, now))
            .take(now, burst, per_s)
    }

    /// Addresses currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4, t0);
        for _ in 0..4 {
            assert!(b.take(t0, 4, 0.5));
        }
        assert!(!b.take(t0, 4, 0.5));
        assert!(!b.take(t0 + Duration::from_millis(1900), 4, 0.5));
        assert!(b.take(t0 + Duration::from_millis(2000), 4, 0.5));
        assert!(!b.take(t0 + Duration::from_millis(2100), 4, 0.5));
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..4 {
            assert!(b.take(later, 4, 0.5));
        }
        assert!(!b.take(later, 4, 0.5));
    }

    #[test]
    fn per_address_and_forgetting() {
        let t0 = Instant::now();
        let mut l = IpLimiter::new(2, 1, t0);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(l.take(a, t0));
        assert!(l.take(a, t0));
        assert!(!l.take(a, t0));
        assert!(l.take(b, t0), "another address has its own bucket");
        assert_eq!(l.len(), 2);
        let later = t0 + Duration::from_secs(11);
        assert!(l.take(a, later));
        assert_eq!(l.len(), 1, "b's full bucket was forgotten");
    }
}
