//! Channel roles (configuration item 16, PROTOCOL.md 17.2): which channel of the map the
//! thermostat, the schedule and the interlocks read, and which relay outputs they switch.
//!
//! ```text
//! tag 16, length 6:  water u8, air u8, power u8, energy u8   channel index, 0xFF = none
//!                    pump u8, heater u8                      relay output 0..=7, distinct
//! ```
//!
//! Absent, the roles are those of the pool board ([`Roles::POOL`]). Parsing never panics.

use crate::message::MessageError;

/// The item's tag.
pub const TAG: u8 = 16;
/// The item's value length.
pub const LEN: usize = 6;
/// "No channel has this role".
pub const NONE: u8 = 0xFF;

/// Which channel plays which part, and which relay output is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roles {
    /// Water temperature (0.01 degC), the thermostat's input.
    pub water: Option<u8>,
    /// Air temperature (0.01 degC), the freeze protection's input.
    pub air: Option<u8>,
    /// Electric power (W).
    pub power: Option<u8>,
    /// Energy meter (Wh).
    pub energy: Option<u8>,
    /// The relay output of the pump, 0..=7.
    pub pump: u8,
    /// The relay output of the heater, 0..=7.
    pub heater: u8,
}

/// Why a roles item is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolesError {
    /// Not 6 bytes, or the tag twice.
    Length,
    /// A channel index at or past the map's channel count (the index).
    Channel(u8),
    /// A relay output above 7, or pump and heater on the same output.
    Relay,
}

impl core::fmt::Display for RolesError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RolesError::Length => f.write_str("channel roles: not one item of 6 bytes"),
            RolesError::Channel(c) => write!(f, "channel roles: no channel {c} in the map"),
            RolesError::Relay => f.write_str("channel roles: relay outputs 0..=7, distinct"),
        }
    }
}

impl From<RolesError> for MessageError {
    fn from(e: RolesError) -> MessageError {
        match e {
            RolesError::Length => MessageError::Truncated,
            _ => MessageError::Range,
        }
    }
}

impl Roles {
    /// The pool board's roles: channels 0 power, 1 energy, 2 water, 3 air; relay 0 the pump,
    /// relay 1 the heater.
    pub const POOL: Roles = Roles {
        water: Some(2),
        air: Some(3),
        power: Some(0),
        energy: Some(1),
        pump: 0,
        heater: 1,
    };

    /// Decodes an item value and checks it against a map of `channels` channels.
    pub fn parse(value: &[u8], channels: usize) -> Result<Roles, RolesError> {
        let v: &[u8; LEN] = value.try_into().map_err(|_| RolesError::Length)?;
        let ch = |c: u8| match c {
            NONE => Ok(None),
            c if usize::from(c) < channels => Ok(Some(c)),
            c => Err(RolesError::Channel(c)),
        };
        if v[4] > 7 || v[5] > 7 || v[4] == v[5] {
            return Err(RolesError::Relay);
        }
        Ok(Roles {
            water: ch(v[0])?,
            air: ch(v[1])?,
            power: ch(v[2])?,
            energy: ch(v[3])?,
            pump: v[4],
            heater: v[5],
        })
    }

    /// Finds the roles item in a configuration's item list (section 7.6 framing) and decodes it;
    /// [`Roles::POOL`] without one. A second roles item or a cut item list is refused.
    pub fn from_items(items: &[u8], channels: usize) -> Result<Roles, RolesError> {
        let mut found = None;
        let mut at = 0;
        while at < items.len() {
            let (tag, len) = match items.get(at..at + 2) {
                Some(&[t, l]) => (t, usize::from(l)),
                _ => return Err(RolesError::Length),
            };
            let value = items.get(at + 2..at + 2 + len).ok_or(RolesError::Length)?;
            if tag == TAG {
                if found.is_some() {
                    return Err(RolesError::Length);
                }
                found = Some(Roles::parse(value, channels)?);
            }
            at += 2 + len;
        }
        Ok(found.unwrap_or(Roles::POOL))
    }

    /// The item (tag, length, value).
    pub fn emit(&self) -> [u8; 2 + LEN] {
        let c = |c: Option<u8>| c.unwrap_or(NONE);
        [
            TAG,
            LEN as u8,
            c(self.water),
            c(self.air),
            c(self.power),
            c(self.energy),
            self.pump,
            self.heater,
        ]
    }

    /// The relay output of the thermostat's relay `relay` (0 pump, 1 heater, others as they
    /// are, except that an auxiliary relay whose number a role took swaps with it).
    pub fn output(&self, relay: u8) -> u8 {
        match relay {
            0 => self.pump,
            1 => self.heater,
            r if r == self.pump => 0,
            r if r == self.heater => 1,
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics_and_what_parses_re_emits(
            items in proptest::collection::vec(any::<u8>(), 0..64),
            channels in 0usize..130,
        ) {
            if let Ok(r) = Roles::from_items(&items, channels) {
                // Without an item the pool's roles, which name channels 0..=3 whatever the map.
                prop_assert_eq!(Roles::parse(&r.emit()[2..], channels.max(4)), Ok(r));
            }
        }
    }

    #[test]
    fn item_round_trip_and_checks() {
        let r = Roles {
            water: Some(7),
            air: None,
            power: Some(0),
            energy: None,
            pump: 3,
            heater: 2,
        };
        let item = r.emit();
        assert_eq!(item, [16, 6, 7, 0xFF, 0, 0xFF, 3, 2]);
        assert_eq!(Roles::parse(&item[2..], 8), Ok(r));
        assert_eq!(Roles::parse(&item[2..], 7), Err(RolesError::Channel(7)));
        assert_eq!(Roles::parse(&item[2..7], 8), Err(RolesError::Length));
        assert_eq!(Roles::parse(&[0, 0, 0, 0, 2, 2], 8), Err(RolesError::Relay));
        assert_eq!(Roles::parse(&[0, 0, 0, 0, 8, 2], 8), Err(RolesError::Relay));
        // In an item list, among other items; absent: the pool's.
        let mut items = std::vec![1, 2, 0, 120];
        assert_eq!(Roles::from_items(&items, 8), Ok(Roles::POOL));
        items.extend_from_slice(&item);
        assert_eq!(Roles::from_items(&items, 8), Ok(r));
        items.extend_from_slice(&item);
        assert_eq!(Roles::from_items(&items, 8), Err(RolesError::Length));
        assert_eq!(Roles::from_items(&[1, 2, 0], 8), Err(RolesError::Length));
        // Found by the fuzzer: a channel past 127 is valid in a map that long, and re-emits.
        let long = Roles::from_items(&[16, 6, 6, 134, 6, 0, 0, 7], 149).unwrap();
        assert_eq!((long.air, long.heater), (Some(134), 7));
        assert_eq!(Roles::parse(&long.emit()[2..], 149), Ok(long));
        // Outputs: pump and heater where the roles say, the relays they displace swapped in.
        assert_eq!((r.output(0), r.output(1)), (3, 2));
        assert_eq!((r.output(3), r.output(2), r.output(5)), (0, 1, 5));
        assert_eq!(
            (0..8)
                .map(|i| Roles::POOL.output(i))
                .collect::<std::vec::Vec<_>>(),
            (0..8).collect::<std::vec::Vec<_>>()
        );
    }
}
