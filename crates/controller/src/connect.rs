//! Finding a server: the list walk, the handshake attempt and the back-off.
//!
//! The device walks its server list in order. For each server it resolves the name (unless it is
//! a dotted IPv4 address), then makes one *attempt*: a fresh random source port in 28672..=32767
//! and up to three Hellos, 2 s apart, each with a new hello counter. If no Welcome arrives 2 s
//! after the third, or DNS fails, the server is down and the walk moves to the next one. When
//! every server of the list failed in one pass, the device waits 30 s (doubling each failed pass
//! up to 600 s, ±25 % jitter) and starts again from the top of the list — forever.
//!
//! [`Connection`] is this part of the controller: where the walk stands ([`Conn`], [`Walk`])
//! and its small poll ([`Connection::poll`]); [`Hellos`] numbers and writes the Hellos of every
//! attempt (the walk's and the Ethernet probe's).

use crate::attempt::Attempt;
use crate::effects::Effects;
use crate::session::Up;
use crate::Stats;
use crate::{Endpoint, Entropy, Iface};
use heapless::String;
use tek_proto::crypto::DeviceKeys;
use tek_proto::handshake::hello_counter;
use tek_proto::message::config::MAX_TEXT;
use tek_proto::session::Session;

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

/// The server list in use: the configuration's, or the factory list while it names none.
#[derive(Debug, Clone, Copy)]
pub struct Servers<'a>(pub &'a [String<MAX_TEXT>]);

impl<'a> Servers<'a> {
    /// The configured list, or `factory` if that is empty.
    pub fn pick(configured: &'a [String<MAX_TEXT>], factory: &'a [String<MAX_TEXT>]) -> Self {
        Servers(if configured.is_empty() {
            factory
        } else {
            configured
        })
    }

    /// Entry `i`, as written.
    pub fn entry(self, i: u8) -> Option<&'a str> {
        self.0.get(usize::from(i)).map(|s| s.as_str())
    }

    /// Entry `i`, split.
    pub fn target(self, i: u8) -> Option<ServerRef<'a>> {
        self.entry(i).map(parse_server)
    }

    /// The port of entry `i` (the default port if there is none).
    pub fn port(self, i: u8) -> u16 {
        self.target(i).map_or(tek_proto::SERVER_PORT, |s| s.port)
    }

    /// How many entries.
    pub fn len(self) -> usize {
        self.0.len()
    }
}

/// The first step towards server `server` over `iface`: a handshake attempt at once for a
/// literal address (`Ok`), or else a DNS query, queued (`Err((token, deadline))`).
#[inline(always)]
pub fn first_step(
    iface: Iface,
    server: u8,
    target: ServerRef<'_>,
    now: u64,
    effects: &mut Effects,
) -> Result<Attempt, (u16, u64)> {
    match target.literal {
        Some(addr) => Ok(Attempt::new(
            iface,
            server,
            Endpoint {
                addr,
                port: target.port,
            },
            now,
        )),
        None => Err((effects.resolve(iface, server), now + DNS_TIMEOUT_MS)),
    }
}

/// Where the walk stands. `repr(u8)`: an explicit tag, 0 for `Offline`, so a blank controller
/// is all zero bytes (without it the compiler stores `Offline` as a niche value, 2, in
/// `Attempt`'s interface field). The session is held in place, not boxed: a device has no heap,
/// and only one `Conn` exists.
#[derive(Debug, Clone)]
#[repr(u8)]
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    /// Waiting for the interface in use to be ready.
    Offline,
    /// Resolving a server name.
    Resolving {
        /// Server index.
        server: u8,
        /// DNS query token.
        token: u16,
        /// Give up at.
        deadline: u64,
    },
    /// Handshake attempt.
    Hello(Attempt),
    /// Whole list failed; waiting.
    Backoff {
        /// Until.
        until: u64,
    },
    /// Established session.
    Up(Up),
}

/// The connection part of the controller: the server walk and the session it found.
#[derive(Debug)]
pub struct Connection {
    /// Where the walk stands.
    pub conn: Conn,
    /// Position in the list.
    pub walk: Walk,
    /// The server list changed: walk the new one from the top once the ConfigAck went out on
    /// the old session.
    pub restart_pending: bool,
}

