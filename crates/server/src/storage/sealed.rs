//! Secrets other than device keys, sealed at rest under the same master key ([`crate::vault`]):
//! the item list of every configuration version (it carries the GSM password) and the secrets of
//! alarm destinations (webhook signing keys), so a copy of the database alone reveals neither.
//!
//! * Configuration items: sealed bytes in the `items` column with `sealed` set (schema version 7
//!   added the flag), bound to the device id and version (a sealed row copied onto another
//!   configuration does not open).
//! * Destination secrets: the text `sealed:v1:` followed by the sealed bytes in hex, in the same
//!   `secret` column.
//!
//! Rows written in the clear by an older version (or by a PostgreSQL command run without the
//! master key) are sealed when a server opens the database with its master key, in the same
//! transaction that wraps clear device keys; a master key rotation re-seals them with the keys.

use super::{Error, Result};
use crate::vault::Vault;

/// Prefix of a sealed destination secret.
pub const SECRET_PREFIX: &str = "sealed:v1:";
const SECRET_AAD: &[u8] = b"tek destination secret";

fn items_aad(device_id: u32, version: u32) -> Vec<u8> {
    let mut a = b"tek config items".to_vec();
    a.extend_from_slice(&device_id.to_be_bytes());
    a.extend_from_slice(&version.to_be_bytes());
    a
}

/// A key that does not open or seal means the stored bytes (or the key file) are not what
/// they should be.
pub(crate) fn vault_error(e: crate::vault::Error) -> Error {
    Error::Corrupt(e.to_string())
}

/// Seals a configuration's items.
pub fn seal_items(v: &Vault, device_id: u32, version: u32, items: &[u8]) -> Result<Vec<u8>> {
    v.seal(&items_aad(device_id, version), items)
        .map_err(vault_error)
}

/// A configuration's items as stored (`sealed` or not) in the clear.
pub fn open_items(
    v: Option<&Vault>,
    device_id: u32,
    version: u32,
    sealed: bool,
    stored: Vec<u8>,
) -> Result<Vec<u8>> {
    if !sealed {
        return Ok(stored);
    }
    let v = v.ok_or_else(|| {
        Error::Backend("sealed configurations need the master key (--master-key FILE)".into())
    })?;
    v.unseal(&items_aad(device_id, version), &stored)
        .map_err(|_| {
            Error::Corrupt(format!(
                "configuration {version} of device {device_id} does not open under this master key"
            ))
        })
}

/// Whether a stored destination secret is sealed.
pub fn is_sealed_secret(stored: &str) -> bool {
    stored.starts_with(SECRET_PREFIX)
}

/// A destination secret for storage: sealed when there is a master key.
pub fn seal_secret(v: Option<&Vault>, secret: Option<&str>) -> Result<Option<String>> {
    match (v, secret) {
        (Some(v), Some(s)) => {
            let sealed = v.seal(SECRET_AAD, s.as_bytes()).map_err(vault_error)?;
            Ok(Some(format!(
                "{SECRET_PREFIX}{}",
                crate::keys::hex(&sealed)
            )))
        }
        (None, s) => Ok(s.map(str::to_owned)),
        (_, None) => Ok(None),
    }
}

/// A stored destination secret in the clear.
pub fn open_secret(v: Option<&Vault>, stored: Option<String>) -> Result<Option<String>> {
    let Some(s) = stored else { return Ok(None) };
    let Some(hex) = s.strip_prefix(SECRET_PREFIX) else {
        return Ok(Some(s));
    };
    let v = v.ok_or_else(|| {
        Error::Backend("sealed destination secrets need the master key (--master-key FILE)".into())
    })?;
    let bytes = unhex(hex).ok_or_else(|| Error::Corrupt("sealed secret is not hex".into()))?;
    let plain = v.unseal(SECRET_AAD, &bytes).map_err(vault_error)?;
    String::from_utf8(plain)
        .map(Some)
        .map_err(|_| Error::Corrupt("sealed secret is not UTF-8".into()))
}

impl super::alarms::Destination {
    /// The destination as read from storage with its secret opened.
    pub fn opened(mut self, v: Option<&Vault>) -> Result<Self> {
        self.secret = open_secret(v, self.secret.take())?;
        Ok(self)
    }
}

/// Re-seals a stored secret under `to` (opened under `from`; a clear one is sealed).
pub fn reseal_secret(from: &Vault, to: &Vault, stored: &str) -> Result<String> {
    let plain = open_secret(Some(from), Some(stored.to_owned()))?.unwrap_or_default();
    Ok(seal_secret(Some(to), Some(&plain))?.unwrap_or_default())
}

