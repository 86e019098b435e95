//! Feeds arbitrary bytes to the decoder of records of earlier boots (PROTOCOL.md 18: Backlog,
//! Accepts, BacklogAck), the code a server runs on every Backlog and a device on every answer.
//!
//! Besides "never panics": a Backlog that parses names a boot above 0 and holds as many records
//! as its count says, and what parses re-emits to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::backlog::{BacklogMessage, Records};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(m)) = BacklogMessage::parse(data) else {
        return;
    };
    if let BacklogMessage::Backlog(b) = &m {
        assert!(b.boot > 0);
        let (count, records) = match b.records {
            Records::Telemetry(t) => (usize::from(t.count()), t.records().count()),
            Records::Wide(w) => (usize::from(w.count()), w.records().count()),
        };
        assert_eq!(count, records);
    }
    let mut out = vec![0u8; m.buffer_len()];
    let n = m.emit(&mut out).expect("emits");
    assert_eq!(&out[..n], data, "re-emits the same bytes");
});
