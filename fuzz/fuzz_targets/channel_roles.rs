//! Feeds arbitrary item lists to the channel roles decoder (configuration item 16, PROTOCOL.md
//! 17.2), which a device runs on every split configuration it assembles.
//!
//! The first input byte is the map's channel count, the rest the item list. Besides "never
//! panics": roles that decode name only channels below the count (or are the pool's, without
//! an item) and distinct relay outputs 0..=7, and their item re-encodes to the same roles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::channel::roles::Roles;

fuzz_target!(|data: &[u8]| {
    let Some((&channels, items)) = data.split_first() else {
        return;
    };
    let channels = usize::from(channels);
    let Ok(r) = Roles::from_items(items, channels) else {
        return;
    };
    for c in [r.water, r.air, r.power, r.energy].into_iter().flatten() {
        assert!(usize::from(c) < channels || r == Roles::POOL);
    }
    assert!(r.pump <= 7 && r.heater <= 7 && r.pump != r.heater);
    // The pool's roles (no item) name channels 0..=3 whatever the map's length.
    assert_eq!(Roles::parse(&r.emit()[2..], channels.max(4)), Ok(r));
});
