//! Feeds arbitrary bytes to the expression verifier and evaluator (PROTOCOL.md 17.3).
//!
//! Besides "never panics, never loops": the first byte picks the channel the program belongs
//! to; a program that verifies evaluates without trouble, and the evaluator also runs on
//! programs that did not verify (it must give "no value" rather than fault).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_proto::channel::expr::{eval, verify, Env, Func, Scope, MAX_STACK};

struct Fixed;

impl Env for Fixed {
    fn value(&self, ch: u8) -> Option<i32> {
        (ch % 5 != 4).then(|| i32::from(ch).wrapping_mul(1_000_003) - 7)
    }
    fn interval(&self, f: Func, ch: u8) -> Option<i32> {
        self.value(ch).map(|v| match f {
            Func::Delta => v / 3,
            Func::Rate => v.wrapping_mul(60),
            Func::Mean | Func::Min | Func::Max => v,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&index, code)) = data.split_first() else {
        return;
    };
    let scope = Scope {
        index: index % 16,
        count: 16,
        is_computed: |c: u8| c % 2 == 1,
    };
    let _ = eval(code, &Fixed);
    if let Ok(p) = verify(code, &scope) {
        assert!(!code.is_empty() && code.len() <= 128);
        let _ = p.eval(&Fixed);
    }
    let _ = MAX_STACK;
});
