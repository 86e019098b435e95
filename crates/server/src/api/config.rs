//! `GET /api/devices/{id}/config` (the newest configuration and its state; never the GSM
//! password, only whether one is set) and `PUT /api/devices/{id}/config` (a partial change: the
//! fields given replace those of the newest configuration; validated like the form; nothing is
//! saved if anything is wrong).

use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::devices::save_edited;
use crate::web::configure::{apply_form, SystemForm};
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
    let view = crate::web::view::config_view(&state);
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

/// A change; every field optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
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

/// Applies a change to `c`: every problem is listed.
pub fn apply_change(c: &mut Config, ch: &ConfigChange) -> Result<String, Vec<String>> {
    let mut form = SystemForm::from_config(c);
    if let Some(v) = ch.log_interval_s {
        form.log_interval = v.to_string();
    }
    match &ch.ethernet {
        None => {}
        Some(None) => form.eth_ip.clear(),
        Some(Some(e)) => {
            form.eth_ip = e.ip.clone();
            form.eth_netmask = e.netmask.clone();
            form.eth_gateway = e.gateway.clone();
            form.eth_dns = e.dns.clone();
        }
    }
    if let Some(v) = &ch.gsm_apn {
        form.gsm_apn = v.clone();
    }
    if let Some(v) = &ch.gsm_login {
        form.gsm_login = v.clone();
    }
    match ch.gsm_password.as_deref() {
        Some("") => form.gsm_password_clear = Some("on".into()),
        Some(v) => form.gsm_password = v.to_owned(),
        None => {}
    }
    // Each entry is checked as given: the form splits its text at commas and line breaks and
    // skips empty lines, so `[""]` or `["a,b"]` would otherwise be saved as something else
    // than was sent (`[]`: the factory list; two servers).
    let mut errors = server_list_errors(ch.servers.as_deref().unwrap_or_default());
    if let (Some(s), true) = (&ch.servers, errors.is_empty()) {
        form.servers = s.join("\n");
    }
    let mut detail = match apply_form(c, &form) {
        Ok(d) => d,
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut set = |key: &str, v: String| {
        if let Err(e) = crate::device_config::apply(c, &format!("{key}={v}")) {
            errors.push(e.to_string());
        } else {
            detail.push_str(&format!("; {key} {v}"));
        }
    };
    let centi = |x: f64| format!("{:.2}", x);
    if let Some(x) = ch.setpoint_c {
        set("setpoint", centi(x));
    }
    if let Some(x) = ch.hysteresis_c {
        set("hysteresis", centi(x));
    }
    for (key, v) in [
        ("keepalive", ch.keepalive_s),
        ("batch", ch.batch_s),
        ("gsm_failover", ch.gsm_failover_s),
        ("rollback", ch.rollback_s),
    ] {
        if let Some(v) = v {
            set(key, v.to_string());
        }
    }
    if errors.is_empty() {
        Ok(detail)
    } else {
        Err(errors)
    }
}

/// `PUT /api/devices/{id}/config`.
pub async fn put(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    body: Result<Json<ConfigChange>, axum::extract::rejection::JsonRejection>,
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