/// Re-seals stored items under `to` (opened under `from` when `sealed`).
pub fn reseal_items(
    from: &Vault,
    to: &Vault,
    device_id: u32,
    version: u32,
    sealed: bool,
    stored: Vec<u8>,
) -> Result<Vec<u8>> {
    let plain = open_items(Some(from), device_id, version, sealed, stored)?;
    seal_items(to, device_id, version, &plain)
}

/// A configuration row as a re-seal reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItems {
    /// Feed position, the row's key.
    pub seq: i64,
    /// Device.
    pub device_id: i64,
    /// Version.
    pub version: i64,
    /// The items as stored.
    pub items: Vec<u8>,
    /// Whether `items` are sealed.
    pub sealed: bool,
}

/// The configuration rows to rewrite as `(seq, items)`: those in the clear sealed under `to`;
/// with `all` (master key rotation) the sealed ones too, opened under `from`.
pub fn resealed_items(
    from: &Vault,
    to: &Vault,
    all: bool,
    rows: Vec<StoredItems>,
) -> Result<Vec<(i64, Vec<u8>)>> {
    let mut out = Vec::new();
    for r in rows.into_iter().filter(|r| all || !r.sealed) {
        let (device, version) = (
            super::u32_col(r.device_id, "device id")?,
            super::u32_col(r.version, "config version")?,
        );
        let items = reseal_items(from, to, device, version, r.sealed, r.items)?;
        out.push((r.seq, items));
    }
    Ok(out)
}

/// The destination secrets to rewrite as `(id, secret)`, from `(id, stored secret)` rows: those
/// in the clear sealed under `to`; with `all` (rotation) the sealed ones too.
pub fn resealed_secrets(
    from: &Vault,
    to: &Vault,
    all: bool,
    rows: Vec<(i64, String)>,
) -> Result<Vec<(i64, String)>> {
    rows.into_iter()
        .filter(|(_, secret)| all || !is_sealed_secret(secret))
        .map(|(id, secret)| Ok((id, reseal_secret(from, to, &secret)?)))
        .collect()
}

/// The device keys to rewrite as `(id, key)`, from `(id, stored key)` rows: those `select`
/// picks, opened under `from` and sealed under `to`.
pub fn rewrapped_keys(
    from: &Vault,
    to: &Vault,
    select: impl Fn(&[u8]) -> bool,
    rows: Vec<(i64, Vec<u8>)>,
) -> Result<Vec<(i64, Vec<u8>)>> {
    rows.into_iter()
        .filter(|(_, stored)| select(stored))
        .map(|(id, stored)| {
            let device = super::u32_col(id, "device id")?;
            Ok((id, from.rewrap(to, device, &stored).map_err(vault_error)?))
        })
        .collect()
}

/// Logs the configuration and destination rows a key rewrap sealed along with the keys.
pub fn log_resealed(rows: usize) {
    if rows > 0 {
        tracing::info!(rows, "configurations and destination secrets sealed");
    }
}

