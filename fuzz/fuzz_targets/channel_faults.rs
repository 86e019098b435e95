//! Feeds arbitrary bytes to the ChannelFaults decoder (PROTOCOL.md 17.8), which a server runs on
//! every such message.
//!
//! Besides "never panics": a body that parses re-encodes to exactly the same bytes (one encoding
//! per content), through the message layer too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::channel::faults::ChannelFaults;
use tek_proto::channel::ChannelMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = ChannelFaults::parse(data) else {
        return;
    };
    let entries: Vec<_> = f.entries().collect();
    let mut out = vec![0u8; ChannelFaults::buffer_len(entries.len())];
    let n = ChannelFaults::emit(&entries, &mut out).expect("a decoded body re-encodes");
    assert_eq!(&out[..n], data);
    let msg = ChannelMessage::ChannelFaults(f);
    let mut m = vec![0u8; msg.buffer_len()];
    let n = msg.emit(&mut m).expect("emit into buffer_len");
    assert_eq!(ChannelMessage::parse(&m[..n]), Ok(Some(msg)));
});
