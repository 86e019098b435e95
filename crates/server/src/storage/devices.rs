//! The device registry: ids, names, keys and the last accepted hello counter.

use super::Result;
use tek_proto::crypto::Key;

/// A device to create.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Non-zero id.
    pub id: u32,
    /// Display name (may be empty).
    pub name: String,
    /// The device key (its `Debug` is redacted).
    pub key: Key,
}

/// A device as the registry shows it. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: i64,
    /// When a server last accepted a Hello or a status from it (coarse: not every datagram).
    pub last_seen: Option<i64>,
    /// Newest configuration version saved (0 = factory configuration, none saved).
    pub config_desired: u32,
    /// Newest version the device confirmed (0 = none).
    pub config_applied: u32,
    /// Newest version the device rolled back, if any.
    pub config_rolled_back: Option<u32>,
}

/// What a server needs of a device to run sessions with it.
#[derive(Debug, Clone)]
pub struct StoredDevice {
    /// Id.
    pub id: u32,
    /// Key (redacted `Debug`).
    pub key: Key,
    /// The last accepted hello counter, if any.
    pub hello_counter: Option<u64>,
}

/// Registry operations.
pub trait DeviceStore {
    /// Creates devices, all or none (one transaction). Fails with `Exists` on a taken id.
    fn add_devices(&self, devices: &[NewDevice], now: i64) -> Result<()>;
    /// One device.
    fn device(&self, id: u32) -> Result<DeviceRecord>;
    /// All devices, by id.
    fn list_devices(&self) -> Result<Vec<DeviceRecord>>;
    /// Loads the key and hello counter of a device, `None` if unknown. The only read of keys.
    fn load_device(&self, id: u32) -> Result<Option<StoredDevice>>;
    /// Accepts a Hello counter if it is above the last accepted one, atomically for every server
    /// sharing this database; also records `now` as last seen. `Ok(false)` = a replay.
    fn accept_hello(&self, id: u32, counter: u64, now: i64) -> Result<bool>;
    /// The largest device id in use (0 if none), for allocating ids.
    fn max_device_id(&self) -> Result<u32>;
    /// Renames a device; `NotFound` if there is none.
    fn rename_device(&self, id: u32, name: &str) -> Result<()>;
    /// Gives a device a new key (sealed like every key) and forgets its Hello counter, which
    /// belonged to the old key; `NotFound` if there is none. For a stolen key (SECURITY.md 6).
    fn replace_key(&self, id: u32, key: &tek_proto::crypto::Key) -> Result<()>;
}
