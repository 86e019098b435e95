//! The fleet file: device ids and keys handed from provisioning to the controllers.
//!
//! `tek device add --count N --out FLEET.toml` writes it; `tek sim` reads it (it stands in for
//! flashing keys into controllers at the factory). The format is deliberately plain TOML so any
//! tool can parse it without this crate:
//!
//! ```toml
//! # tek fleet file: device ids and keys. Keep it secret.
//! [[device]]
//! id = 1                                   # u32, non-zero
//! key = "00112233445566778899aabbccddeeff" # 16-byte key, 32 hex digits
//! name = "pool-1"                          # optional
//! ```
//!
//! The file holds secrets: it is created with mode 0600 on Unix.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tek_proto::crypto::Key;

/// Why a fleet file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// I/O on the file failed.
    #[error("fleet file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not follow the format.
    #[error("fleet file {path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One device of a fleet file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDevice {
    /// Device id.
    pub id: u32,
    /// The key as 32 hexadecimal digits.
    pub key: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl std::fmt::Debug for FleetDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetDevice")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("name", &self.name)
            .finish()
    }
}

impl FleetDevice {
    /// Builds an entry from a key.
    pub fn new(id: u32, key: &Key, name: &str) -> FleetDevice {
        FleetDevice {
            id,
            key: String::from_utf8_lossy(&key.to_hex()).into_owned(),
            name: name.to_owned(),
        }
    }

    /// The key, if `key` is 32 hex digits.
    pub fn key(&self) -> Option<Key> {
        Key::from_hex(&self.key)
    }
}

/// A whole fleet file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// The devices, in file order.
    #[serde(default)]
    pub device: Vec<FleetDevice>,
}

impl Fleet {
    /// Parses and checks a fleet file's text: ids non-zero and unique, keys 32 hex digits.
    pub fn parse(text: &str, path: &Path) -> Result<Fleet, Error> {
        let format = |message: String| Error::Format {
            path: path.to_owned(),
            message,
        };
        let fleet: Fleet = toml::from_str(text)
            .map_err(|e| format(e.message().lines().next().unwrap_or("invalid").to_owned()))?;
        let mut seen = std::collections::HashSet::new();
        for d in &fleet.device {
            if d.id == 0 {
                return Err(format("device id 0 is reserved".into()));
            }
            if !seen.insert(d.id) {
                return Err(format(format!("device {} listed twice", d.id)));
            }
            if d.key().is_none() {
                return Err(format(format!(
                    "device {}: key must be 32 hexadecimal digits",
                    d.id
                )));
            }
        }
        Ok(fleet)
    }

    /// Reads a fleet file.
    pub fn load(path: &Path) -> Result<Fleet, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Fleet::parse(&text, path)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# tek fleet file: device ids and keys. Keep it secret.\n");
        // Serializing plain strings and integers cannot fail.
        out.push_str(&toml::to_string(self).unwrap_or_default());
        out
    }

    /// Writes the file (mode 0600 on Unix), refusing to overwrite an existing one.
    pub fn save_new(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(self.to_toml().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_documented_format() {
        let key = Key::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let fleet = Fleet {
            device: vec![
                FleetDevice::new(1, &key, "pool-1"),
                FleetDevice::new(2, &key, ""),
            ],
        };
        let text = fleet.to_toml();
        assert!(
            text.contains(
                "[[device]]\nid = 1\nkey = \"00112233445566778899aabbccddeeff\"\nname = \"pool-1\""
            ),
            "{text}"
        );
        assert_eq!(Fleet::parse(&text, Path::new("f")).unwrap(), fleet);
        assert_eq!(fleet.device[0].key(), Some(key));
        assert!(!format!("{fleet:?}").contains("0011"));
    }

    #[test]
    fn bad_files() {
        for text in [
            "[[device]]\nid = 0\nkey = \"00112233445566778899aabbccddeeff\"",
            "[[device]]\nid = 1\nkey = \"0011\"",
            "[[device]]\nid = 1\nkey = \"00112233445566778899aabbccddeeff\"\n[[device]]\nid = 1\nkey = \"00112233445566778899aabbccddeeff\"",
            "[[device]]\nid = -1\nkey = \"00112233445566778899aabbccddeeff\"",
            "[[device]]\nid = 1\nkey = \"00112233445566778899aabbccddeeff\"\ncolour = 1",
        ] {
            let e = Fleet::parse(text, Path::new("f.toml")).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn save_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fleet.toml");
        Fleet::default().save_new(&p).unwrap();
        assert!(Fleet::default().save_new(&p).is_err());
        assert_eq!(Fleet::load(&p).unwrap(), Fleet::default());
    }
}
