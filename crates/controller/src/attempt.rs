//! One handshake attempt: Hellos to one server from one random source port, and the Welcome
//! that answers any of them (PROTOCOL.md section 5). Used by the server walk
//! ([`crate::connect`]), the transport and the session it becomes ([`crate::session::Up`]).

use crate::{Endpoint, Entropy, Iface};
use tek_proto::crypto::DeviceKeys;
use tek_proto::handshake::Initiator;
use tek_proto::session::Session;

/// Time to wait for a Welcome before the next Hello (or giving up after the last).
pub const HELLO_TIMEOUT_MS: u64 = 2_000;
/// Hellos per attempt.
pub const HELLOS_PER_ATTEMPT: u8 = 3;

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
