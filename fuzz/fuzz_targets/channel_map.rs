//! Feeds arbitrary bytes to the channel map decoder and validator (PROTOCOL.md 17.2), the code a
//! controller runs on the map of an assembled configuration.
//!
//! Besides "never panics": iterating a checked map yields exactly its channel count, and a map
//! whose sources are all known re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::channel::map::{emit, ChannelMap};

fuzz_target!(|data: &[u8]| {
    let Ok(map) = ChannelMap::new_checked(data) else {
        return;
    };
    let _ = map.validate();
    let channels: Vec<_> = map.channels().collect();
    assert_eq!(channels.len(), map.channel_count());
    let buses: Vec<_> = (0..map.bus_count()).filter_map(|i| map.bus(i)).collect();
    assert_eq!(buses.len(), map.bus_count());
    let mut out = vec![0u8; data.len()];
    if let Ok(n) = emit(&buses, &channels, &mut out) {
        assert_eq!(&out[..n], data);
    }
});
