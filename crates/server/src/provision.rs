//! Provisioning: creating devices with fresh keys and handing the keys out (as a fleet file).
//! The only code path that returns a key to a caller.

use crate::fleet::{Fleet, FleetDevice};
use crate::storage::{self, NewDevice, Storage};

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] crate::keys::RandomError),
    /// The database refused.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// The ids do not fit in u32 or include 0.
    #[error("device ids {first}..{first}+{count} leave the range 1..=4294967295")]
    IdRange {
        /// First id.
        first: u64,
        /// How many.
        count: u64,
    },
}

/// Creates `count` devices with consecutive ids from `first` (or after the highest id in use),
/// named `prefix-ID`, all in one transaction, and returns them with their keys as a fleet.
pub fn provision(
    storage: &dyn Storage,
    first: Option<u32>,
    count: u32,
    prefix: &str,
    now: i64,
) -> Result<Fleet, Error> {
    let first = match first {
        Some(f) => u64::from(f),
        None => u64::from(storage.max_device_id()?) + 1,
    };
    let last = first + u64::from(count);
    if first == 0 || last - 1 > u64::from(u32::MAX) {
        return Err(Error::IdRange {
            first,
            count: u64::from(count),
        });
    }
    let mut devices = Vec::with_capacity(count as usize);
    for id in first..last {
        let id = id as u32;
        devices.push(NewDevice {
            id,
            name: format!("{prefix}-{id}"),
            key: crate::keys::generate()?,
        });
    }
    storage.add_devices(&devices, now)?;
    Ok(Fleet {
        device: devices
            .iter()
            .map(|d| FleetDevice::new(d.id, &d.key, &d.name))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DeviceStore;

    #[test]
    fn provisions_consecutive_ids_with_distinct_keys() {
        let (_d, db) = crate::storage::sqlite::tests::prepare();
        let f = provision(&db, None, 3, "pool", 0).unwrap();
        let ids: Vec<u32> = f.device.iter().map(|d| d.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(f.device[1].name, "pool-2");
        assert_ne!(f.device[0].key, f.device[1].key);
        let stored = db.load_device(2).unwrap().unwrap();
        assert_eq!(Some(stored.key), f.device[1].key());
        let g = provision(&db, None, 2, "pool", 0).unwrap();
        assert_eq!(g.device[0].id, 4);
        assert!(matches!(
            provision(&db, Some(3), 2, "x", 0),
            Err(Error::Storage(storage::Error::Exists(3)))
        ));
        assert!(matches!(
            provision(&db, Some(u32::MAX), 2, "x", 0),
            Err(Error::IdRange { .. })
        ));
    }
}
