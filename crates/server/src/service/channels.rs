//! Channel-map templates (issue 18) behind every face: who sees which template and which of
//! their devices use it, creating one
//! from user input (checked field by field, then by the protocol's validator in
//! [`crate::storage::channels::validate`]; an error names the channel and the field, and
//! nothing is saved), and each template's presentation (unit symbols, resolutions, roles).
//!
//! Visibility: a template without a site is for every site (only administrators create or change
//! those); a site's template is seen by that site's members. Administrators see all.

use super::channel_map::{self, BusSpec, ChannelRef, ChannelSource, ChannelSpec, SourceSpec};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::storage::channels::{ChannelKind, ChannelLabel, ChannelSet, NewTemplate};
use crate::storage::TemplateRecord;
use serde::Serialize;
use tek_proto::channel::map::ChannelMap;
use tek_proto::channel::roles::Roles;

pub use super::channel_map::unit_symbol;

/// Roles as the faces show and take them: channel indices (`None`: no channel has the role)
/// and relay outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesView {
    /// Water temperature channel (0.01 degC).
    pub water: Option<u8>,
    /// Air temperature channel (0.01 degC).
    pub air: Option<u8>,
    /// Electric power channel (W).
    pub power: Option<u8>,
    /// Energy counter channel (Wh).
    pub energy: Option<u8>,
    /// Relay output of the pump, 0..=7.
    pub pump: u8,
    /// Relay output of the heater, 0..=7.
    pub heater: u8,
}

impl From<Roles> for RolesView {
    fn from(r: Roles) -> RolesView {
        RolesView {
            water: r.water,
            air: r.air,
            power: r.power,
            energy: r.energy,
            pump: r.pump,
            heater: r.heater,
        }
    }
}

/// Roles as a face sends them: each channel by index or by name, `null` for none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesInput {
    /// Water temperature channel (0.01 degC).
    pub water: Option<ChannelRef>,
    /// Air temperature channel (0.01 degC).
    pub air: Option<ChannelRef>,
    /// Electric power channel (W).
    pub power: Option<ChannelRef>,
    /// Energy counter channel (Wh).
    pub energy: Option<ChannelRef>,
    /// Relay output of the pump, 0..=7.
    pub pump: u8,
    /// Relay output of the heater, 0..=7.
    pub heater: u8,
}

impl From<RolesView> for RolesInput {
    fn from(r: RolesView) -> RolesInput {
        let c = |c: Option<u8>| c.map(|c| ChannelRef::Index(i64::from(c)));
        RolesInput {
            water: c(r.water),
            air: c(r.air),
            power: c(r.power),
            energy: c(r.energy),
            pump: r.pump,
            heater: r.heater,
        }
    }
}

impl RolesInput {
    /// Configuration item 16's value, channels resolved among `names` (the channels in
    /// order). A channel past the map, the "none" code among them, is refused: `null` means
    /// none.
    fn item_value(&self, names: &[&str]) -> Result<Vec<u8>, WebError> {
        let mut chans = [None; 4];
        for (slot, (role, c)) in chans.iter_mut().zip([
            ("water", &self.water),
            ("air", &self.air),
            ("power", &self.power),
            ("energy", &self.energy),
        ]) {
            if let Some(c) = c {
                *slot = Some(channel_map::resolve(c, names, &format!("roles: {role}"))?);
            }
        }
        let [water, air, power, energy] = chans;
        let r = Roles {
            water,
            air,
            power,
            energy,
            pump: self.pump,
            heater: self.heater,
        };
        Ok(r.emit()[2..].to_vec())
    }
}

/// One channel of a template as the faces show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelView {
    /// Index in the map.
    pub index: u8,
    /// Name.
    pub name: String,
    /// What it measures (`power`, `energy`, `temperature`, `state`, `other`).
    pub kind: ChannelKind,
    /// Unit code (PROTOCOL.md 17.2).
    pub unit_code: u8,
    /// Its symbol (`""` for none; `null` for a code the server does not know).
    pub unit: Option<&'static str>,
    /// The logged integer is `value × 10^exponent` of the unit.
    pub exponent: i8,
    /// Decimals it is shown with.
    pub decimals: u8,
    /// Its source (an expression as text) and conversion.
    #[serde(flatten)]
    pub map: Option<ChannelSource>,
}

