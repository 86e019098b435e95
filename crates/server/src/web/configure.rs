//! Configure → System: logging interval, Ethernet (blank IP = DHCP), GSM APN/login/password,
//! server list. "Save Changes" reads the form into a [`ConfigChange`] and applies it
//! ([`ConfigChange::apply`]: field by field with a message each, then the device's own rules),
//! saves a new version and pushes it; nothing is saved if anything is wrong. The page then shows the
//! spinner until the controller confirms the version, and the green dot after.
//!
//! The stored GSM password is never sent to the browser: the field is empty, and leaving it
//! empty keeps the stored one ("clear" removes it).

use super::auth::{CsrfForm, PageUser, Posted};
use super::device::heading;
use super::error::HtmlError;
use super::layout::{self, Nav};
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::config_change::{parse_static, seconds_message, ConfigChange, GsmPassword};
use crate::service::devices::{save_if_changed, ConfigStatus};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use std::net::Ipv4Addr;
use tek_proto::message::config as pc;
use tek_proto::message::Config;

/// The System form (also what the page shows when it opens).
#[derive(Debug, Deserialize, Default, Clone)]
pub struct SystemForm {
    #[serde(default)]
    csrf: String,
    /// Seconds.
    pub log_interval: String,
    /// Blank = DHCP.
    #[serde(default)]
    pub eth_ip: String,
    /// Dotted netmask.
    #[serde(default)]
    pub eth_netmask: String,
    /// Gateway.
    #[serde(default)]
    pub eth_gateway: String,
    /// DNS server.
    #[serde(default)]
    pub eth_dns: String,
    /// APN.
    #[serde(default)]
    pub gsm_apn: String,
    /// Login.
    #[serde(default)]
    pub gsm_login: String,
    /// New password; blank keeps the stored one.
    #[serde(default)]
    pub gsm_password: String,
    /// `on` to remove the stored password.
    #[serde(default)]
    pub gsm_password_clear: Option<String>,
    /// One server per line (or comma-separated).
    #[serde(default)]
    pub servers: String,
}

