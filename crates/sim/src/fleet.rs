//! The fleet file written by `tek device add --count N --out FLEET.toml`:
//!
//! ```toml
//! [[device]]
//! id = 1
//! key = "00112233445566778899aabbccddeeff"
//! name = "pool-1"   # optional
//! ```
//!
//! Parsed here (not through tek-server) so the simulator depends on nothing but the protocol.
//! Every problem is a clear error naming the device entry.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// One simulated controller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device id (non-zero).
    pub id: u32,
    /// The 128-bit device key.
    pub key: [u8; 16],
    /// Optional display name.
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    device: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: i64,
    key: String,
    name: Option<String>,
}

/// Parses fleet TOML text.
pub fn parse(text: &str) -> anyhow::Result<Vec<Device>> {
    let file: File = toml::from_str(text).context("fleet file is not valid")?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(file.device.len());
    for (i, e) in file.device.into_iter().enumerate() {
        let Ok(id) = u32::try_from(e.id) else {
            bail!("device #{}: id {} is not in 1..=4294967295", i + 1, e.id);
        };
        if id == 0 {
            bail!("device #{}: id 0 is reserved", i + 1);
        }
        if !seen.insert(id) {
            bail!("device #{}: id {id} appears twice", i + 1);
        }
        let key = tek_proto::crypto::Key::from_hex(&e.key)
            .with_context(|| format!("device {id}: key must be 32 hexadecimal digits"))?;
        out.push(Device {
            id,
            key: key.0,
            name: e.name,
        });
    }
    Ok(out)
}

/// Reads and parses a fleet file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Device>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read fleet file {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Writes devices in the fleet file format (for tests and tools).
pub fn to_toml(devices: &[Device]) -> String {
    let mut s = String::new();
    for d in devices {
        let key = tek_proto::crypto::Key(d.key).to_hex();
        s.push_str(&format!(
            "[[device]]\nid = {}\nkey = \"{}\"\n",
            d.id,
            String::from_utf8_lossy(&key)
        ));
        if let Some(n) = &d.name {
            s.push_str(&format!("name = {}\n", toml::Value::String(n.clone())));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let text = "[[device]]\nid = 1\nkey = \"00112233445566778899AABBCCDDEEFF\"\nname = \"pool-1\"\n\n[[device]]\nid = 2\nkey = \"ffeeddccbbaa99887766554433221100\"\n";
        let d = parse(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].id, 1);
        assert_eq!(d[0].key[15], 0xFF);
        assert_eq!(d[0].name.as_deref(), Some("pool-1"));
        assert_eq!(d[1].name, None);
        assert_eq!(parse(&to_toml(&d)).unwrap(), d);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn clear_errors() {
        let k = "00112233445566778899aabbccddeeff";
        for (text, needle) in [
            (format!("[[device]]\nid = 0\nkey = \"{k}\""), "reserved"),
            (format!("[[device]]\nid = -1\nkey = \"{k}\""), "not in"),
            (
                format!("[[device]]\nid = 5000000000\nkey = \"{k}\""),
                "not in",
            ),
            (
                "[[device]]\nid = 1\nkey = \"0011\"".to_string(),
                "32 hexadecimal",
            ),
            (
                format!("[[device]]\nid = 1\nkey = \"{k}\"\n[[device]]\nid = 1\nkey = \"{k}\""),
                "twice",
            ),
            (
                format!("[[device]]\nid = 1\nkey = \"{k}\"\ncolour = 1"),
                "not valid",
            ),
            ("[[device]\n".to_string(), "not valid"),
        ] {
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
