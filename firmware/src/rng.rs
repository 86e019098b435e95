//! Random numbers without a hardware generator: a deterministic random bit generator keyed by a
//! per-boot secret, stirred with timing jitter.
//!
//! The LM3S6965 has no true random number generator. What the protocol needs random numbers for
//! is (a) the device nonce in each Hello, which must never repeat under one device key, and
//! (b) the source port of each attempt and smoltcp's DHCP transaction ids and DNS query ids, which
//! should be hard to guess off-path. Both are met by a generator whose seed is derived from the
//! device key and the boot counter (which flash makes unique per boot, see the protocol notes):
//! `seed = KDF(K, "tek rng", boot || MAC address)`. Every output block is
//! `KDF(seed, "tek rng out", counter || pool)`, where `pool` accumulates the SysTick values at
//! which frames arrive — unpredictable to anyone not on the wire — so even a device whose boot
//! counter could not be written still draws different numbers.
//!
//! The KDF is AES-CMAC (tek-proto's): a PRF under a secret key, so outputs are unpredictable
//! without the key and distinct for distinct counters.

use tek_proto::crypto::{kdf, Key};

/// The generator.
pub struct Rng {
    seed: Key,
    counter: u64,
    pool: u32,
    block: [u8; 16],
    used: usize,
}

impl Rng {
    /// A generator seeded from the device key, the boot number and the MAC address.
    pub fn new(device_key: &Key, boot: u32, mac: [u8; 6]) -> Rng {
        let mut ctx = [0u8; 10];
        ctx[..4].copy_from_slice(&boot.to_be_bytes());
        ctx[4..].copy_from_slice(&mac);
        Rng {
            seed: kdf(device_key, b"tek rng", &ctx),
            counter: 0,
            pool: 0,
            block: [0; 16],
            used: 16,
        }
    }

    /// Stirs in an observation that an attacker cannot easily know (a timer value at an event).
    pub fn mix(&mut self, value: u32) {
        self.pool = self.pool.rotate_left(7) ^ value;
    }

    fn refill(&mut self) {
        let mut ctx = [0u8; 12];
        ctx[..8].copy_from_slice(&self.counter.to_be_bytes());
        ctx[8..].copy_from_slice(&self.pool.to_be_bytes());
        self.counter += 1;
        self.block = kdf(&self.seed, b"tek rng out", &ctx).0;
        self.used = 0;
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == self.block.len() {
                self.refill();
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }

    /// A random `u32`.
    pub fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    /// A random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

impl tek_controller::Entropy for Rng {
    fn next_u32(&mut self) -> u32 {
        Rng::next_u32(self)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        Rng::fill(self, buf)
    }
}
