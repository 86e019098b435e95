//! Feeds arbitrary text to the server's expression compiler (`tek_server::expr::compile`, what
//! a template's computed channel is written in) and every program it emits to the decompiler.
//!
//! Properties checked, besides "never panics": the first two bytes choose the channel's index
//! and the map's channel count (channels from 4 on are computed), the rest is the text. A
//! program the compiler emits passes the device's own verifier (`tek_proto::channel::expr::
//! verify`) in that scope, and its decompiled text compiles to the same bytes; a refusal has a
//! message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::channel::expr::{verify, Scope};
use tek_server::expr::{compile, decompile};

fuzz_target!(|data: &[u8]| {
    let [index, count, text @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let scope = Scope {
        index: *index % 130,
        count: usize::from(*count % 130),
        is_computed: |c: u8| c >= 4,
    };
    let names = |s: &str| {
        ["Power L1", "Power L2", "Energy"]
            .iter()
            .position(|n| *n == s)
    };
    let resolve = |s: &str| names(s).and_then(|i| u8::try_from(i).ok());
    match compile(text, &scope, &resolve) {
        Ok(program) => {
            assert!(verify(&program, &scope).is_ok(), "{text:?} -> {program:?}");
            let again = decompile(&program, &|_| None).expect("an emitted program decompiles");
            let recompiled = compile(&again, &scope, &resolve).expect("its text compiles");
            assert_eq!(recompiled, program, "{text:?} -> {again:?}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
