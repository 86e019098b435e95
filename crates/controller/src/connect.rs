//! Finding a server: the list walk, the handshake attempt and the back-off.
//!
//! The device walks its server list in order. For each server it resolves the name (unless it is
//! a dotted IPv4 address), then makes one *attempt*: a fresh random source port in 28672..=32767
//! and up to three Hellos, 2 s apart, each with a new hello counter. If no Welcome arrives 2 s
//! after the third, or DNS fails, the server is down and the walk moves to the next one. When
//! every server of the list failed in one pass, the device waits 30 s (doubling each failed pass
//! up to 600 s, ±25 % jitter) and starts again from the top of the list — forever.

use crate::{Endpoint, Entropy, Iface};
use tek_proto::crypto::DeviceKeys;
use tek_proto::handshake::Initiator;
use tek_proto::session::Session;

/// Time to wait for a Welcome before the next Hello (or giving up after the last).
pub const HELLO_TIMEOUT_MS: u64 = 2_000;
/// Hellos per attempt.
pub const HELLOS_PER_ATTEMPT: u8 = 3;
/// How long a DNS query may take before the server counts as down.
pub const DNS_TIMEOUT_MS: u64 = 10_000;
/// Back-off after the first failed pass over the list.
pub const BACKOFF_BASE_MS: u64 = 30_000;
/// Longest back-off.
pub const BACKOFF_MAX_MS: u64 = 600_000;

/// One entry of the server list, split into host and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRef<'a> {
    /// Host name or dotted address.
    pub host: &'a str,
    /// UDP port (8844 unless the entry names one).
    pub port: u16,
    /// The address, when the host is a dotted IPv4 address (no DNS needed).
    pub literal: Option<[u8; 4]>,
}

/// Splits `host[:port]`. Entries were validated when the configuration was accepted; an entry
/// whose port does not parse falls back to the default port.
pub fn parse_server(entry: &str) -> ServerRef<'_> {
    let (host, port) = match entry.split_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(tek_proto::SERVER_PORT)),
        None => (entry, tek_proto::SERVER_PORT),
    };
    ServerRef {
        host,
        port,
        literal: parse_ipv4(host),
    }
}

/// Parses a dotted-quad IPv4 address.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for byte in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Position in the list walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Walk {
    /// Server being tried.
    pub index: u8,
    /// Servers that failed in this pass.
    pub tried: u8,
    /// Failed passes in a row (drives the back-off).
    pub pass: u8,
}

/// What to do after a server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try this server next.
    Server(u8),
    /// The whole list failed: wait until this time, then start from the top.
    BackoffUntil(u64),
}

impl Walk {
    /// A walk starting at `index`.
    pub fn from(index: u8) -> Walk {
        Walk {
            index,
            tried: 0,
            pass: 0,
        }
    }

    /// The current server is down.
    pub fn server_down(&mut self, count: usize, now: u64, rng: &mut dyn Entropy) -> Next {
        self.tried = self.tried.saturating_add(1);
        if usize::from(self.tried) >= count {
            let delay = backoff_ms(self.pass, rng);
            self.pass = self.pass.saturating_add(1);
            self.tried = 0;
            self.index = 0;
            Next::BackoffUntil(now + delay)
        } else {
            self.index = ((usize::from(self.index) + 1) % count.max(1)) as u8;
            Next::Server(self.index)
        }
    }

    /// A server accepted a session: the next outage starts with the shortest back-off.
    pub fn connected(&mut self) {
        self.tried = 0;
        self.pass = 0;
    }
}

/// The back-off after `pass` failed passes: 30 s doubling to 600 s, ±25 % jitter.
pub fn backoff_ms(pass: u8, rng: &mut dyn Entropy) -> u64 {
    // `checked_shl` only checks the shift amount, not the value: from pass 59 on the bits of
    // 30 000 shift out and the back-off became 0 (a Hello storm after ~10 hours offline).
    // Past pass 5 the maximum applies anyway.
    let base = BACKOFF_BASE_MS
        .checked_shl(u32::from(pass.min(16)))
        .unwrap_or(BACKOFF_MAX_MS)
        .min(BACKOFF_MAX_MS);
    let quarter = base / 4;
    // Uniform in [base - quarter, base + quarter].
    let jitter = u64::from(rng.next_u32()) % (2 * quarter + 1);
    base - quarter + jitter
}

/// One handshake attempt with one server from one source port.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Interface used.
    pub iface: Iface,
    /// Index of the server in the list.
    pub server: u8,
    /// The server's address.
    pub to: Endpoint,
    /// Source port (0 until the first Hello picks one).
    pub port: u16,
    /// Hellos sent in this attempt; a Welcome may answer any of them.
    pub hellos: [Option<Initiator>; HELLOS_PER_ATTEMPT as usize],
    /// Number of Hellos sent.
    pub sent: u8,
    /// When the next Hello is due, or the attempt fails.
    pub next_at: u64,
}

