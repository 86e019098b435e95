//! Channels as data (issue 18): channel-map **templates** (a named channel map, PROTOCOL.md
//! 17.2, with each channel's name, unit, kind and display precision, and optionally the channel
//! roles of configuration item 16) and each device's **channel registry**, versioned with its
//! configuration.
//!
//! A registry entry of `(device, version)` is the map the device runs from configuration
//! version `version` on, until a later entry; the entry of a configuration version `v` is
//! therefore the one with the greatest version `<= v` ([`entry_sql`], one query). Every device
//! has one from version 0 (its factory map, the built-in "pool controller" template): the
//! migration gives one to every existing device, [`super::DeviceStore::add_devices`] to every
//! new one.
//!
//! Everything stored passed [`validate`] first, in this file, once for both backends: the map by
//! the protocol's own validator (an error names the channel and the field), the roles against
//! the map, one description per channel of the map. An invalid template is refused before any
//! SQL runs, so nothing is saved.

pub mod builtin;

use super::{Error, Result};
use tek_proto::channel::map::{ChannelMap, Place};
use tek_proto::channel::roles::Roles;

/// The built-in template every device starts with (the factory map, PROTOCOL.md 17.2).
pub const POOL_TEMPLATE: &str = "pool controller";
/// Most characters of a template or channel name.
pub const MAX_NAME: usize = 100;
/// Most decimals a channel is shown with.
pub const MAX_DECIMALS: u8 = 9;

/// What a channel measures, which decides where the server uses it (energy figures, charts,
/// alarms). One name each, in the database and in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Electric power.
    Power,
    /// An energy counter (a meter reading that only grows).
    Energy,
    /// A temperature.
    Temperature,
    /// A state or bitmap (relays, a sensor's status).
    State,
    /// Anything else (voltage, current, frequency, flow ...).
    Other,
}

impl ChannelKind {
    /// Every kind.
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::Power,
        ChannelKind::Energy,
        ChannelKind::Temperature,
        ChannelKind::State,
        ChannelKind::Other,
    ];

    /// The stored (and JSON) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Power => "power",
            ChannelKind::Energy => "energy",
            ChannelKind::Temperature => "temperature",
            ChannelKind::State => "state",
            ChannelKind::Other => "other",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<ChannelKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How the server shows one channel of a map.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelInfo {
    /// Index in the map (what telemetry and expressions refer to).
    pub index: u8,
    /// Name shown to users, unique within its map.
    pub name: String,
    /// Unit code (PROTOCOL.md 17.2), the map's own for this channel.
    pub unit: u8,
    /// What it measures.
    pub kind: ChannelKind,
    /// Decimals it is shown with.
    pub decimals: u8,
}

/// A user's description of one channel of a map; the unit comes from the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLabel {
    /// Name shown to users.
    pub name: String,
    /// What it measures.
    pub kind: ChannelKind,
    /// Decimals it is shown with, 0..=[`MAX_DECIMALS`].
    pub decimals: u8,
}

/// A channel map with its channels' labels and optional roles, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSet {
    /// The channel map bytes (PROTOCOL.md 17.2).
    pub map: Vec<u8>,
    /// The value of configuration item 16 (6 bytes), if the map comes with roles.
    pub roles: Option<Vec<u8>>,
    /// One label per channel of the map, in order.
    pub channels: Vec<ChannelLabel>,
}

/// A template to create or to replace one with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTemplate {
    /// Unique name.
    pub name: String,
    /// The site whose users see and use it; `None`: every site (administrators manage it).
    pub site_id: Option<i64>,
    /// Its channels.
    pub set: ChannelSet,
}

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateRecord {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Shipped with tek (cannot be changed or deleted).
    pub builtin: bool,
    /// Owner site; `None`: every site.
    pub site_id: Option<i64>,
    /// The channel map bytes.
    pub map: Vec<u8>,
    /// Configuration item 16's value, if any.
    pub roles: Option<Vec<u8>>,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Last changed, Unix seconds.
    pub updated_at: i64,
    /// Its channels, in index order.
    pub channels: Vec<ChannelInfo>,
}

/// A device's channel registry entry: the map it runs from configuration version `version` on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceChannels {
    /// Device.
    pub device_id: u32,
    /// First configuration version this map belongs to (0: the factory configuration).
    pub version: u32,
    /// The template it was made from, if that still exists.
    pub template_id: Option<i64>,
    /// The channel map bytes.
    pub map: Vec<u8>,
    /// Configuration item 16's value, if any.
    pub roles: Option<Vec<u8>>,
    /// Saved, Unix seconds.
    pub saved_at: i64,
    /// Its channels, in index order.
    pub channels: Vec<ChannelInfo>,
}