impl CsrfForm for SystemForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl SystemForm {
    /// The form filled from a configuration (without the GSM password).
    pub fn from_config(c: &Config) -> SystemForm {
        let ip = |a: [u8; 4]| Ipv4Addr::from(a).to_string();
        let e = c.ethernet;
        SystemForm {
            csrf: String::new(),
            log_interval: c.log_interval_s.to_string(),
            eth_ip: e.map(|e| ip(e.ip)).unwrap_or_default(),
            eth_netmask: e.map(|e| ip(e.netmask)).unwrap_or_default(),
            eth_gateway: e.map(|e| ip(e.gateway)).unwrap_or_default(),
            eth_dns: e.map(|e| ip(e.dns)).unwrap_or_default(),
            gsm_apn: c.gsm.apn.to_string(),
            gsm_login: c.gsm.login.to_string(),
            gsm_password: String::new(),
            gsm_password_clear: None,
            servers: c
                .servers
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The form field a message of [`apply_form`] is about (by the words it starts with), so the
/// page can show it under that field.
pub fn field_of(message: &str) -> Option<&'static str> {
    [
        ("Logging interval", "log_interval"),
        ("IP address", "eth_ip"),
        ("Netmask", "eth_netmask"),
        ("Gateway", "eth_gateway"),
        ("The gateway", "eth_gateway"),
        ("DNS server", "eth_dns"),
        ("GSM APN", "gsm_apn"),
        ("GSM login", "gsm_login"),
        ("GSM password", "gsm_password"),
        ("Server", "servers"),
        ("At most", "servers"),
    ]
    .iter()
    .find(|(p, _)| message.starts_with(p))
    .map(|(_, f)| *f)
}

impl SystemForm {
    /// The change this form asks for: every field, as the page shows them all. Problems reading
    /// a field are pushed onto `errors` and leave that field out, so the rest is still checked.
    pub fn change(&self, errors: &mut Vec<String>) -> ConfigChange {
        let range = pc::range::LOG_INTERVAL_S;
        let log_interval_s = self.log_interval.trim().parse::<u16>().ok();
        if log_interval_s.is_none() {
            errors.push(seconds_message("Logging interval", &range));
        }
        let ethernet = if self.eth_ip.trim().is_empty() {
            Some(None)
        } else {
            parse_static(
                errors,
                &self.eth_ip,
                &self.eth_netmask,
                &self.eth_gateway,
                &self.eth_dns,
            )
            .map(Some)
        };
        let gsm_password = if self.gsm_password_clear.is_some() {
            Some(GsmPassword::Clear)
        } else if self.gsm_password.is_empty() {
            None
        } else {
            Some(GsmPassword::Set(self.gsm_password.clone()))
        };
        let servers = self
            .servers
            .split(['\n', ',', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        ConfigChange {
            log_interval_s,
            ethernet,
            gsm_apn: Some(self.gsm_apn.clone()),
            gsm_login: Some(self.gsm_login.clone()),
            gsm_password,
            servers: Some(servers),
            ..ConfigChange::default()
        }
    }
}

/// Applies the form to `c`; every problem is reported, and `c` is only meaningful if none.
pub fn apply_form(c: &mut Config, f: &SystemForm) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let change = f.change(&mut errors);
    change.apply_after(c, errors)
}

/// Query of the page.
#[derive(Debug, Deserialize, Default)]
pub struct ConfigureQuery {
    /// The version just saved (shows the confirmation line).
    pub saved: Option<u32>,
    /// The form was saved unchanged: no version was made, this one stays.
    pub unchanged: Option<u32>,
    /// The device was just renamed.
    pub renamed: Option<u8>,
    /// Fill the form from this version (the one the controller runs after a rollback).
    pub from_version: Option<u32>,
}

async fn render(
    web: &Web,
    p: &crate::http::auth::Principal,
    id: u32,
    form: Option<&SystemForm>,
    errors: &[String],
    q: &ConfigureQuery,
) -> Result<axum::response::Html<String>, WebError> {
    let (saved, unchanged, renamed) = (q.saved, q.unchanged, q.renamed.is_some());
    let state = web.device_for(&p.user, id).await?;
    let v = web.view(state).await?;
    let from_version = q.from_version;
    let (latest, site, older) = web
        .db_call(move |db| {
            let site = match db.device_site(id)? {
                Some(s) => db.site(s)?.map(|s| s.name),
                None => None,
            };
            let older = match from_version {
                Some(n) => db.config_version(id, n)?,
                None => None,
            };
            Ok((db.latest_config(id)?, site, older))
        })
        .await?;
    let cfg = latest.map_or_else(Config::default, |r| r.config);
    let has_password = !cfg.gsm.password.is_empty();
    // After a rollback: what the controller runs, to offer a form reset to it.
    let running = (v.config.state == ConfigStatus::RolledBack)
        .then(|| v.status.as_ref().map(|s| s.config_version))
        .flatten()
        .filter(|&n| n > 0 && n != v.config.desired);
    // ... and why: the network settings the rolled-back version changed (web/rollback.rs).
    let why = match running {
        Some(n) => {
            let tried = cfg.clone();
            web.db_call(move |db| db.config_version(id, n))
                .await?
                .map(|r| super::rollback::network_changes(&r.config, &tried))
        }
        None => None,
    };
    // A version with a channel map: why it waits, or that it was refused (service::apply).
    let map_note =
        crate::service::apply::channel_map_note(web, id, v.config.desired, v.config.state).await?;
    let f = form
        .cloned()
        .unwrap_or_else(|| SystemForm::from_config(older.as_ref().map_or(&cfg, |r| &r.config)));
    let now = crate::clock::unix_now();
    let mut errs = super::fields::FieldErrors::default();
    for e in errors {
        if let Some(f) = field_of(e) {
            if errs.get(f).is_none() {
                errs.push(f, e.clone());
            }
        }
    }
    let errs = &errs;
    let body = html! {
        (heading(&v, site.as_deref(), now))
        h2 { "Configure → System" }
        form.inline #rename method="post" action={ "/devices/" (id) "/rename" } {
            (layout::csrf_field(p))
            label { "Name" input #device-name name="name" required maxlength=(crate::service::devices::MAX_NAME) value=(v.name); }
            button type="submit" { "Rename" }
        }
        @if renamed { (layout::flash(true, "Renamed.")) }
        @if let Some(r) = &older {
            p.flash.ok #reset-state role="status" { "The form shows v" (r.version) ", what the controller runs. Save to make it the newest version." }
        } @else if let Some(n) = running {
            div.flash.error #rolled-back role="alert" {
                p {
                    "The controller rolled v" (v.config.desired) " back and runs v" (n) " again. "
                    a #reset-form href={ "/devices/" (id) "/configure?from_version=" (n) } { "Reset the form to v" (n) }
                }
                @if let Some(changes) = why.as_ref().filter(|c| !c.is_empty()) {
                    p #rollback-why { "Why: " (super::rollback::reason(v.config.desired, &cfg)) }
                    ul { @for c in changes { li { (c) } } }
                }
            }
        }
        @if let Some(note) = &map_note {
            p.flash.error #channel-map-note role="status" { (note) }
        }
        @if let Some(ver) = saved {
            p.flash.ok #save-state data-version=(ver) role="status" {
                "Saved as configuration v" (ver) ". "
                span data-field="config-wait" { (if v.config.state == ConfigStatus::Pending { "Waiting for the controller to confirm…" } else { "" }) }
            }
        }
        @if let Some(ver) = unchanged {
            p.flash.ok #save-state data-unchanged=(ver) role="status" { "Nothing changed: the configuration stays v" (ver) "; no new version was made." }
        }
        @if !errors.is_empty() {
            div.flash.error #errors role="alert" {
                p { "Nothing was saved:" }
                ul { @for e in errors { li { (e) } } }
            }
        }
        form.system #system method="post" data-plain action={ "/devices/" (id) "/configure" } {
            (layout::csrf_field(p))
            fieldset {
                legend { "Logging" }
                label { "Logging interval (s)" input #log_interval type="number" name="log_interval" value=(f.log_interval) min="10" max="3600" required
                    aria-invalid=[errs.invalid("log_interval")] aria-describedby=[errs.described_by("log_interval")];
                    (errs.note("log_interval")) }
            }
            fieldset {
                legend { "Ethernet" }
                p.hint { "Leave the IP address blank to use DHCP." }
                label { "IP address" input #eth_ip name="eth_ip" value=(f.eth_ip) placeholder="DHCP" inputmode="decimal"
                    aria-invalid=[errs.invalid("eth_ip")] aria-describedby=[errs.described_by("eth_ip")];
                    (errs.note("eth_ip")) }
                label { "Netmask" input #eth_netmask name="eth_netmask" value=(f.eth_netmask) placeholder="255.255.255.0" inputmode="decimal"
                    aria-invalid=[errs.invalid("eth_netmask")] aria-describedby=[errs.described_by("eth_netmask")];
                    (errs.note("eth_netmask")) }
                label { "Gateway" input #eth_gateway name="eth_gateway" value=(f.eth_gateway) inputmode="decimal"
                    aria-invalid=[errs.invalid("eth_gateway")] aria-describedby=[errs.described_by("eth_gateway")];
                    (errs.note("eth_gateway")) }
                label { "DNS server" input #eth_dns name="eth_dns" value=(f.eth_dns) inputmode="decimal"
                    aria-invalid=[errs.invalid("eth_dns")] aria-describedby=[errs.described_by("eth_dns")];
                    (errs.note("eth_dns")) }
            }
            fieldset {
                legend { "GSM" }
                label { "APN" input #gsm_apn name="gsm_apn" value=(f.gsm_apn) maxlength="63"
                    aria-invalid=[errs.invalid("gsm_apn")] aria-describedby=[errs.described_by("gsm_apn")];
                    (errs.note("gsm_apn")) }
                label { "Login" input #gsm_login name="gsm_login" value=(f.gsm_login) maxlength="63" autocomplete="off"
                    aria-invalid=[errs.invalid("gsm_login")] aria-describedby=[errs.described_by("gsm_login")];
                    (errs.note("gsm_login")) }
                label { "Password"
                    input #gsm_password type="password" name="gsm_password" value="" maxlength="63" autocomplete="new-password"
                        placeholder=(if has_password { "stored — leave blank to keep" } else { "none stored" })
                        aria-invalid=[errs.invalid("gsm_password")] aria-describedby=[errs.described_by("gsm_password")];
                    (errs.note("gsm_password"))
                }
                @if has_password { label.check { input type="checkbox" name="gsm_password_clear" value="on"; "Remove the stored password" } }
            }
            fieldset {
                legend { "Servers" }
                p.hint { "One per line, host or host:port, tried in order (at most 8). Empty: the controller's factory list." }
                textarea #servers name="servers" rows="4" aria-label="Servers, one per line"
                    aria-invalid=[errs.invalid("servers")] aria-describedby=[errs.described_by("servers")] { (f.servers) }
                (errs.note("servers"))
            }
            button #save type="submit" { "Save Changes" }
        }
    };
    Ok(layout::page(
        p,
        Nav::None,
        &format!("{} — System", v.name),
        body,
    ))
}