impl Connection {
    /// The all-zero placeholder of `Controller::blank`.
    pub const BLANK: Connection = Connection {
        conn: Conn::Offline,
        walk: Walk {
            index: 0,
            tried: 0,
            pass: 0,
        },
        restart_pending: false,
    };

    /// Power-up: offline, at the top of the list.
    pub fn start(&mut self) {
        let Connection {
            conn,
            walk,
            restart_pending,
        } = self;
        *conn = Conn::Offline;
        *walk = Walk::default();
        *restart_pending = false;
    }

    /// The session, if one is up.
    pub fn up(&mut self) -> Option<&mut Up> {
        match &mut self.conn {
            Conn::Up(up) => Some(up),
            _ => None,
        }
    }

    /// Whether a session is up.
    pub fn is_up(&self) -> bool {
        matches!(self.conn, Conn::Up(_))
    }

    /// Walk the list again from `server` once the interface is ready.
    pub fn restart_at(&mut self, server: u8) {
        self.walk = Walk::from(server);
        self.conn = Conn::Offline;
    }

    /// `iface` went down (`active`: the one in use): whatever used it starts again from its
    /// server.
    pub fn lost(&mut self, iface: Iface, active: Iface) {
        let on_iface = match &self.conn {
            Conn::Up(up) => (up.iface == iface).then_some(up.server),
            Conn::Hello(a) => (a.iface == iface).then_some(a.server),
            Conn::Resolving { server, .. } => (iface == active).then_some(*server),
            _ => None,
        };
        if let Some(server) = on_iface {
            self.restart_at(server);
        }
    }

    /// A DNS answer; returns whether it was the walk's (`addr` `None`: not resolved).
    pub fn dns_answer(
        &mut self,
        now: u64,
        token: u16,
        addr: Option<[u8; 4]>,
        active: Iface,
        servers: Servers<'_>,
    ) -> bool {
        let Conn::Resolving {
            server,
            token: t,
            deadline,
        } = &mut self.conn
        else {
            return false;
        };
        if *t != token {
            return false;
        }
        let server = *server;
        match addr {
            Some(addr) => {
                let port = servers.port(server);
                self.conn = Conn::Hello(Attempt::new(active, server, Endpoint { addr, port }, now));
            }
            // Counted as down at the next poll (which has the randomness for back-off).
            None => *deadline = now,
        }
        true
    }

    /// The walk's attempt, if a Hello of it is due.
    pub fn hello_due(&mut self, now: u64) -> Option<&mut Attempt> {
        match &mut self.conn {
            Conn::Hello(a) if a.hello_due(now) => Some(a),
            _ => None,
        }
    }

