//! Feeds arbitrary bytes to the decoders of configurations split over several datagrams
//! (PROTOCOL.md 17.4): the messages of the channel extension (ConfigChunk, ChunkAck,
//! Capabilities, WideTelemetry through `ChannelMessage`), the reassembler and the assembled
//! configuration.
//!
//! The input is cut into messages at 0xFF 0xFF markers and every ConfigChunk among them is fed to
//! one reassembler, so sequences of chunks (mixed, repeated, partial) are explored. Besides
//! "never panics": a reassembler only completes when the digest matches, and every message that
//! decodes re-encodes to bytes that decode to it again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::channel::split::{digest, digest_key, Assembled, Progress, Reassembler};
use tek_proto::channel::ChannelMessage;
use tek_proto::crypto::Key;

fuzz_target!(|data: &[u8]| {
    let k = digest_key(&Key([0x42; 16]));
    let mut r = Reassembler::<4096>::new();
    let _ = Assembled::parse(data);
    for part in data.split(|&b| b == 0xFF).filter(|p| !p.is_empty()) {
        let Ok(Some(msg)) = ChannelMessage::parse(part) else {
            continue;
        };
        let mut out = vec![0u8; msg.buffer_len()];
        let n = msg.emit(&mut out).expect("emit into buffer_len");
        assert_eq!(ChannelMessage::parse(&out[..n]), Ok(Some(msg)));
        if let ChannelMessage::ConfigChunk(c) = msg {
            if let Progress::Complete(version, bytes) = r.push(&k, &c) {
                assert_eq!(digest(&k, version, bytes), c.digest);
                let _ = Assembled::parse(bytes);
            }
        }
    }
});
