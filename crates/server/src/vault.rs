//! Device keys at rest: every device key is stored encrypted under a **master key** that lives
//! outside the database, so a copy of the database (a dump, a backup, a stolen disk image of the
//! database file alone) reveals no device key.
//!
//! * The master key is 32 bytes from the OS random source, in a file of its own (`master.key`
//!   beside the SQLite database in the data directory), created at first start with mode 0600
//!   (readable by the server's user only). A file readable by others is refused.
//! * Each device key is sealed with **AES-256-GCM-SIV** (RFC 8452, RustCrypto `aes-gcm-siv`)
//!   under a random 96-bit nonce, with the device id as associated data. GCM-SIV rather than
//!   AES-GCM because it stays safe even if a nonce ever repeated (the RNG failed, a VM snapshot
//!   was restored); rather than AES-KW (RFC 3394) because the associated data binds a wrapped key
//!   to its device: a wrapped key copied onto another device's row does not open.
//! * Stored form: `0x01 | nonce (12) | ciphertext (16) | tag (16)` = 45 bytes, in the same column
//!   as before. A 16-byte value is a key stored in the clear by an older version; [`Vault::open`]
//!   still reads it and the backend rewrites every such row wrapped when it opens the database,
//!   so no schema change is needed.
//! * Rotation: [`Vault::rewrap`] opens with one master key and seals with another; the procedure
//!   is in docs/SECURITY.md.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use std::io::Write;
use std::path::{Path, PathBuf};
use tek_proto::crypto::{Key, KEY_LEN};

/// Name of the master key file (in the data directory).
pub const FILE_NAME: &str = "master.key";
/// Version byte of the wrapped form.
const WRAPPED_V1: u8 = 1;
const NONCE_LEN: usize = 12;
/// Length of a wrapped key: version, nonce, ciphertext, tag.
pub const WRAPPED_LEN: usize = 1 + NONCE_LEN + KEY_LEN + 16;
const MASTER_LEN: usize = 32;

/// Why the master key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or creating the file failed.
    #[error("master key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not 32 bytes, or others may read it.
    #[error("master key {path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A stored key does not open under this master key (wrong master key, or damaged data).
    #[error("device {0}: stored key does not open under this master key")]
    Unwrap(u32),
    /// A stored key has a length or version this program does not know.
    #[error("device {0}: stored key has an unknown format")]
    Format(u32),
    /// A sealed value (configuration items, a webhook secret) does not open under this master
    /// key, or is malformed.
    #[error("{0}: sealed value does not open under this master key")]
    Sealed(String),
    /// The OS random source failed.
    #[error(transparent)]
    Random(#[from] crate::keys::RandomError),
}

/// The master key, ready to wrap and unwrap device keys. Its `Debug` prints no key material.
pub struct Vault {
    cipher: Aes256GcmSiv,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<redacted>)")
    }
}

fn aad(device_id: u32) -> [u8; 18] {
    let mut a = [0u8; 18];
    a[..14].copy_from_slice(b"tek device key");
    a[14..].copy_from_slice(&device_id.to_be_bytes());
    a
}

impl Vault {
    /// A vault from 32 raw key bytes.
    pub fn from_bytes(bytes: &[u8; MASTER_LEN]) -> Vault {
        Vault {
            cipher: Aes256GcmSiv::new(bytes.into()),
        }
    }

