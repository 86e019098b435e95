//! `GET /api/devices/{id}/config` (the newest configuration and its state; never the GSM
//! password, only whether one is set) and `PUT /api/devices/{id}/config` (a partial change: the
//! fields given replace those of the newest configuration; validated like the form; nothing is
//! saved if anything is wrong).

use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::config_change::{hundredths, parse_static, ConfigChange, GsmPassword};
use crate::service::devices::save_edited;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use tek_proto::message::Config;

/// The JSON form of a configuration (without the GSM password).
pub fn config_json(c: &Config) -> Value {
    let ip = |a: [u8; 4]| Ipv4Addr::from(a).to_string();
    json!({
        "log_interval_s": c.log_interval_s,
        "ethernet": c.ethernet.map(|e| json!({
            "ip": ip(e.ip), "netmask": ip(e.netmask), "gateway": ip(e.gateway), "dns": ip(e.dns)
        })),
        "gsm": { "apn": c.gsm.apn.as_str(), "login": c.gsm.login.as_str(), "password_set": !c.gsm.password.is_empty() },
        "servers": c.servers.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "thermostat": {
            "setpoint_c": f64::from(c.thermostat.setpoint_cc) / 100.0,
            "hysteresis_c": f64::from(c.thermostat.hysteresis_cc) / 100.0,
        },
        "keepalive_s": c.keepalive_s,
        "batch_s": c.batch_s,
        "gsm_failover_s": c.gsm_failover_s,
        "rollback_s": c.rollback_s,
    })
}

/// `GET /api/devices/{id}/config`.
pub async fn get(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
) -> Result<Json<Value>, JsonError> {
    let state = web.device_for(&p.user, id).await?;
    let latest = web.db_call(move |db| db.latest_config(id)).await?;
    let view = crate::service::view::config_view(&state);
    Ok(Json(match latest {
        Some(r) => json!({
            "version": r.version, "state": view.state, "saved_at": r.saved_at,
            "applied": view.applied, "config": config_json(&r.config),
        }),
        None => {
            json!({ "version": 0, "state": view.state, "config": config_json(&Config::default()) })
        }
    }))
}

/// Fixed IP settings in a change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthernetJson {
    ip: String,
    netmask: String,
    gateway: String,
    dns: String,
}

/// A change as JSON; every field optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigChangeJson {
    log_interval_s: Option<u16>,
    /// `null` = DHCP.
    #[serde(default, with = "double_option")]
    ethernet: Option<Option<EthernetJson>>,
    gsm_apn: Option<String>,
    gsm_login: Option<String>,
    /// A new password; `""` removes it.
    gsm_password: Option<String>,
    servers: Option<Vec<String>>,
    setpoint_c: Option<f64>,
    hysteresis_c: Option<f64>,
    keepalive_s: Option<u16>,
    batch_s: Option<u16>,
    gsm_failover_s: Option<u16>,
    rollback_s: Option<u16>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Problems with the entries of a `servers` list, one message per bad entry.
fn server_list_errors(servers: &[String]) -> Vec<String> {
    servers
        .iter()
        .enumerate()
        .filter(|(_, s)| !tek_proto::message::config::server_ok(s))
        .map(|(i, s)| {
            format!(
                "servers[{i}] {s:?} is not a host name or IPv4 address, optionally with :port \
                 (send \"servers\": [] for the controller's factory list)"
            )
        })
        .collect()
}

impl ConfigChangeJson {
    /// The typed change (the rules about the values are [`ConfigChange::apply`]'s). Problems
    /// reading a field are pushed onto `errors` and leave that field out, so the rest is still
    /// checked.
    pub fn change(&self, errors: &mut Vec<String>) -> ConfigChange {
        let ethernet = match &self.ethernet {
            None => None,
            Some(None) => Some(None),
            Some(Some(e)) => parse_static(errors, &e.ip, &e.netmask, &e.gateway, &e.dns).map(Some),
        };
        // Each entry is checked as given: `[""]` or `["a,b"]` are not a list the API would
        // silently turn into something else (`[]` is the factory list).
        let bad_servers = server_list_errors(self.servers.as_deref().unwrap_or_default());
        let servers = if bad_servers.is_empty() {
            self.servers.clone()
        } else {
            errors.extend(bad_servers);
            None
        };
        let centi = |label: &str, x: Option<f64>, errors: &mut Vec<String>| {
            let x = x?;
            let cc = hundredths(x);
            if cc.is_none() {
                errors.push(format!("{label} {x} is not a temperature in °C."));
            }
            cc
        };
        ConfigChange {
            log_interval_s: self.log_interval_s,
            ethernet,
            gsm_apn: self.gsm_apn.clone(),
            gsm_login: self.gsm_login.clone(),
            gsm_password: self.gsm_password.as_deref().map(|p| match p {
                "" => GsmPassword::Clear,
                p => GsmPassword::Set(p.to_owned()),
            }),
            servers,
            setpoint_cc: centi("Setpoint", self.setpoint_c, errors),
            hysteresis_cc: centi("Hysteresis", self.hysteresis_c, errors),
            keepalive_s: self.keepalive_s,
            batch_s: self.batch_s,
            gsm_failover_s: self.gsm_failover_s,
            rollback_s: self.rollback_s,
        }
    }
}

/// Applies a JSON change to `c`: every problem is listed.
pub fn apply_change(c: &mut Config, ch: &ConfigChangeJson) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let change = ch.change(&mut errors);
    change.apply_after(c, errors)
}

/// `PUT /api/devices/{id}/config`.
pub async fn put(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    body: Result<Json<ConfigChangeJson>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let Json(change) =
        body.map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    let version = save_edited(&web, &p, id, |c| {
        apply_change(c, &change).map_err(|errs| WebError::Invalid(errs.join(" ")))
    })
    .await?;
    Ok(Json(
        json!({ "version": version, "state": crate::service::devices::ConfigStatus::Pending }),
    ))
}
