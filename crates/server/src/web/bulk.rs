//! `POST /devices/bulk`: one configuration change (logging interval, thermostat setpoint) applied
//! to the controllers selected on the dashboard. Every selected controller must be one the user
//! may change and the change must be valid before anything is saved; then each controller gets
//! its own new version (none where nothing changes), audited like a change on its own page.

use super::auth::{CsrfForm, Posted};
use super::error::HtmlError;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::devices::save_if_changed;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::HashMap;
use tek_proto::message::Config;

/// Most controllers in one bulk change.
pub const MAX_SELECTED: usize = 1000;

/// The bulk form: the selection as `sel_{id}=on` check boxes, and the fields to change (blank:
/// left as each controller has it).
#[derive(Debug, Deserialize)]
pub struct BulkForm {
    csrf: String,
    #[serde(default)]
    log_interval: String,
    #[serde(default)]
    setpoint: String,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

impl CsrfForm for BulkForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl BulkForm {
    /// The selected ids, sorted.
    fn selected(&self) -> Result<Vec<u32>, WebError> {
        selected_ids(&self.rest)
    }

    /// The changes as `key=value` settings (`crate::device_config`), checked on a default
    /// configuration.
    fn changes(&self) -> Result<Vec<String>, WebError> {
        let mut out = Vec::new();
        for (key, v) in [
            ("log_interval", &self.log_interval),
            ("setpoint", &self.setpoint),
        ] {
            if !v.trim().is_empty() {
                out.push(format!("{key}={}", v.trim()));
            }
        }
        if out.is_empty() {
            return Err(WebError::Invalid(
                "log_interval: give a logging interval or a setpoint to apply".into(),
            ));
        }
        crate::device_config::apply(&mut Config::default(), &out)
            .map_err(|e| WebError::Invalid(e.to_string()))?;
        Ok(out)
    }
}

/// The controllers ticked in a form as `sel_{id}=on` check boxes (the dashboard's selection,
/// a template's "apply to"), sorted: at least one, at most [`MAX_SELECTED`].
pub(super) fn selected_ids(fields: &HashMap<String, String>) -> Result<Vec<u32>, WebError> {
    let mut ids: Vec<u32> = fields
        .keys()
        .filter_map(|k| k.strip_prefix("sel_"))
        .map(|v| {
            v.parse()
                .map_err(|_| WebError::Invalid(format!("{v:?} is not a controller")))
        })
        .collect::<Result<_, _>>()?;
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(WebError::Invalid(
            "select: tick at least one controller".into(),
        ));
    }
    if ids.len() > MAX_SELECTED {
        return Err(WebError::Invalid(format!(
            "select: at most {MAX_SELECTED} controllers at once"
        )));
    }
    Ok(ids)
}

/// `POST /devices/bulk`.
pub async fn apply(
    State(web): State<Web>,
    Posted { user, form }: Posted<BulkForm>,
) -> Result<Response, HtmlError> {
    let ids = form.selected()?;
    let changes = form.changes()?;
    for &id in &ids {
        web.check_device(&user.user, id).await?;
    }
    let (mut changed, mut same) = (0, 0);
    for &id in &ids {
        let ch = changes.clone();
        let saved = save_if_changed(&web, &user, id, move |c| {
            crate::device_config::apply(c, &ch).map_err(|e| WebError::Invalid(e.to_string()))?;
            Ok(format!("bulk change: {}", ch.join(", ")))
        })
        .await?;
        if saved.changed {
            changed += 1;
        } else {
            same += 1;
        }
    }
    let msg = format!(
        "{} applied to {changed} controller(s); {same} already had it.",
        changes.join(", ")
    );
    let q = serde_urlencoded::to_string([("ok", msg)]).unwrap_or_default();
    Ok(Redirect::to(&format!("/dashboard?{q}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BulkForm {
        let body = serde_urlencoded::to_string(pairs).unwrap();
        serde_urlencoded::from_str(&format!("csrf=x&{body}")).unwrap()
    }

    #[test]
    fn selection_and_changes_are_checked() {
        let f = form(&[("sel_3", "on"), ("sel_12", "on"), ("setpoint", "28.5")]);
        assert_eq!(f.selected().unwrap(), vec![3, 12]);
        assert_eq!(f.changes().unwrap(), vec!["setpoint=28.5"]);
        assert!(form(&[("setpoint", "28")]).selected().is_err());
        assert!(form(&[("sel_x", "on")]).selected().is_err());
        assert!(
            form(&[("sel_1", "on")]).changes().is_err(),
            "nothing to apply"
        );
        assert!(form(&[("sel_1", "on"), ("log_interval", "5")])
            .changes()
            .is_err());
        assert!(form(&[("sel_1", "on"), ("setpoint", "hot")])
            .changes()
            .is_err());
    }
}
