//! Sites (a pool facility), which users may see them, and which site each device belongs to.
//!
//! This is the data behind authorization: a user who is not an admin sees and changes only the
//! devices assigned to a site they are a member of ([`SiteStore::user_device_ids`]).

use super::Result;

/// A site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    /// Id (> 0).
    pub id: i64,
    /// Name (unique).
    pub name: String,
    /// When it was created.
    pub created_at: i64,
    /// IANA time zone name (`Europe/Berlin`; `UTC` unless set): local days and months of the
    /// site's energy figures and schedules are in this zone. Checked by
    /// [`crate::energy::zone::parse`] before it is saved.
    pub time_zone: String,
}

/// Site, membership and assignment operations.
pub trait SiteStore {
    /// Creates a site; `Duplicate` if the name is taken. Returns the id.
    fn create_site(&self, name: &str, now: i64) -> Result<i64>;
    /// Sets a site's time zone (a name [`crate::energy::zone::parse`] accepted); `Missing` if
    /// the site does not exist.
    fn set_site_time_zone(&self, id: i64, time_zone: &str) -> Result<()>;
    /// One site.
    fn site(&self, id: i64) -> Result<Option<SiteRecord>>;
    /// One site by name.
    fn site_by_name(&self, name: &str) -> Result<Option<SiteRecord>>;
    /// Every site, by id.
    fn list_sites(&self) -> Result<Vec<SiteRecord>>;
    /// Deletes a site: its devices become unassigned, its members lose access.
    fn delete_site(&self, id: i64) -> Result<()>;
    /// Makes a user a member of a site (no-op if already).
    fn grant_site(&self, user_id: i64, site_id: i64) -> Result<()>;
    /// Removes a membership (no-op if absent).
    fn revoke_site(&self, user_id: i64, site_id: i64) -> Result<()>;
    /// The sites a user is a member of, by id.
    fn user_sites(&self, user_id: i64) -> Result<Vec<SiteRecord>>;
    /// The users who are members of a site, by id.
    fn site_members(&self, site_id: i64) -> Result<Vec<i64>>;
    /// Assigns devices to a site (`Some`) or removes their assignment (`None`), all or none.
    fn assign_devices(&self, device_ids: &[u32], site_id: Option<i64>) -> Result<()>;
    /// The site of a device, if assigned.
    fn device_site(&self, device_id: u32) -> Result<Option<i64>>;
    /// The site of each of `device_ids`, in their order, as
    /// [`super::StatusStore::latest_status_of`] does for statuses: one read per device by default, one statement on PostgreSQL.
    fn device_sites_of(&self, device_ids: &[u32]) -> Result<Vec<Option<i64>>> {
        device_ids.iter().map(|&d| self.device_site(d)).collect()
    }
    /// The devices of a site, by id.
    fn site_device_ids(&self, site_id: i64) -> Result<Vec<u32>>;
    /// The devices a (non-admin) user may see: those of their sites, by id.
    fn user_device_ids(&self, user_id: i64) -> Result<Vec<u32>>;
}
