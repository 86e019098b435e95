//! Feeds arbitrary bytes to the configuration item decoder (`Config::parse_items`,
//! `ConfigItems`), the code every controller runs on a Config message's body (PROTOCOL.md 7.6).
//!
//! Properties checked, besides "never panics":
//! * decoder and validator agree: whatever decodes also passes `Config::validate`, the check the
//!   server applies before it saves a configuration;
//! * `ConfigItems::parse` accepts exactly what `Config::parse_items` accepts;
//! * a decoded configuration re-encodes into `items_len` bytes that fit one datagram and decode
//!   to the same configuration (the canonical form is a fixed point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::message::config::Config;
use tek_proto::message::ConfigItems;
use tek_proto::wire::data::MAX_MESSAGE;

fuzz_target!(|data: &[u8]| {
    let parsed = Config::parse_items(data);
    assert_eq!(parsed.is_ok(), ConfigItems::parse(data).is_ok());
    let Ok(cfg) = parsed else {
        return;
    };
    assert!(cfg.validate().is_ok(), "decoded but invalid: {cfg:?}");
    assert_eq!(ConfigItems::parse(data).unwrap().to_config(), cfg);

    let mut buf = [0u8; 1100];
    let n = cfg.emit_items(&mut buf).expect("fits 1100 bytes");
    assert_eq!(n, cfg.items_len());
    // version u32 and the type byte come in front of the items.
    assert!(
        5 + n <= MAX_MESSAGE,
        "{} bytes of items do not fit a datagram",
        n
    );
    let again = Config::parse_items(&buf[..n]).expect("the canonical encoding decodes");
    assert_eq!(again, cfg);
    let mut buf2 = [0u8; 1100];
    let items = ConfigItems::encode(&cfg, &mut buf2).expect("encodes");
    assert_eq!(items.as_bytes(), &buf[..n]);
});