    /// Reads the master key file at `path`, creating it (32 random bytes, mode 0600) if it does
    /// not exist.
    pub fn load_or_create(path: &Path) -> Result<Vault, Error> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                check_mode(path)?;
                let bytes: [u8; MASTER_LEN] =
                    bytes.try_into().map_err(|b: Vec<u8>| Error::Invalid {
                        path: path.to_owned(),
                        problem: format!("{} bytes, expected {MASTER_LEN}", b.len()),
                    })?;
                Ok(Vault::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; MASTER_LEN];
                crate::keys::fill_random(&mut bytes)?;
                let mut f = create_private(path).map_err(io)?;
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                tracing::info!(path = %path.display(), "created a new master key for device keys at rest");
                Ok(Vault::from_bytes(&bytes))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `key` for storage in device `device_id`'s row.
    pub fn wrap(&self, device_id: u32, key: &Key) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::keys::fill_random(&mut nonce)?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &key.0,
                    aad: &aad(device_id),
                },
            )
            .map_err(|_| Error::Format(device_id))?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAPPED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a stored key. A 16-byte value is a legacy key stored in the clear (see
    /// [`is_wrapped`]); it is returned as is so the backend can rewrap it.
    pub fn open(&self, device_id: u32, stored: &[u8]) -> Result<Key, Error> {
        if stored.len() == KEY_LEN {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(stored);
            return Ok(Key(k));
        }
        if stored.len() != WRAPPED_LEN || stored[0] != WRAPPED_V1 {
            return Err(Error::Format(device_id));
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&stored[1..1 + NONCE_LEN]),
                Payload {
                    msg: &stored[1 + NONCE_LEN..],
                    aad: &aad(device_id),
                },
            )
            .map_err(|_| Error::Unwrap(device_id))?;
        let k: [u8; KEY_LEN] = plain.try_into().map_err(|_| Error::Format(device_id))?;
        Ok(Key(k))
    }

    /// Seals any bytes (a configuration's items, a webhook secret) bound to `aad`, in the same
    /// form as a device key: `0x01 | nonce (12) | ciphertext | tag (16)`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::keys::fill_random(&mut nonce)?;
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|_| Error::Sealed(String::from_utf8_lossy(aad).into_owned()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(WRAPPED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`Vault::seal`] sealed with the same `aad`.
    pub fn unseal(&self, aad: &[u8], stored: &[u8]) -> Result<Vec<u8>, Error> {
        let bad = || Error::Sealed(String::from_utf8_lossy(aad).into_owned());
        if stored.len() < 1 + NONCE_LEN + 16 || stored[0] != WRAPPED_V1 {
            return Err(bad());
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&stored[1..1 + NONCE_LEN]),
                Payload {
                    msg: &stored[1 + NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| bad())
    }

    /// Opens a stored key under this vault and seals it under `to` (master key rotation, and the
    /// migration of legacy clear keys with `to` = `self`).
    pub fn rewrap(&self, to: &Vault, device_id: u32, stored: &[u8]) -> Result<Vec<u8>, Error> {
        to.wrap(device_id, &self.open(device_id, stored)?)
    }
}

/// Whether a stored key value is in the wrapped form (as opposed to a legacy clear key).
pub fn is_wrapped(stored: &[u8]) -> bool {
    stored.len() == WRAPPED_LEN && stored[0] == WRAPPED_V1
}

/// The master key file of a data directory.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Invalid {
            path: path.to_owned(),
            problem: format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_opens_binds_the_device_and_refuses_another_master() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let v = Vault::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = Key([0x5a; 16]);
        let w = v.wrap(7, &key).unwrap();
        assert_eq!(w.len(), WRAPPED_LEN);
        assert!(is_wrapped(&w));
        assert!(!w.windows(16).any(|x| x == key.0));
        // Random nonces: wrapping twice gives different bytes.
        assert_ne!(w, v.wrap(7, &key).unwrap());
        assert_eq!(v.open(7, &w).unwrap(), key);
        // The same file gives the same master key.
        let again = Vault::load_or_create(&path).unwrap();
        assert_eq!(again.open(7, &w).unwrap(), key);
        // Bound to the device id; another master key or one flipped bit does not open.
        assert!(matches!(v.open(8, &w), Err(Error::Unwrap(8))));
        let other = Vault::from_bytes(&[1; 32]);
        assert!(matches!(other.open(7, &w), Err(Error::Unwrap(7))));
        for i in 1..w.len() {
            let mut bad = w.clone();
            bad[i] ^= 1;
            assert!(v.open(7, &bad).is_err(), "byte {i}");
        }
        assert!(matches!(v.open(7, &w[..20]), Err(Error::Format(7))));
        // Legacy clear keys still open, and rewrap moves a key to a new master key.
        assert_eq!(v.open(7, &key.0).unwrap(), key);
        let moved = v.rewrap(&other, 7, &w).unwrap();
        assert_eq!(other.open(7, &moved).unwrap(), key);
        assert!(v.open(7, &moved).is_err());
    }

    #[test]
    fn refuses_a_short_or_readable_master_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::write(&path, [0u8; 10]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let err = Vault::load_or_create(&path).unwrap_err();
            assert!(err.to_string().contains("10 bytes"), "{err}");
            std::fs::write(&path, [0u8; 32]).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Vault::load_or_create(&path).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }
}
