//! Applying a channel-map template to devices (issue 18): every face (today the JSON API,
//! `api::templates::apply`) calls [`apply_template`].
//!
//! For each device the template's map, roles and channel labels become the channel registry
//! entry of a **new configuration version** with the same items as the device's latest one. The
//! version is made by the code that makes every version ([`crate::inproc::Api::save_config`]:
//! pending state, the push, MQTT and alarm events) and audited as `config.save`, so the device
//! pages show the spinner until the device confirms it. The registry entry is saved first, under
//! the version the save will get (latest + 1), so that whoever loads the version — this
//! server's push at once, another server's change feed — finds its map with it and sends it as
//! ConfigChunks (`udp/split.rs`). Should another save of the same device slip in between, it
//! gets the template's map as well (the entry in effect at a version is the newest not above
//! it), which is what the user just asked for.
//!
//! All or nothing for what can be checked: the template must be one the caller sees (404), every
//! device one the caller may change (404, as the API answers for devices it does not show),
//! and the template's channels valid — before anything is saved. A storage failure half way
//! leaves the devices done so far with their new version (each is complete on its own) and is
//! reported as an error.

use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::storage::channels::{validate, ChannelLabel, ChannelSet};
use serde::Serialize;
use tek_proto::message::Config;

/// Most devices one request applies a template to.
pub const MAX_DEVICES: usize = 1000;

/// One device the template was applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Device id.
    pub device: u32,
    /// The new configuration version carrying the template's map.
    pub version: u32,
}

/// Applies template `template_id` to `devices` (ids, in any order; repeats count once) for
/// `p`; returns the new version of each device, by id.
pub async fn apply_template(
    web: &Web,
    p: &Principal,
    template_id: i64,
    devices: &[u32],
) -> Result<Vec<Applied>, WebError> {
    let mut ids = devices.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_DEVICES {
        return Err(WebError::Invalid(format!(
            "devices: 1 to {MAX_DEVICES} device ids"
        )));
    }
    // Visibility of the template (404 for one the caller does not see), then of every device.
    super::channels::template_detail(web, p, template_id).await?;
    for &id in &ids {
        web.check_device(&p.user, id).await?;
    }
    let t = web
        .db_call(move |db| db.template(template_id))
        .await?
        .ok_or(WebError::NotFound)?;
    let set = ChannelSet {
        map: t.map.clone(),
        roles: t.roles.clone(),
        channels: t.channels.iter().map(ChannelLabel::from).collect(),
    };
    validate(&set).map_err(|e| WebError::Invalid(e.to_string()))?;
    let now = crate::clock::unix_now();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let s = set.clone();
        let (config, next) = web
            .db_call(move |db| {
                let latest = db.latest_config(id)?;
                let next = latest.as_ref().map_or(1, |r| r.version + 1);
                db.save_device_channels(id, next, Some(template_id), &s, now)?;
                Ok((latest.map_or_else(Config::default, |r| r.config), next))
            })
            .await?;
        let version = web.api.save_config(id, config).await?;
        if version != next {
            tracing::info!(
                device = id,
                next,
                version,
                "a save slipped in while applying"
            );
        }
        web.audit(
            p,
            "config.save",
            Some(id),
            None,
            format!("v{version}: template {:?} (id {template_id})", t.name),
        )
        .await?;
        out.push(Applied {
            device: id,
            version,
        });
    }
    Ok(out)
}

/// What the device pages say about a configuration version `version` of device `id` in
/// `state` that carries a channel map: while *pending*, why it is not being sent (the
/// controller stated no Capabilities, or ones the map exceeds: `udp::split`); when *rolled
/// back*, that the controller refused the map (a ChunkAck *invalid* or *too large*: the
/// server records that as a rollback, PROTOCOL.md 17.4). `None` for a version with the
/// factory map, or nothing to say.
pub async fn channel_map_note(
    web: &Web,
    id: u32,
    version: u32,
    state: super::states::ConfigStatus,
) -> Result<Option<String>, WebError> {
    use super::states::ConfigStatus;
    match state {
        ConfigStatus::Pending => Ok(web.api.split_wait_reason(id).map(|r| {
            let mut s = r.to_owned();
            s[..1].make_ascii_uppercase();
            format!("{s}.")
        })),
        ConfigStatus::RolledBack => {
            let entry = web
                .db_call(move |db| db.device_channels(id, Some(version)))
                .await?;
            Ok(entry
                .filter(|e| e.version == version && !crate::udp::split::is_factory(e))
                .map(|_| {
                    format!(
                        "v{version} carries a channel map; a controller that finds such a map \
                         invalid or too large for it refuses it, and the server records that as \
                         a rollback. It is not sent again: apply another template or save anew."
                    )
                }))
        }
        _ => Ok(None),
    }
}