/// Checks a channel set: the map by the protocol's validator, the roles against it, one label
/// per channel with a unique printable name and 0..=9 decimals. Returns the channels to store
/// (labels with the map's unit codes); an error names the channel and the field at fault.
pub fn validate(set: &ChannelSet) -> Result<Vec<ChannelInfo>> {
    let invalid = |s: String| Err(Error::InvalidChannels(s));
    let map = ChannelMap::new_checked(&set.map)
        .and_then(|m| m.validate().map(|()| m))
        .map_err(|e| {
            let name = match e.place {
                Place::Channel(i) => set.channels.get(usize::from(i)),
                _ => None,
            };
            Error::InvalidChannels(match name {
                Some(l) => format!("{e} (channel {:?})", l.name),
                None => e.to_string(),
            })
        })?;
    if map.channel_count() != set.channels.len() {
        return invalid(format!(
            "the map has {} channels but {} are described",
            map.channel_count(),
            set.channels.len()
        ));
    }
    if let Some(r) = &set.roles {
        Roles::parse(r, map.channel_count()).map_err(|e| Error::InvalidChannels(e.to_string()))?;
    }
    let mut out = Vec::with_capacity(set.channels.len());
    for (i, (label, ch)) in set.channels.iter().zip(map.channels()).enumerate() {
        let name = label.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return invalid(format!(
                "channel {i}: name: 1 to {MAX_NAME} printable characters"
            ));
        }
        if out.iter().any(|c: &ChannelInfo| c.name == name) {
            return invalid(format!("channel {i}: name: {name:?} is used twice"));
        }
        if label.decimals > MAX_DECIMALS {
            return invalid(format!(
                "channel {i} ({name:?}): decimals: {} outside 0..={MAX_DECIMALS}",
                label.decimals
            ));
        }
        out.push(ChannelInfo {
            index: i as u8,
            name: name.to_owned(),
            unit: ch.resolution.unit.code(),
            kind: label.kind,
            decimals: label.decimals,
        });
    }
    Ok(out)
}