/// A template as the faces show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Shipped with tek (cannot be changed or deleted).
    pub builtin: bool,
    /// Owner site; `null`: every site.
    pub site_id: Option<i64>,
    /// The channel map bytes, hex.
    pub map: String,
    /// The map's serial buses.
    pub buses: Vec<BusSpec>,
    /// Channel roles (configuration item 16), if the template has them.
    pub roles: Option<RolesView>,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Last changed, Unix seconds.
    pub updated_at: i64,
    /// Channels in index order.
    pub channels: Vec<ChannelView>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` as bytes (hex digits, pairs; spaces allowed between), or what is wrong with it.
fn unhex(s: &str, field: &str) -> Result<Vec<u8>, WebError> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 == 1 {
        return Err(WebError::Invalid(format!(
            "{field}: an odd number of hex digits"
        )));
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| WebError::Invalid(format!("{field}: byte {i} is not hex")))
        })
        .collect()
}

impl TemplateView {
    /// The view of a stored (hence valid) template.
    pub fn of(t: &TemplateRecord) -> TemplateView {
        let map = ChannelMap::new_checked(&t.map).ok();
        let names: Vec<String> = t.channels.iter().map(|c| c.name.clone()).collect();
        let (buses, sources) = channel_map::describe(&t.map, &names).unwrap_or_default();
        let channels = t
            .channels
            .iter()
            .map(|c| ChannelView {
                map: sources.get(usize::from(c.index)).cloned(),
                index: c.index,
                name: c.name.clone(),
                kind: c.kind,
                unit_code: c.unit,
                unit: unit_symbol(c.unit),
                exponent: map
                    .and_then(|m| m.channel(usize::from(c.index)))
                    .map_or(0, |ch| ch.resolution.exponent),
                decimals: c.decimals,
            })
            .collect();
        TemplateView {
            id: t.id,
            name: t.name.clone(),
            builtin: t.builtin,
            site_id: t.site_id,
            map: hex(&t.map),
            buses,
            roles: t
                .roles
                .as_deref()
                .and_then(|r| Roles::parse(r, t.channels.len()).ok())
                .map(RolesView::from),
            created_at: t.created_at,
            updated_at: t.updated_at,
            channels,
        }
    }
}

/// A channel of a new template, as a face received it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    /// Name.
    pub name: String,
    /// `power`, `energy`, `temperature`, `state` or `other`.
    pub kind: String,
    /// Decimals shown (default 0).
    #[serde(default)]
    pub decimals: u8,
    /// Structured form only: unit symbol (default none).
    #[serde(default)]
    pub unit: Option<String>,
    /// Structured form only: decimal exponent (default 0).
    #[serde(default)]
    pub exponent: Option<i64>,
    /// Structured form only: where the value comes from.
    #[serde(default)]
    pub source: Option<SourceSpec>,
    /// Structured form only: multiplier (default 1).
    #[serde(default)]
    pub mul: Option<i64>,
    /// Structured form only: divisor (default 1).
    #[serde(default)]
    pub div: Option<i64>,
    /// Structured form only: offset (default 0).
    #[serde(default)]
    pub offset: Option<i64>,
}

impl ChannelInput {
    fn spec(&self) -> ChannelSpec<'_> {
        ChannelSpec {
            name: &self.name,
            unit: self.unit.as_deref(),
            exponent: self.exponent,
            source: self.source.as_ref(),
            mul: self.mul,
            div: self.div,
            offset: self.offset,
        }
    }

    fn has_map_fields(&self) -> bool {
        self.unit.is_some()
            || self.exponent.is_some()
            || self.source.is_some()
            || self.mul.is_some()
            || self.div.is_some()
            || self.offset.is_some()
    }
}

/// A new template, as a face received it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// Unique name.
    pub name: String,
    /// Owner site; absent: every site (administrators only).
    #[serde(default)]
    pub site_id: Option<i64>,
    /// The channel map (PROTOCOL.md 17.2), hex; absent: the structured form (`buses` and
    /// each channel's source).
    #[serde(default)]
    pub map: Option<String>,
    /// Structured form: the serial buses.
    #[serde(default)]
    pub buses: Option<Vec<BusSpec>>,
    /// Channel roles, if any.
    #[serde(default)]
    pub roles: Option<RolesInput>,
    /// One per channel of the map, in order.
    pub channels: Vec<ChannelInput>,
}

impl TemplateInput {
    /// The template to store; the fields a face can get wrong are named (the map itself is
    /// checked by the storage's validator).
    pub fn parse(&self) -> Result<NewTemplate, WebError> {
        let channels = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let kind = ChannelKind::parse(c.kind.trim()).ok_or_else(|| {
                    let known: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
                    WebError::Invalid(format!(
                        "channel {i} ({:?}): kind: {:?} is none of {}",
                        c.name,
                        c.kind,
                        known.join(", ")
                    ))
                })?;
                Ok(ChannelLabel {
                    name: c.name.clone(),
                    kind,
                    decimals: c.decimals,
                })
            })
            .collect::<Result<Vec<_>, WebError>>()?;
        let map = match &self.map {
            Some(hex) => {
                if self.buses.is_some() {
                    return Err(WebError::Invalid(
                        "buses: only with channel sources, not with a hex map".into(),
                    ));
                }
                if let Some((i, c)) = self
                    .channels
                    .iter()
                    .enumerate()
                    .find(|(_, c)| c.has_map_fields())
                {
                    return Err(WebError::Invalid(format!(
                        "channel {i} ({:?}): source, unit, exponent, mul, div and offset come \
                         from the hex map; give either the map or every channel's source",
                        c.name
                    )));
                }
                unhex(hex, "map")?
            }
            None => {
                let specs: Vec<ChannelSpec<'_>> =
                    self.channels.iter().map(ChannelInput::spec).collect();
                channel_map::build(self.buses.as_deref().unwrap_or_default(), &specs)?
            }
        };
        let names: Vec<&str> = self.channels.iter().map(|c| c.name.trim()).collect();
        Ok(NewTemplate {
            name: self.name.clone(),
            site_id: self.site_id,
            set: ChannelSet {
                map,
                roles: self
                    .roles
                    .as_ref()
                    .map(|r| r.item_value(&names))
                    .transpose()?,
                channels,
            },
        })
    }
}

/// Whether `p` may see a template of `site` (`None`: every site's).
fn may_see(site: Option<i64>, admin: bool, sites: &[i64]) -> bool {
    admin || site.is_none_or(|s| sites.contains(&s))
}

/// The templates `p` sees, by id.
pub async fn list_templates(web: &Web, p: &Principal) -> Result<Vec<TemplateView>, WebError> {
    let (uid, admin) = (p.user.id, p.user.is_admin);
    let (all, sites) = web
        .db_call(move |db| {
            let sites: Vec<i64> = if admin {
                Vec::new()
            } else {
                db.user_sites(uid)?.iter().map(|s| s.id).collect()
            };
            Ok((db.templates()?, sites))
        })
        .await?;
    Ok(all
        .iter()
        .filter(|t| may_see(t.site_id, admin, &sites))
        .map(TemplateView::of)
        .collect())
}

/// A template with the devices of the caller whose latest channel registry entry was made from
/// it (the controllers an edit of it concerns).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateDetail {
    /// The template.
    #[serde(flatten)]
    pub template: TemplateView,
    /// Device ids, ascending.
    pub devices: Vec<u32>,
}

/// Template `id` with its devices that `p` sees; 404 for a template `p` does not see.
pub async fn template_detail(
    web: &Web,
    p: &Principal,
    id: i64,
) -> Result<TemplateDetail, WebError> {
    let (uid, admin) = (p.user.id, p.user.is_admin);
    let (found, sites, devices) = web
        .db_call(move |db| {
            let sites: Vec<i64> = if admin {
                Vec::new()
            } else {
                db.user_sites(uid)?.iter().map(|s| s.id).collect()
            };
            Ok((db.template(id)?, sites, db.template_devices(id)?))
        })
        .await?;
    let t = found
        .filter(|t| may_see(t.site_id, admin, &sites))
        .ok_or(WebError::NotFound)?;
    let visible = web.visible(&p.user).await?;
    Ok(TemplateDetail {
        template: TemplateView::of(&t),
        devices: devices
            .into_iter()
            .filter(|d| visible.contains(*d))
            .collect(),
    })
}

/// A template in the list of the template pages: its view, who owns it, what it has and how
/// many of the caller's devices use it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSummary {
    /// The template.
    pub template: TemplateView,
    /// The owner site's name; `None`: built in or for every site.
    pub site_name: Option<String>,
    /// Its channels by kind, e.g. "3 power, 3 energy".
    pub kinds: String,
    /// How many of the caller's devices run a map made from it.
    pub devices: usize,
}

/// The templates `p` sees (the rule of [`list_templates`]), each with what the list page shows.
pub async fn template_summaries(
    web: &Web,
    p: &Principal,
) -> Result<Vec<TemplateSummary>, WebError> {
    let templates = list_templates(web, p).await?;
    let ids: Vec<i64> = templates.iter().map(|t| t.id).collect();
    let (sites, users) = web
        .db_call(move |db| {
            let users = ids
                .iter()
                .map(|id| db.template_devices(*id))
                .collect::<crate::storage::Result<Vec<_>>>()?;
            Ok((db.list_sites()?, users))
        })
        .await?;
    let visible = web.visible(&p.user).await?;
    Ok(templates
        .into_iter()
        .zip(users)
        .map(|(t, devices)| {
            let kinds: Vec<ChannelKind> = t.channels.iter().map(|c| c.kind).collect();
            TemplateSummary {
                site_name: t
                    .site_id
                    .and_then(|s| sites.iter().find(|x| x.id == s))
                    .map(|s| s.name.clone()),
                kinds: super::channel_text::kinds_text(&kinds),
                devices: devices.into_iter().filter(|d| visible.contains(*d)).count(),
                template: t,
            }
        })
        .collect())
}

/// One template as its page shows it: the detail, each channel's source in words, the buses,
/// the owner site's name and the names of the caller's devices that use it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplatePage {
    /// The template and the caller's devices using it.
    pub detail: TemplateDetail,
    /// The owner site's name; `None`: built in or for every site.
    pub site_name: Option<String>,
    /// Per channel, in index order: where its value comes from
    /// ([`super::channel_text::describe_source`]).
    pub sources: Vec<String>,
    /// The serial buses of the map in words, in index order.
    pub buses: Vec<String>,
    /// `(id, name)` of each device in `detail.devices`.
    pub devices: Vec<(u32, String)>,
}

/// Template `id` for its page; 404 for a template `p` does not see (as [`template_detail`]).
pub async fn template_page(web: &Web, p: &Principal, id: i64) -> Result<TemplatePage, WebError> {
    let detail = template_detail(web, p, id).await?;
    let (site, ids) = (detail.template.site_id, detail.devices.clone());
    let (site_name, devices, map) = web
        .db_call(move |db| {
            let site_name = match site {
                Some(s) => db.site(s)?.map(|s| s.name),
                None => None,
            };
            let devices = ids
                .into_iter()
                .map(|d| Ok((d, db.device(d)?.name)))
                .collect::<crate::storage::Result<Vec<_>>>()?;
            Ok((site_name, devices, db.template(id)?.map(|t| t.map)))
        })
        .await?;
    let map = map.ok_or(WebError::NotFound)?;
    // A stored map was validated; a map that does not parse shows no sources rather than fail.
    let (sources, buses) = match ChannelMap::new_checked(&map) {
        Ok(m) => (
            m.channels()
                .map(|c| super::channel_text::describe_source(&m, &c))
                .collect(),
            (0..m.bus_count())
                .filter_map(|i| m.bus(i))
                .map(|b| super::channel_text::describe_bus(&b))
                .collect(),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    Ok(TemplatePage {
        detail,
        site_name,
        sources,
        buses,
        devices,
    })
}

/// A template as it would be stored, from a check that saves nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateCheck {
    /// The channel map bytes, hex.
    pub map: String,
    /// The map's serial buses.
    pub buses: Vec<BusSpec>,
    /// Channel roles, if any.
    pub roles: Option<RolesView>,
    /// Channels in index order, expressions in canonical text.
    pub channels: Vec<ChannelView>,
}

/// Runs every check of [`create_template`] on the input except the rights and the name's
/// uniqueness, and saves nothing: what an editor calls to show an error next to its field
/// before anything is saved (issue 18 point 3).
pub fn check_template(input: &TemplateInput) -> Result<TemplateCheck, WebError> {
    let new = input.parse()?;
    let (name, channels) = crate::storage::channels::validate_template(&new)?;
    let v = TemplateView::of(&TemplateRecord {
        id: 0,
        name,
        builtin: false,
        site_id: new.site_id,
        map: new.set.map,
        roles: new.set.roles,
        created_at: 0,
        updated_at: 0,
        channels,
    });
    Ok(TemplateCheck {
        map: v.map,
        buses: v.buses,
        roles: v.roles,
        channels: v.channels,
    })
}

/// Whether `p` may create, change or delete templates of `site`: an administrator any, a site
/// member their site's; templates for every site (`None`) are the administrators'.
async fn require_manager(web: &Web, p: &Principal, site: Option<i64>) -> Result<(), WebError> {
    let (uid, admin) = (p.user.id, p.user.is_admin);
    match site {
        None => Web::require_admin(&p.user),
        Some(s) if !admin => {
            let member = web
                .db_call(move |db| Ok(db.user_sites(uid)?.iter().any(|x| x.id == s)))
                .await?;
            if member {
                Ok(())
            } else {
                Err(WebError::Invalid(format!("site {s} does not exist")))
            }
        }
        Some(_) => Ok(()),
    }
}

/// Template `id` if `p` may change it: 404 if `p` does not see it, 403 for a built-in one or
/// one `p` may not manage.
async fn changeable(web: &Web, p: &Principal, id: i64) -> Result<TemplateRecord, WebError> {
    let (uid, admin) = (p.user.id, p.user.is_admin);
    let (found, sites) = web
        .db_call(move |db| {
            let sites: Vec<i64> = if admin {
                Vec::new()
            } else {
                db.user_sites(uid)?.iter().map(|s| s.id).collect()
            };
            Ok((db.template(id)?, sites))
        })
        .await?;
    let t = found
        .filter(|t| may_see(t.site_id, admin, &sites))
        .ok_or(WebError::NotFound)?;
    if t.builtin {
        return Err(WebError::Forbidden("built-in templates cannot be changed"));
    }
    require_manager(web, p, t.site_id).await?;
    Ok(t)
}

/// Template `id` as an editor shows it, if `p` may change it (the rule of
/// [`update_template`]): 404 if `p` does not see it, 403 for a built-in one or one `p` may not
/// manage.
pub async fn editable_template(
    web: &Web,
    p: &Principal,
    id: i64,
) -> Result<TemplateView, WebError> {
    Ok(TemplateView::of(&changeable(web, p, id).await?))
}

/// The owners `p` may give a template, `(site id, name)`: `None` ("every site") and every site
/// for an administrator, their own sites for a site member (the rule of [`create_template`]).
/// Empty: `p` may create none.
pub async fn template_owners(
    web: &Web,
    p: &Principal,
) -> Result<Vec<(Option<i64>, String)>, WebError> {
    let sites = crate::service::accounts::visible_sites(web, p).await?;
    let every = p.user.is_admin.then(|| (None, "every site".to_owned()));
    Ok(every
        .into_iter()
        .chain(sites.into_iter().map(|s| (Some(s.id), s.name)))
        .collect())
}

/// Replaces user template `id` (name, site, channels) after the checks of
/// [`TemplateInput::parse`] and of storage; nothing is saved on an error. Returns it.
pub async fn update_template(
    web: &Web,
    p: &Principal,
    id: i64,
    input: &TemplateInput,
) -> Result<TemplateView, WebError> {
    let new = input.parse()?;
    changeable(web, p, id).await?;
    let site = new.site_id;
    require_manager(web, p, site).await?;
    let now = crate::clock::unix_now();
    let stored = web
        .db_call(move |db| {
            db.update_template(id, &new, now)?;
            db.template(id)?
                .ok_or_else(|| crate::storage::Error::Missing(format!("template {id}")))
        })
        .await?;
    web.audit(
        p,
        "template.update",
        None,
        site,
        format!(
            "template {} {} ({} channels)",
            stored.id,
            stored.name,
            stored.channels.len()
        ),
    )
    .await?;
    Ok(TemplateView::of(&stored))
}

/// Deletes user template `id`; devices that use it keep their map.
pub async fn delete_template(web: &Web, p: &Principal, id: i64) -> Result<(), WebError> {
    let t = changeable(web, p, id).await?;
    web.db_call(move |db| db.delete_template(id)).await?;
    web.audit(
        p,
        "template.delete",
        None,
        t.site_id,
        format!("template {} {}", t.id, t.name),
    )
    .await?;
    Ok(())
}

/// Creates a user template: an administrator for any site or every site, a site member for
/// their site. Returns the stored template.
pub async fn create_template(
    web: &Web,
    p: &Principal,
    input: &TemplateInput,
) -> Result<TemplateView, WebError> {
    let new = input.parse()?;
    let site = new.site_id;
    require_manager(web, p, site).await?;
    let now = crate::clock::unix_now();
    let stored = web
        .db_call(move |db| {
            let id = db.create_template(&new, now)?;
            db.template(id)?
                .ok_or_else(|| crate::storage::Error::Missing(format!("template {id}")))
        })
        .await?;
    web.audit(
        p,
        "template.create",
        None,
        site,
        format!(
            "template {} {} ({} channels)",
            stored.id,
            stored.name,
            stored.channels.len()
        ),
    )
    .await?;
    Ok(TemplateView::of(&stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::channels::builtin;

    fn input(map: &[u8]) -> TemplateInput {
        TemplateInput {
            name: "t".into(),
            site_id: None,
            map: Some(hex(map)),
            buses: None,
            roles: None,
            channels: builtin::pool()
                .labels()
                .iter()
                .map(|l| ChannelInput {
                    name: l.name.clone(),
                    kind: l.kind.as_str().into(),
                    decimals: l.decimals,
                    unit: None,
                    exponent: None,
                    source: None,
                    mul: None,
                    div: None,
                    offset: None,
                })
                .collect(),
        }
    }

    fn invalid(r: Result<NewTemplate, WebError>) -> String {
        match r {
            Err(WebError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn input_is_parsed_field_by_field() {
        let map = builtin::pool().map();
        let t = input(&map).parse().unwrap();
        assert_eq!(t.set.map, map);
        assert_eq!(t.set.channels, builtin::pool().labels());
        let mut i = input(&map);
        let hex_map = i.map.clone().unwrap();
        i.map = Some(format!("01 {}", &hex_map[2..]));
        assert_eq!(i.parse().unwrap().set.map, map);
        i.map = Some(format!("{hex_map}0"));
        assert_eq!(invalid(i.parse()), "map: an odd number of hex digits");
        i.map = Some("01zz".into());
        assert_eq!(invalid(i.parse()), "map: byte 1 is not hex");
        let mut i = input(&map);
        i.channels[3].kind = "heat".into();
        assert_eq!(
            invalid(i.parse()),
            "channel 3 (\"Air temperature\"): kind: \"heat\" is none of power, energy, \
             temperature, state, other"
        );
        let mut i = input(&map);
        i.roles = Some(RolesView::from(Roles::POOL).into());
        assert_eq!(i.parse().unwrap().set.roles, Some(vec![2, 3, 0, 1, 0, 1]));
        i.roles = Some(RolesInput {
            air: Some(ChannelRef::Index(0xFF)),
            water: Some(ChannelRef::Name("Power".into())),
            ..RolesView::from(Roles::POOL).into()
        });
        assert_eq!(
            invalid(i.parse()),
            "roles: air: channel 255 does not exist (there are 5 channels)"
        );
        i.roles.as_mut().unwrap().air = None;
        assert_eq!(
            i.parse().unwrap().set.roles,
            Some(vec![0, 0xFF, 0, 1, 0, 1])
        );
        let mut i = input(&map);
        i.channels[1].source = Some(SourceSpec::Input(1));
        assert!(invalid(i.parse()).starts_with("channel 1 (\"Energy\"): source, unit"));
    }

    #[test]
    fn views_carry_units_resolutions_and_roles() {
        let b = builtin::pool();
        let t = TemplateRecord {
            id: 1,
            name: b.name.into(),
            builtin: true,
            site_id: None,
            map: b.map(),
            roles: b.roles_value(),
            created_at: 5,
            updated_at: 6,
            channels: crate::storage::channels::validate(&ChannelSet {
                map: b.map(),
                roles: b.roles_value(),
                channels: b.labels(),
            })
            .unwrap(),
        };
        let v = TemplateView::of(&t);
        assert_eq!(v.map, hex(&b.map()));
        assert_eq!(v.roles, Some(RolesView::from(Roles::POOL)));
        let water = &v.channels[2];
        assert_eq!(
            (water.unit, water.unit_code, water.exponent),
            (Some("°C"), 3, -2)
        );
        assert_eq!(v.channels[4].unit, Some(""));
        assert_eq!(unit_symbol(14), Some("s"));
        assert_eq!(unit_symbol(15), None);
    }

    #[test]
    fn site_templates_are_for_their_members() {
        assert!(may_see(None, false, &[]));
        assert!(may_see(Some(2), false, &[1, 2]));
        assert!(!may_see(Some(3), false, &[1, 2]));
        assert!(may_see(Some(3), true, &[]));
    }
}
