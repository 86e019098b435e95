//! Feeds arbitrary bytes to the wide telemetry decoder (PROTOCOL.md 17.5), the code a server
//! runs on every WideTelemetry message.
//!
//! Besides "never panics": a batch that parses yields exactly `count` records, and re-encoding
//! those records with the writer gives a batch that decodes to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::channel::wide::{WideTelemetry, WideWriter, MAX_CHANNELS};

fuzz_target!(|data: &[u8]| {
    let Ok(t) = WideTelemetry::parse(data) else {
        return;
    };
    let records: Vec<_> = t.records().collect();
    assert_eq!(records.len(), usize::from(t.count()));
    let now = records[0].age_s;
    let mut buf = vec![0u8; data.len().max(64)];
    let mut w = WideWriter::new(&mut buf, t.first_seq(), t.channels(), now).expect("header");
    for r in &records {
        let values: Vec<Option<i32>> = (0..MAX_CHANNELS).map(|c| r.get(c)).collect();
        assert!(
            w.push(now - r.age_s, &values),
            "a decoded record re-encodes"
        );
    }
    let n = w.len();
    let again: Vec<_> = WideTelemetry::parse(&buf[..n])
        .expect("re-encoded")
        .records()
        .collect();
    assert_eq!(again, records);
});