impl Attempt {
    /// An attempt whose first Hello is due at once.
    pub fn new(iface: Iface, server: u8, to: Endpoint, now: u64) -> Attempt {
        Attempt {
            iface,
            server,
            to,
            port: 0,
            hellos: [None, None, None],
            sent: 0,
            next_at: now,
        }
    }

    /// Whether a Hello should be sent now.
    pub fn hello_due(&self, now: u64) -> bool {
        self.sent < HELLOS_PER_ATTEMPT && now >= self.next_at
    }

    /// Whether the attempt has failed (no Welcome 2 s after the last Hello).
    pub fn failed(&self, now: u64) -> bool {
        self.sent >= HELLOS_PER_ATTEMPT && now >= self.next_at
    }

    /// Writes the next Hello into `out` (picking the source port on the first one). Returns its
    /// length.
    #[allow(clippy::too_many_arguments)]
    pub fn hello(
        &mut self,
        keys: &DeviceKeys,
        device_id: u32,
        counter: u64,
        now: u64,
        rng: &mut dyn Entropy,
        out: &mut [u8],
    ) -> Option<usize> {
        if self.port == 0 {
            self.port = tek_proto::device_port_from_random(rng.next_u32() as u16);
        }
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce);
        let (init, n) = Initiator::start(keys, device_id, counter, nonce, out)?;
        self.hellos[usize::from(self.sent)] = Some(init);
        self.sent += 1;
        self.next_at = now + HELLO_TIMEOUT_MS;
        Some(n)
    }

    /// Checks a datagram against every Hello of this attempt whose counter is above `above`.
    /// Returns the session, the server clock and the hello counter it answers.
    pub fn finish(
        &self,
        keys: &DeviceKeys,
        datagram: &[u8],
        above: u64,
    ) -> Option<(Session, u32, u64)> {
        // Newest first: the server keeps only the session of the highest counter it accepted.
        self.hellos.iter().rev().flatten().find_map(|init| {
            let counter = init.hello().counter;
            if counter <= above {
                return None;
            }
            init.finish(keys, datagram)
                .ok()
                .map(|(s, time)| (s, time, counter))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XorShift;

    #[test]
    fn server_entries() {
        assert_eq!(
            parse_server("a.example"),
            ServerRef {
                host: "a.example",
                port: 8844,
                literal: None
            }
        );
        assert_eq!(
            parse_server("127.0.0.1:9000"),
            ServerRef {
                host: "127.0.0.1",
                port: 9000,
                literal: Some([127, 0, 0, 1])
            }
        );
        assert_eq!(parse_ipv4("1.2.3"), None);
        assert_eq!(parse_ipv4("1.2.3.4.5"), None);
        assert_eq!(parse_ipv4("1.2.3.256"), None);
        assert_eq!(parse_ipv4("10.0.0.9"), Some([10, 0, 0, 9]));
    }

    #[test]
    fn walk_wraps_and_backs_off() {
        let mut rng = XorShift::new(1);
        let mut w = Walk::from(0);
        assert_eq!(w.server_down(3, 0, &mut rng), Next::Server(1));
        assert_eq!(w.server_down(3, 0, &mut rng), Next::Server(2));
        let Next::BackoffUntil(t) = w.server_down(3, 1000, &mut rng) else {
            panic!("expected back-off")
        };
        assert!((1000 + 22_500..=1000 + 37_500).contains(&t), "{t}");
        assert_eq!(w.index, 0);
        // Walk that started in the middle of the list wraps to the start.
        let mut w = Walk::from(2);
        assert_eq!(w.server_down(3, 0, &mut rng), Next::Server(0));
        assert_eq!(w.server_down(3, 0, &mut rng), Next::Server(1));
        assert!(matches!(
            w.server_down(3, 0, &mut rng),
            Next::BackoffUntil(_)
        ));
    }

    #[test]
    fn backoff_doubles_to_cap_with_jitter() {
        let mut rng = XorShift::new(7);
        for (pass, base) in [
            (0u8, 30_000u64),
            (1, 60_000),
            (4, 480_000),
            (5, 600_000),
            (40, 600_000),
            (59, 600_000),
            (61, 600_000),
            (255, 600_000),
        ] {
            let mut lo = u64::MAX;
            let mut hi = 0;
            for _ in 0..2000 {
                let d = backoff_ms(pass, &mut rng);
                lo = lo.min(d);
                hi = hi.max(d);
            }
            assert!(
                lo >= base * 3 / 4 && hi <= base * 5 / 4,
                "{pass}: {lo}..{hi}"
            );
            assert!(hi - lo > base / 3, "jitter spreads: {lo}..{hi}");
        }
    }
}