/// The key of a master key rotation, created at `path`; a file there already is refused, so
/// no key is ever overwritten.
pub fn new_master_key(path: &std::path::Path) -> Result<Vault> {
    if path.exists() {
        return Err(Error::Backend(format!("{} exists already", path.display())));
    }
    Vault::load_or_create(path).map_err(vault_error)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What the backends' sealing tests store and then look for in the raw rows.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::storage::alarms::{DestinationKind, NewDestination};
    use crate::storage::{AlarmStore, ConfigStore, DeviceStore, NewDevice};
    use tek_proto::message::Config;

    /// A GSM password, inside the configuration items.
    pub const GSM: &str = "GsmPassw0rd-77";
    /// A webhook signing key, a destination secret.
    pub const HOOK: &str = "webhook-key-31337";

    /// A configuration carrying [`GSM`].
    pub fn config() -> Config {
        let mut c = Config::default();
        c.gsm.password = GSM.try_into().unwrap();
        c
    }

    /// Device 1 with [`config`] saved as version 1, and a webhook destination with [`HOOK`].
    pub fn store_secrets(db: &(impl DeviceStore + ConfigStore + AlarmStore)) {
        db.add_devices(
            &[NewDevice {
                id: 1,
                name: "d".into(),
                key: tek_proto::crypto::Key([3; 16]),
            }],
            0,
        )
        .unwrap();
        db.save_config(1, &config(), 1).unwrap();
        db.create_destination(
            &NewDestination {
                name: "hook".into(),
                kind: DestinationKind::Webhook,
                target: "http://127.0.0.1:9/x".into(),
                secret: Some(HOOK.into()),
            },
            1,
        )
        .unwrap();
    }

    /// Whether `needle` occurs in `hay`.
    pub fn contains(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_secrets_round_trip_and_bind() {
        let v = Vault::from_bytes(&[7; 32]);
        let items = b"\x01\x05hunter2 gsm password".to_vec();
        let s = seal_items(&v, 3, 2, &items).unwrap();
        assert!(!s.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(open_items(Some(&v), 3, 2, true, s.clone()).unwrap(), items);
        assert!(open_items(Some(&v), 3, 1, true, s.clone()).is_err());
        assert!(open_items(Some(&v), 4, 2, true, s.clone()).is_err());
        assert!(open_items(None, 3, 2, true, s).is_err());
        assert_eq!(open_items(None, 3, 2, false, items.clone()).unwrap(), items);
        let sec = seal_secret(Some(&v), Some("webhook key")).unwrap().unwrap();
        assert!(is_sealed_secret(&sec) && !sec.contains("webhook"));
        assert_eq!(
            open_secret(Some(&v), Some(sec.clone())).unwrap().as_deref(),
            Some("webhook key")
        );
        let other = Vault::from_bytes(&[8; 32]);
        assert!(open_secret(Some(&other), Some(sec.clone())).is_err());
        let moved = reseal_secret(&v, &other, &sec).unwrap();
        assert_eq!(
            open_secret(Some(&other), Some(moved)).unwrap().as_deref(),
            Some("webhook key")
        );
        assert_eq!(
            open_secret(Some(&v), Some("clear".into()))
                .unwrap()
                .as_deref(),
            Some("clear")
        );
        assert_eq!(seal_secret(None, Some("x")).unwrap().as_deref(), Some("x"));
    }

    /// Without `all`, only rows in the clear are rewritten, sealed under the new key; with it
    /// (rotation), every row, each opening under the new key only.
    #[test]
    fn reseal_plans_pick_clear_rows_or_all() {
        let (old, new) = (Vault::from_bytes(&[7; 32]), Vault::from_bytes(&[8; 32]));
        let items = b"\x01\x05gsm".to_vec();
        let configs = || {
            vec![
                StoredItems {
                    seq: 1,
                    device_id: 3,
                    version: 1,
                    items: items.clone(),
                    sealed: false,
                },
                StoredItems {
                    seq: 2,
                    device_id: 3,
                    version: 2,
                    items: seal_items(&old, 3, 2, &items).unwrap(),
                    sealed: true,
                },
            ]
        };
        let clear = resealed_items(&old, &new, false, configs()).unwrap();
        assert_eq!(clear.len(), 1);
        assert_eq!(clear[0].0, 1);
        assert_eq!(
            open_items(Some(&new), 3, 1, true, clear[0].1.clone()).unwrap(),
            items
        );
        let all = resealed_items(&old, &new, true, configs()).unwrap();
        assert_eq!(all.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            open_items(Some(&new), 3, 2, true, all[1].1.clone()).unwrap(),
            items
        );
        let bad = StoredItems {
            device_id: -1,
            ..configs().remove(0)
        };
        assert!(matches!(
            resealed_items(&old, &new, true, vec![bad]),
            Err(Error::Corrupt(_))
        ));

        let sealed = seal_secret(Some(&old), Some("k2")).unwrap().unwrap();
        let secrets = || vec![(1, "k1".to_owned()), (2, sealed.clone())];
        let clear = resealed_secrets(&old, &new, false, secrets()).unwrap();
        assert_eq!(clear.len(), 1);
        assert_eq!(
            open_secret(Some(&new), Some(clear[0].1.clone()))
                .unwrap()
                .as_deref(),
            Some("k1")
        );
        let all = resealed_secrets(&old, &new, true, secrets()).unwrap();
        assert_eq!(
            open_secret(Some(&new), Some(all[1].1.clone()))
                .unwrap()
                .as_deref(),
            Some("k2")
        );
    }

    #[test]
    fn rewrap_plan_moves_the_selected_keys() {
        let (old, new) = (Vault::from_bytes(&[7; 32]), Vault::from_bytes(&[8; 32]));
        let key = tek_proto::crypto::Key([5; 16]);
        let rows = vec![
            (1, old.wrap(1, &key).unwrap()),
            (2, old.wrap(2, &key).unwrap()),
        ];
        let moved = rewrapped_keys(&old, &new, |_| true, rows.clone()).unwrap();
        assert_eq!(moved.len(), 2);
        assert_eq!(new.open(2, &moved[1].1).unwrap().0, key.0);
        assert!(old.open(2, &moved[1].1).is_err());
        assert!(rewrapped_keys(&old, &new, |_| false, rows)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_new_master_key_never_overwrites_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.key");
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(new_master_key(&path), Err(Error::Backend(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
        std::fs::remove_file(&path).unwrap();
        new_master_key(&path).unwrap();
        assert!(path.exists());
    }
}
