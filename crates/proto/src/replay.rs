//! The anti-replay window for one direction of one session, after RFC 6479: a ring of 64-bit
//! blocks, so advancing the window clears whole words instead of shifting bits.
//!
//! It accepts any counter above the highest seen so far, and counters up to [`WINDOW`] below it
//! that have not been seen yet (UDP may reorder). Everything else is a replay, and so are the two
//! counters no sender may use ([`FIRST_UNUSABLE`] and above, PROTOCOL.md 6.3): accepting one
//! would leave every later counter below the window's top, so the session would be dead.
//!
//! Use it as boringtun does: [`ReplayWindow::check`] before the AEAD is opened (cheap rejection
//! of replays), [`ReplayWindow::update`] only after the AEAD accepted the datagram (so a forged
//! datagram can never move the window).

const BLOCK_BITS: u64 = 64;
const BLOCKS: usize = 4;

/// How far below the highest counter seen a late datagram is still accepted.
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;

/// The first counter a sender must never seal with (2^32 - 2, PROTOCOL.md 6.3). A receiver
/// treats it and 2^32 - 1 as replays, whatever the window holds.
pub const FIRST_UNUSABLE: u32 = u32::MAX - 1;

/// A counter was already seen, is too far behind to tell, or is one no sender may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed;

/// Sliding window over 32-bit datagram counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter accepted plus one; 0 before the first.
    next: u64,
    ring: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub const fn new() -> Self {
        ReplayWindow {
            next: 0,
            ring: [0; BLOCKS],
        }
    }

    /// Whether `counter` would be accepted. Changes nothing.
    pub fn check(&self, counter: u32) -> Result<(), Replayed> {
        if counter >= FIRST_UNUSABLE {
            return Err(Replayed);
        }
        let c = u64::from(counter);
        if c >= self.next {
            return Ok(());
        }
        let top_block = (self.next - 1) / BLOCK_BITS;
        if c / BLOCK_BITS + BLOCKS as u64 <= top_block {
            return Err(Replayed);
        }
        if self.ring[Self::slot(c)] & Self::bit(c) != 0 {
            return Err(Replayed);
        }
        Ok(())
    }

    /// Marks `counter` as seen. Call only once the datagram has been authenticated.
    pub fn update(&mut self, counter: u32) -> Result<(), Replayed> {
        self.check(counter)?;
        let c = u64::from(counter);
        if c >= self.next {
            let new_block = c / BLOCK_BITS;
            let first_to_clear = if self.next == 0 {
                0
            } else {
                (self.next - 1) / BLOCK_BITS + 1
            };
            // Clear every block we skip into; at most the whole ring.
            let start = first_to_clear.max(new_block.saturating_sub(BLOCKS as u64 - 1));
            for block in start..=new_block {
                self.ring[(block % BLOCKS as u64) as usize] = 0;
            }
            self.next = c + 1;
        }
        self.ring[Self::slot(c)] |= Self::bit(c);
        Ok(())
    }

    /// The highest counter accepted so far, if any.
    pub fn highest(&self) -> Option<u32> {
        self.next.checked_sub(1).map(|h| h as u32)
    }

    fn slot(c: u64) -> usize {
        ((c / BLOCK_BITS) % BLOCKS as u64) as usize
    }

    fn bit(c: u64) -> u64 {
        1 << (c % BLOCK_BITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn in_order_then_replay() {
        let mut w = ReplayWindow::new();
        for c in 0..1000 {
            assert_eq!(w.update(c), Ok(()));
            assert_eq!(w.update(c), Err(Replayed));
        }
        assert_eq!(w.highest(), Some(999));
    }

    #[test]
    fn late_within_window_once() {
        let mut w = ReplayWindow::new();
        w.update(500).unwrap();
        assert_eq!(w.check(499), Ok(()));
        w.update(499).unwrap();
        assert_eq!(w.update(499), Err(Replayed));
        // The oldest block still in the ring is accepted, anything older is not.
        let oldest_kept = (500 / 64 - 3) * 64;
        assert_eq!(w.update(oldest_kept as u32), Ok(()));
        assert_eq!(w.check(oldest_kept as u32 - 1), Err(Replayed));
        assert!(500 - oldest_kept >= WINDOW - 64);
    }

    #[test]
    fn big_jump_clears_old_bits() {
        let mut w = ReplayWindow::new();
        w.update(3).unwrap();
        w.update(3 + 64 * 4).unwrap();
        // Same slot as 3, new block: must not be seen as a replay.
        assert_eq!(w.check(3 + 64 * 4 - 64 * 4 + 64 * 4 - 1), Ok(()));
        // The highest usable counter (2^32 - 3), then the one below it.
        w.update(u32::MAX - 2).unwrap();
        assert_eq!(w.update(u32::MAX - 2), Err(Replayed));
        assert_eq!(w.check(u32::MAX - 3), Ok(()));
        assert_eq!(w.check(3), Err(Replayed));
    }

    /// 2^32 - 2 and 2^32 - 1 are refused whatever the window holds (PROTOCOL.md 6.3, 6.4), so
    /// an authentic datagram carrying one cannot push the window to the top and kill the session.
    #[test]
    fn unusable_counters_are_replays() {
        for first in [None, Some(0), Some(1000), Some(u32::MAX - 2)] {
            let mut w = ReplayWindow::new();
            if let Some(c) = first {
                w.update(c).unwrap();
            }
            let before = w.clone();
            for c in [u32::MAX - 1, u32::MAX] {
                assert_eq!(w.check(c), Err(Replayed), "counter {c}");
                assert_eq!(w.update(c), Err(Replayed), "counter {c}");
            }
            assert_eq!(w, before, "a refused counter changed the window");
        }
    }

    proptest! {
        /// Against a model that remembers everything: the window never accepts a counter twice,
        /// and accepts every fresh counter within WINDOW of the highest.
        #[test]
        fn never_accepts_twice(seq in proptest::collection::vec(0u32..2000, 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut highest: Option<u32> = None;
            for c in seq {
                let accepted = w.update(c).is_ok();
                if seen.contains(&c) {
                    prop_assert!(!accepted);
                } else if highest.is_none_or(|h| c > h || u64::from(h - c) < WINDOW) {
                    prop_assert!(accepted, "fresh counter {} refused (highest {:?})", c, highest);
                }
                if accepted {
                    seen.insert(c);
                    highest = Some(highest.map_or(c, |h| h.max(c)));
                }
            }
        }
    }
}
