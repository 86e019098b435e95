//! The server's clock: Unix seconds, as the database and the protocol carry them.
//!
//! A bottom module: it imports nothing of the server, so every part (ingest, writer, alarms,
//! web, API, command line) reads the time the same way without importing each other.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now (0 if the system clock stands before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The server clock as the protocol carries it (u32 Unix seconds, good until 2106).
pub fn server_time() -> u32 {
    u32::try_from(unix_now()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_is_unix_now_in_u32() {
        let before = unix_now();
        let t = i64::from(server_time());
        assert!(
            t >= before && t <= unix_now(),
            "{t} outside [{before}, now]"
        );
        assert!(before > 1_700_000_000, "clock reads {before}");
    }
}