/// `GET /devices/{id}/configure`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<u32>,
    Query(q): Query<ConfigureQuery>,
) -> Result<Response, HtmlError> {
    Ok(render(&web, &p, id, None, &[], &q).await?.into_response())
}

/// `POST /devices/{id}/configure`.
pub async fn save(
    State(web): State<Web>,
    Path(id): Path<u32>,
    Posted { user, form }: Posted<SystemForm>,
) -> Result<Response, HtmlError> {
    web.check_device(&user.user, id).await?;
    let mut errors = Vec::new();
    let f = form.clone();
    let saved = save_if_changed(&web, &user, id, |c| {
        apply_form(c, &f).map_err(|e| {
            errors = e;
            WebError::Invalid("invalid input".into())
        })
    })
    .await;
    match saved {
        Ok(s) => {
            let key = if s.changed { "saved" } else { "unchanged" };
            Ok(
                Redirect::to(&format!("/devices/{id}/configure?{key}={}", s.version))
                    .into_response(),
            )
        }
        Err(WebError::Invalid(m)) => {
            if errors.is_empty() {
                errors.push(m);
            }
            let mut shown = form;
            shown.gsm_password.clear();
            let page = render(
                &web,
                &user,
                id,
                Some(&shown),
                &errors,
                &ConfigureQuery::default(),
            )
            .await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> SystemForm {
        SystemForm::from_config(&Config::default())
    }

    #[test]
    fn valid_changes_apply() {
        let mut c = Config::default();
        let mut f = form();
        f.log_interval = "30".into();
        f.eth_ip = "192.168.1.20".into();
        f.eth_netmask = "255.255.255.0".into();
        f.eth_gateway = "192.168.1.1".into();
        f.eth_dns = "192.168.1.1".into();
        f.gsm_apn = "internet".into();
        f.gsm_password = "s3cret".into();
        f.servers = "a.example:8844\nb.example".into();
        let detail = apply_form(&mut c, &f).unwrap();
        assert!(!detail.contains("s3cret"), "{detail}");
        assert_eq!(c.log_interval_s, 30);
        assert_eq!(c.ethernet.unwrap().ip, [192, 168, 1, 20]);
        assert_eq!(c.gsm.password.as_str(), "s3cret");
        assert_eq!(c.servers.len(), 2);
        // Blank password keeps it; blank IP restores DHCP.
        let mut f2 = SystemForm::from_config(&c);
        assert_eq!(
            f2.gsm_password, "",
            "the stored password is never put in the form"
        );
        f2.eth_ip.clear();
        apply_form(&mut c, &f2).unwrap();
        assert_eq!(c.gsm.password.as_str(), "s3cret");
        assert!(c.ethernet.is_none());
        f2.gsm_password_clear = Some("on".into());
        apply_form(&mut c, &f2).unwrap();
        assert!(c.gsm.password.is_empty());
    }

    #[test]
    fn invalid_input_is_explained() {
        type Edit<'a> = &'a dyn Fn(&mut SystemForm);
        let cases: &[(&str, Edit<'_>, &str)] = &[
            (
                "interval",
                &|f| f.log_interval = "5".into(),
                "Logging interval",
            ),
            (
                "interval text",
                &|f| f.log_interval = "abc".into(),
                "Logging interval",
            ),
            (
                "bad ip",
                &|f| {
                    f.eth_ip = "300.1.1.1".into();
                    f.eth_netmask = "255.255.255.0".into();
                    f.eth_gateway = "10.0.0.1".into();
                    f.eth_dns = "10.0.0.1".into();
                },
                "not an IPv4 address",
            ),
            (
                "bad mask",
                &|f| {
                    f.eth_ip = "10.0.0.5".into();
                    f.eth_netmask = "255.0.255.0".into();
                    f.eth_gateway = "10.0.0.1".into();
                    f.eth_dns = "10.0.0.1".into();
                },
                "Netmask 255.0.255.0 is not valid",
            ),
            (
                "gw outside",
                &|f| {
                    f.eth_ip = "10.0.0.5".into();
                    f.eth_netmask = "255.255.255.0".into();
                    f.eth_gateway = "10.0.1.1".into();
                    f.eth_dns = "10.0.0.1".into();
                },
                "not in the subnet",
            ),
            (
                "missing mask",
                &|f| {
                    f.eth_ip = "10.0.0.5".into();
                },
                "Netmask is required",
            ),
            ("server", &|f| f.servers = "bad host!".into(), "Server"),
            ("apn", &|f| f.gsm_apn = "\u{7}".into(), "GSM APN"),
        ];
        for (name, edit, want) in cases {
            let mut f = form();
            edit(&mut f);
            let mut c = Config::default();
            let errs = apply_form(&mut c, &f).expect_err(name);
            assert!(errs.iter().any(|e| e.contains(want)), "{name}: {errs:?}");
        }
    }
}