/// Checks a template's name (trimmed; 1..=[`MAX_NAME`] printable characters) and its channels.
pub fn validate_template(t: &NewTemplate) -> Result<(String, Vec<ChannelInfo>)> {
    let name = t.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Error::InvalidChannels(format!(
            "template name: 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok((name.to_owned(), validate(&t.set)?))
}

/// One row of the template queries ([`TEMPLATES_SQL`]) as both backends read it: the
/// template's columns, then its channel's (`None` for a template without channels).
pub(super) type TemplateRow = (
    i64,
    String,
    bool,
    Option<i64>,
    Vec<u8>,
    Option<Vec<u8>>,
    i64,
    i64,
    Option<ChannelRow>,
);

/// A channel row: index, name, unit, kind, decimals.
pub(super) type ChannelRow = (i64, String, i64, String, i64);

/// Every template with its channels, one row per channel, in template then index order. The
/// same text for both backends; add `WHERE t.id = <param>1` with [`template_sql`].
pub(super) const TEMPLATES_SQL: &str =
    "SELECT t.id, t.name, t.builtin, t.site_id, t.map, t.roles, t.created_at, t.updated_at,
        c.idx, c.name, c.unit, c.kind, c.decimals
 FROM channel_templates AS t
 LEFT JOIN channel_template_channels AS c ON c.template_id = t.id";

/// Order of [`TEMPLATES_SQL`]'s rows.
const TEMPLATES_ORDER: &str = " ORDER BY t.id, c.idx";

/// All templates.
pub(super) fn templates_sql() -> String {
    format!("{TEMPLATES_SQL}{TEMPLATES_ORDER}")
}

/// One template. Parameter: id.
pub(super) fn template_sql(param: &str) -> String {
    format!("{TEMPLATES_SQL} WHERE t.id = {param}1{TEMPLATES_ORDER}")
}

/// Inserts a template channel. Parameters: template, index, name, unit, kind, decimals.
pub(super) fn insert_template_channel_sql(param: &str) -> String {
    format!(
        "INSERT INTO channel_template_channels (template_id, idx, name, unit, kind, decimals)
         VALUES ({param}1, {param}2, {param}3, {param}4, {param}5, {param}6)"
    )
}

/// The devices whose latest registry entry came from a template. Parameter: template.
pub(super) fn template_devices_sql(param: &str) -> String {
    format!(
        "SELECT m.device_id FROM device_channel_maps AS m
         WHERE m.template_id = {param}1
           AND m.version = (SELECT MAX(x.version) FROM device_channel_maps AS x
                            WHERE x.device_id = m.device_id)
         ORDER BY m.device_id"
    )
}

/// A device's registry entry for a configuration version (the entry with the greatest version
/// not above it) with its channels, one row per channel in index order: one query, so a sender
/// of ConfigChunks reads the map of the version it sends at once. Parameters: device, version.
/// Columns: version, template, map, roles, saved at, then the channel's (NULL if none).
pub(super) fn entry_sql(param: &str) -> String {
    format!(
        "SELECT m.version, m.template_id, m.map, m.roles, m.saved_at,
                c.idx, c.name, c.unit, c.kind, c.decimals
         FROM device_channel_maps AS m
         LEFT JOIN device_channels AS c ON c.device_id = m.device_id AND c.version = m.version
         WHERE m.device_id = {param}1
           AND m.version = (SELECT MAX(x.version) FROM device_channel_maps AS x
                            WHERE x.device_id = {param}1 AND x.version <= {param}2)
         ORDER BY c.idx"
    )
}

/// The head of the registry entry in effect (no channels): version, template, map, roles,
/// saved at. Parameters: device, version (the highest not above it), as [`entry_sql`].
pub(super) fn entry_head_sql(param: &str) -> String {
    format!(
        "SELECT version, template_id, map, roles, saved_at FROM device_channel_maps
         WHERE device_id = {param}1 AND version <= {param}2
         ORDER BY version DESC LIMIT 1"
    )
}

/// The channels of one registry entry, by index. Parameters: device, version.
pub(super) fn entry_channels_sql(param: &str) -> String {
    format!(
        "SELECT idx, name, unit, kind, decimals FROM device_channels
         WHERE device_id = {param}1 AND version = {param}2 ORDER BY idx"
    )
}

/// Saves a registry entry (replacing one of the same version). Parameters: device, version,
/// template, map, roles, saved at.
pub(super) fn upsert_entry_sql(param: &str) -> String {
    format!(
        "INSERT INTO device_channel_maps (device_id, version, template_id, map, roles, saved_at)
         VALUES ({param}1, {param}2, {param}3, {param}4, {param}5, {param}6)
         ON CONFLICT (device_id, version) DO UPDATE SET template_id = excluded.template_id,
           map = excluded.map, roles = excluded.roles, saved_at = excluded.saved_at"
    )
}

/// Removes an entry's channels before they are written again. Parameters: device, version.
pub(super) fn clear_entry_channels_sql(param: &str) -> String {
    format!("DELETE FROM device_channels WHERE device_id = {param}1 AND version = {param}2")
}

/// Inserts a registry channel. Parameters: device, version, index, name, unit, kind, decimals.
pub(super) fn insert_entry_channel_sql(param: &str) -> String {
    format!(
        "INSERT INTO device_channels (device_id, version, idx, name, unit, kind, decimals)
         VALUES ({param}1, {param}2, {param}3, {param}4, {param}5, {param}6, {param}7)"
    )
}

/// The two statements giving a new device the pool template as its version-0 entry (run in
/// the transaction that creates it). Parameters: device, saved at (the first statement);
/// device (the second).
pub(super) fn seed_device_sql(param: &str) -> [String; 2] {
    [
        format!(
            "INSERT INTO device_channel_maps (device_id, version, template_id, map, roles, saved_at)
             SELECT {param}1, 0, id, map, roles, {param}2 FROM channel_templates
             WHERE name = '{POOL_TEMPLATE}'"
        ),
        format!(
            "INSERT INTO device_channels (device_id, version, idx, name, unit, kind, decimals)
             SELECT {param}1, 0, c.idx, c.name, c.unit, c.kind, c.decimals
             FROM channel_template_channels AS c
             JOIN channel_templates AS t ON t.id = c.template_id
             WHERE t.name = '{POOL_TEMPLATE}'"
        ),
    ]
}

fn channel(row: ChannelRow) -> Result<ChannelInfo> {
    let (index, name, unit, kind, decimals) = row;
    let bad = |what: &str| Error::Corrupt(format!("channel {index}: {what}"));
    Ok(ChannelInfo {
        index: u8::try_from(index).map_err(|_| bad("index"))?,
        name,
        unit: u8::try_from(unit).map_err(|_| bad("unit"))?,
        kind: ChannelKind::parse(&kind).ok_or_else(|| bad("kind"))?,
        decimals: u8::try_from(decimals).map_err(|_| bad("decimals"))?,
    })
}

/// Groups [`TEMPLATES_SQL`] rows into templates.
pub(super) fn group_templates(rows: Vec<TemplateRow>) -> Result<Vec<TemplateRecord>> {
    let mut out: Vec<TemplateRecord> = Vec::new();
    for (id, name, builtin, site_id, map, roles, created_at, updated_at, ch) in rows {
        if out.last().is_none_or(|t| t.id != id) {
            out.push(TemplateRecord {
                id,
                name,
                builtin,
                site_id,
                map,
                roles,
                created_at,
                updated_at,
                channels: Vec::new(),
            });
        }
        if let (Some(c), Some(t)) = (ch, out.last_mut()) {
            t.channels.push(channel(c)?);
        }
    }
    Ok(out)
}

/// Whether to keep a registry entry, judged on its map and roles
/// ([`ChannelStore::device_channels_kept_of`]).
pub type KeepEntry = dyn Fn(&[u8], Option<&[u8]>) -> bool;

/// One row of [`entry_sql`]: version, template, map, roles, saved at, channel.
pub(super) type EntryRow = (
    i64,
    Option<i64>,
    Vec<u8>,
    Option<Vec<u8>>,
    i64,
    Option<ChannelRow>,
);

/// Builds the entry of `device` from [`entry_sql`] rows (`None` without rows).
pub(super) fn entry_from_rows(
    device_id: u32,
    rows: Vec<EntryRow>,
) -> Result<Option<DeviceChannels>> {
    let mut out: Option<DeviceChannels> = None;
    for (version, template_id, map, roles, saved_at, ch) in rows {
        let e = match &mut out {
            Some(e) => e,
            None => out.insert(DeviceChannels {
                device_id,
                version: super::u32_col(version, "config version")?,
                template_id,
                map,
                roles,
                saved_at,
                channels: Vec::new(),
            }),
        };
        if let Some(c) = ch {
            e.channels.push(channel(c)?);
        }
    }
    Ok(out)
}

/// The label of a stored channel (to copy a template into a registry entry).
impl From<&ChannelInfo> for ChannelLabel {
    fn from(c: &ChannelInfo) -> ChannelLabel {
        ChannelLabel {
            name: c.name.clone(),
            kind: c.kind,
            decimals: c.decimals,
        }
    }
}

/// Templates and device channel registries.
pub trait ChannelStore {
    /// Every template with its channels, by id.
    fn templates(&self) -> Result<Vec<TemplateRecord>>;
    /// One template.
    fn template(&self, id: i64) -> Result<Option<TemplateRecord>>;
    /// Creates a user template after [`validate_template`]. `Duplicate` for a name in use,
    /// `Missing` for an unknown site.
    fn create_template(&self, t: &NewTemplate, now: i64) -> Result<i64>;
    /// Replaces a user template's name, site and channels (validated first). `Missing` for an
    /// unknown id; `InvalidChannels` for a built-in one.
    fn update_template(&self, id: i64, t: &NewTemplate, now: i64) -> Result<()>;
    /// Deletes a user template; registry entries made from it keep their map and lose the
    /// link. `Missing` for an unknown id; `InvalidChannels` for a built-in one.
    fn delete_template(&self, id: i64) -> Result<()>;
    /// The devices whose latest registry entry was made from the template, by id.
    fn template_devices(&self, id: i64) -> Result<Vec<u32>>;
    /// Saves `device`'s channel registry entry for configuration `version` on (replacing one
    /// of the same version), validated first. `NotFound` for an unknown device, `Missing` for
    /// an unknown template.
    fn save_device_channels(
        &self,
        device_id: u32,
        version: u32,
        template_id: Option<i64>,
        set: &ChannelSet,
        now: i64,
    ) -> Result<()>;
    /// The registry entry in effect at configuration `version` (`None`: the latest one); `None`
    /// if the device has none.
    fn device_channels(
        &self,
        device_id: u32,
        version: Option<u32>,
    ) -> Result<Option<DeviceChannels>>;
    /// [`ChannelStore::device_channels`] of each `(device, version)` of `asked`, in its order: a
    /// page of devices in one call (issue 21). By default one read each; SQLite reads them on
    /// one connection in one snapshot, PostgreSQL in one statement.
    fn device_channels_of(
        &self,
        asked: &[(u32, Option<u32>)],
    ) -> Result<Vec<Option<DeviceChannels>>> {
        asked
            .iter()
            .map(|&(device, version)| self.device_channels(device, version))
            .collect()
    }
    /// [`ChannelStore::device_channels_of`], keeping only the entries whose map and roles
    /// `keep` accepts (the others are `None`, as for a device without an entry). A page of
    /// devices on the factory map reads no channel labels only to drop them (issue 21:
    /// `/api/devices`). By default the whole entries are read, then filtered; SQLite reads a
    /// rejected entry's head alone.
    fn device_channels_kept_of(
        &self,
        asked: &[(u32, Option<u32>)],
        keep: &KeepEntry,
    ) -> Result<Vec<Option<DeviceChannels>>> {
        Ok(self
            .device_channels_of(asked)?
            .into_iter()
            .map(|e| e.filter(|e| keep(&e.map, e.roles.as_deref())))
            .collect())
    }
}

/// Refuses to change a built-in template (`builtin` as stored).
pub(super) fn check_not_builtin(id: i64, builtin: Option<bool>) -> Result<()> {
    match builtin {
        None => Err(Error::Missing(format!("template {id}"))),
        Some(true) => Err(Error::InvalidChannels(format!(
            "template {id} is built in and cannot be changed"
        ))),
        Some(false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_set() -> ChannelSet {
        let b = builtin::pool();
        ChannelSet {
            map: b.map(),
            roles: b.roles.map(|r| r.emit()[2..].to_vec()),
            channels: b.labels(),
        }
    }

    #[test]
    fn kinds_have_one_name_each() {
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(ChannelKind::parse("Power"), None);
    }

    #[test]
    fn the_pool_set_is_valid_with_the_maps_units() {
        let ch = validate(&pool_set()).unwrap();
        let units: Vec<u8> = ch.iter().map(|c| c.unit).collect();
        assert_eq!(units, [1, 2, 3, 3, 0]);
        assert_eq!(ch[2].name, "Water temperature");
    }

    #[test]
    fn errors_name_the_channel_and_the_field() {
        let err = |set: &ChannelSet| match validate(set) {
            Err(Error::InvalidChannels(m)) => m,
            other => panic!("{other:?}"),
        };
        // Channel 2's divisor (bytes: header 3, two records of 15, then kind, len, input, mul 4).
        let mut s = pool_set();
        s.map[3 + 15 * 2 + 3 + 4] = 0;
        s.map[3 + 15 * 2 + 3 + 5] = 0;
        assert_eq!(
            err(&s),
            "channel 2: divisor 0 (channel \"Water temperature\")"
        );
        let mut s = pool_set();
        s.map[3 + 15 * 4 + 2] = 40; // board input 40
        assert!(
            err(&s).starts_with("channel 4: board input 40"),
            "{}",
            err(&s)
        );
        let mut s = pool_set();
        s.map.push(0);
        assert_eq!(err(&s), "channel map: bytes after the last channel");
        let mut s = pool_set();
        s.channels.pop();
        assert_eq!(err(&s), "the map has 5 channels but 4 are described");
        let mut s = pool_set();
        s.channels[3].name = "Water temperature".into();
        assert_eq!(
            err(&s),
            "channel 3: name: \"Water temperature\" is used twice"
        );
        let mut s = pool_set();
        s.channels[1].name = " ".into();
        assert!(err(&s).starts_with("channel 1: name"));
        let mut s = pool_set();
        s.channels[0].decimals = 10;
        assert!(err(&s).starts_with("channel 0 (\"Power\"): decimals"));
        let mut s = pool_set();
        s.roles = Some(vec![9, 3, 0, 1, 0, 1]);
        assert_eq!(err(&s), "channel roles: no channel 9 in the map");
        let mut s = pool_set();
        s.roles = Some(vec![2, 3]);
        assert!(err(&s).starts_with("channel roles"));
    }

    #[test]
    fn template_names_are_checked() {
        let t = |name: &str| NewTemplate {
            name: name.into(),
            site_id: None,
            set: pool_set(),
        };
        assert_eq!(validate_template(&t("  Mine ")).unwrap().0, "Mine");
        assert!(validate_template(&t("")).is_err());
        assert!(validate_template(&t("a\nb")).is_err());
        assert!(validate_template(&t(&"x".repeat(101))).is_err());
    }
}
