//! The console: lines on the host's stdout through semihosting, each stamped with the uptime.
//!
//! The QEMU end-to-end test reads these lines, so their wording is part of its contract (see
//! README.md, "Console lines the tests rely on").

/// Prints one line prefixed with `[seconds.millis]` of uptime.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        let ms = $crate::clock::now_ms();
        cortex_m_semihosting::hprintln!(
            "[{:>6}.{:03}] {}",
            ms / 1000,
            ms % 1000,
            format_args!($($arg)*)
        );
    }};
}

/// An optional value on the console: the value, or `none`.
pub(crate) struct Opt<T>(pub(crate) Option<T>);
impl<T: core::fmt::Display> core::fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}