    /// Advances the walk to `now` over `active` (`ready`: it can send).
    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &mut self,
        now: u64,
        active: Iface,
        ready: bool,
        servers: Servers<'_>,
        effects: &mut Effects,
        stats: &mut Stats,
        rng: &mut dyn Entropy,
    ) {
        if !ready {
            if !matches!(self.conn, Conn::Offline | Conn::Backoff { .. }) {
                self.lost(active, active);
            }
            return;
        }
        let step = Step {
            active,
            servers,
            now,
        };
        match &self.conn {
            Conn::Offline => self.start_attempt(&step, self.walk.index, effects),
            Conn::Resolving { deadline, .. } if now >= *deadline => {
                self.server_down(&step, effects, stats, rng)
            }
            Conn::Hello(a) if a.failed(now) => self.server_down(&step, effects, stats, rng),
            Conn::Backoff { until } if now >= *until => {
                self.walk.tried = 0;
                self.start_attempt(&step, 0, effects);
            }
            Conn::Up(up) if up.dead(now) => {
                stats.dead_servers += 1;
                self.walk = Walk::from(up.server);
                self.server_down(&step, effects, stats, rng);
            }
            Conn::Up(up) if up.rekey_due(now) => {
                let server = up.server;
                self.walk = Walk::from(server);
                self.start_attempt(&step, server, effects);
            }
            _ => {}
        }
    }

    fn start_attempt(&mut self, step: &Step<'_>, server: u8, effects: &mut Effects) {
        let Some(s) = step.servers.target(server) else {
            // No server configured at all: nothing to walk; look again later.
            self.conn = Conn::Backoff {
                until: step.now + BACKOFF_MAX_MS,
            };
            return;
        };
        self.walk.index = server;
        self.conn = match first_step(step.active, server, s, step.now, effects) {
            Ok(a) => Conn::Hello(a),
            Err((token, deadline)) => Conn::Resolving {
                server,
                token,
                deadline,
            },
        };
    }

    fn server_down(
        &mut self,
        step: &Step<'_>,
        effects: &mut Effects,
        stats: &mut Stats,
        rng: &mut dyn Entropy,
    ) {
        match self.walk.server_down(step.servers.len(), step.now, rng) {
            Next::Server(i) => self.start_attempt(step, i, effects),
            Next::BackoffUntil(until) => {
                stats.failed_passes += 1;
                self.conn = Conn::Backoff { until };
            }
        }
    }

    /// A server accepted attempt `a`: the session is up.
    pub fn established(
        &mut self,
        now: u64,
        a: Attempt,
        session: Session,
        counter: u64,
        stats: &mut Stats,
    ) {
        stats.sessions += 1;
        self.walk.connected();
        self.walk.index = a.server;
        self.conn = Conn::Up(Up::new(a, session, counter, now));
    }

    /// When [`poll`](Self::poll) has something to do before a session is up (for a session,
    /// see `Up::poll_at`).
    pub fn poll_at(&self) -> u64 {
        match &self.conn {
            Conn::Offline | Conn::Up(_) => u64::MAX,
            Conn::Resolving { deadline, .. } => *deadline,
            Conn::Hello(a) => a.next_at,
            Conn::Backoff { until } => *until,
        }
    }

    /// The local port the walk's attempt or session receives on.
    pub fn port(&self) -> Option<(Iface, u16)> {
        match &self.conn {
            Conn::Hello(a) if a.port != 0 => Some((a.iface, a.port)),
            Conn::Up(up) => Some((up.iface, up.port)),
            _ => None,
        }
    }

    /// The server in use, or being tried.
    pub fn server_index(&self) -> u8 {
        match &self.conn {
            Conn::Up(up) => up.server,
            _ => self.walk.index,
        }
    }
}

/// What one step of the walk needs to know.
struct Step<'a> {
    active: Iface,
    servers: Servers<'a>,
    now: u64,
}

/// The device's identity and hello counter: writes the Hellos of every attempt.
#[derive(Debug)]
pub struct Hellos {
    /// The device id.
    pub device_id: u32,
    /// The device's keys.
    pub keys: DeviceKeys,
    /// The boot counter of this boot (the hello counter's high half).
    pub boot: u32,
    /// Hellos of this boot so far (the low half).
    pub attempts: u32,
}

impl Hellos {
    /// The all-zero placeholder of `Controller::blank`.
    pub const BLANK: Hellos = Hellos {
        device_id: 0,
        keys: DeviceKeys::PLACEHOLDER,
        boot: 0,
        attempts: 0,
    };

    /// Power-up as device `device_id` with `key`, boot number `boot`.
    pub fn start(&mut self, device_id: u32, key: [u8; 16], boot: u32) {
        let Hellos {
            device_id: id,
            keys,
            boot: b,
            attempts,
        } = self;
        *id = device_id;
        *keys = DeviceKeys::new(tek_proto::crypto::Key(key));
        *b = boot;
        *attempts = 0;
    }

    /// Writes the next Hello of `a` into `out`, with the next hello counter. Returns what to
    /// send: (interface, source port, destination, length).
    pub fn send(
        &mut self,
        a: &mut Attempt,
        now: u64,
        rng: &mut dyn Entropy,
        stats: &mut Stats,
        out: &mut [u8],
    ) -> Option<(Iface, u16, Endpoint, usize)> {
        let counter = hello_counter(self.boot, self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        let n = a.hello(&self.keys, self.device_id, counter, now, rng, out)?;
        stats.hellos += 1;
        Some((a.iface, a.port, a.to, n))
    }
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
