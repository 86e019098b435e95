//! Device keys: generation from the operating system's random source.
//!
//! Keys are stored and loaded in exactly one place, `storage::sqlite::devices` (and later its
//! PostgreSQL twin), so that encrypting them at rest under a master key is a change to that code
//! alone. [`tek_proto::crypto::Key`]'s `Debug` prints `<redacted>`, and no API type carries a key.

use tek_proto::crypto::{Key, KEY_LEN};

/// The OS random source failed (it practically never does on Linux).
#[derive(Debug, thiserror::Error)]
#[error("operating system random source failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` from the OS random source.
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// A fresh 128-bit device key.
pub fn generate() -> Result<Key, RandomError> {
    let mut k = [0u8; KEY_LEN];
    fill_random(&mut k)?;
    Ok(Key(k))
}

/// A random non-zero `u32` (session ids).
pub fn random_nonzero_u32() -> Result<u32, RandomError> {
    loop {
        let mut b = [0u8; 4];
        fill_random(&mut b)?;
        let v = u32::from_be_bytes(b);
        if v != 0 {
            return Ok(v);
        }
    }
}

/// Lowercase hex: how random secrets and identifiers are written out.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_and_debug_redacts() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.0, [0; 16]);
        let hex = String::from_utf8(a.to_hex().to_vec()).unwrap();
        assert!(!format!("{a:?}").contains(&hex));
        assert_ne!(random_nonzero_u32().unwrap(), 0);
    }
}
