//! The relay outputs by number: the bits of the relay bitmap.

/// Number of relays (bits of the relay bitmap).
pub const RELAYS: usize = 8;
/// The pump relay.
pub const PUMP: u8 = 0;
/// The heater relay.
pub const HEATER: u8 = 1;
