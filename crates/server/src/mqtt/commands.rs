//! Commands in over MQTT (off unless `[mqtt] commands = true`).
//!
//! A client publishes to `{prefix}/{site}/{device}/set`:
//!
//! ```json
//! {"token": "<API token>", "command": "pump_on", "id": "any correlation value"}
//! {"token": "<API token>", "setpoint": 28.5, "hysteresis": 0.5}
//! ```
//!
//! and tek answers on `{prefix}/{site}/{device}/set/result` with `{"id", "ok": true, ...}` or
//! `{"id", "ok": false, "error": "..."}`.
//!
//! Access control: the token is an ordinary API token (Account → API tokens), checked by tek
//! exactly as a bearer token of the JSON API; the user it belongs to must be a member of the
//! device's site (or an admin), and the site in the topic must be the device's site. So the
//! credential is per user and per site as in the web UI, revocable there, and every command is
//! audited under that user's name. Broker credentials alone never suffice: tek does not trust
//! whoever can publish on the broker (a broker's ACLs are outside tek's control and MQTT 3.1.1
//! does not tell the receiver who published). The token travels in the payload, so the broker
//! must let only tek read the `set` topics (docs/MQTT.md shows the mosquitto ACL), and the
//! connection must use TLS wherever it leaves the host.
//!
//! From there the command takes the web UI's path: [`crate::service::commands::parse_command`] and
//! [`crate::service::commands::queue`] for a relay or status command, [`crate::service::devices::save_edited`]
//! with [`crate::device_config::apply`] for the thermostat — validated, audited and pushed by the
//! same code.

use super::{Counters, MqttConfig};
use crate::http::auth::{self, Principal, Via};
use crate::http::error::WebError;
use crate::http::Web;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// A message received on a command topic.
#[derive(Debug)]
pub struct Incoming {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A command message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    token: String,
    #[serde(default)]
    id: Value,
    command: Option<String>,
    setpoint: Option<f64>,
    hysteresis: Option<f64>,
}

/// Where a command topic points: site level and device.
fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, u32)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (site, device, leaf) = (parts.next()?, parts.next()?, parts.next()?);
    if leaf != "set" || parts.next().is_some() {
        return None;
    }
    Some((site, device.parse().ok()?))
}

/// Handles command messages until `stop`.
pub(crate) async fn run(
    web: Web,
    client: super::link::Client,
    cfg: MqttConfig,
    counters: Arc<Counters>,
    mut rx: mpsc::Receiver<Incoming>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = crate::runtime::stopped(&mut stop) => break,
        };
        let Some((site, device)) = parse_topic(&cfg.prefix, &msg.topic) else {
            continue;
        };
        let (id, answer) = handle(&web, site, device, &msg.payload).await;
        let reply = match answer {
            Ok(mut v) => {
                counters.commands_accepted.fetch_add(1, Ordering::Relaxed);
                v["ok"] = json!(true);
                v["id"] = id;
                v
            }
            Err(e) => {
                counters.commands_refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(topic = %msg.topic, error = %e, "MQTT command refused");
                json!({ "id": id, "ok": false, "error": e })
            }
        };
        let topic = format!("{}/{site}/{device}/set/result", cfg.prefix);
        if let Err(e) = client
            .publish(topic, false, reply.to_string().into_bytes())
            .await
        {
            tracing::warn!(%e, "cannot publish a command result");
        }
    }
    tracing::debug!("MQTT command task stopped");
}

fn shown(e: WebError) -> String {
    match e {
        WebError::Internal(why) => {
            tracing::warn!(%why, "MQTT command failed");
            "internal error".into()
        }
        e => e.to_string(),
    }
}

/// Checks and carries out one command; returns the correlation id and the answer.
async fn handle(
    web: &Web,
    site: &str,
    device: u32,
    payload: &[u8],
) -> (Value, Result<Value, String>) {
    let body: Body = match serde_json::from_slice(payload) {
        Ok(b) => b,
        Err(e) => return (Value::Null, Err(format!("bad command message: {e}"))),
    };
    let id = body.id.clone();
    (id, execute(web, site, device, body).await)
}

async fn execute(web: &Web, site: &str, device: u32, body: Body) -> Result<Value, String> {
    let p = auth::from_token(&body.token, web)
        .await
        .map_err(|_| "unauthorized: unknown or expired token".to_owned())?;
    let p = Principal {
        via: Via::Mqtt,
        ..p
    };
    // The device must be visible to the user (site membership), and in the site the topic
    // names: a client allowed on one site cannot reach another site's devices by topic.
    web.check_device(&p.user, device).await.map_err(shown)?;
    let actual = web
        .db_call(move |db| db.device_site(device))
        .await
        .map_err(shown)?;
    if super::payload::site_level(actual) != site {
        return Err(WebError::NotFound.to_string());
    }
    match (body.command, body.setpoint, body.hysteresis) {
        (Some(c), None, None) => {
            let c = crate::service::commands::parse_command(&c).map_err(shown)?;
            let cid = crate::service::commands::queue(web, &p, device, c)
                .await
                .map_err(shown)?;
            Ok(json!({ "command_id": cid }))
        }
        (None, setpoint, hysteresis) if setpoint.is_some() || hysteresis.is_some() => {
            let version = crate::service::devices::save_edited(web, &p, device, |c| {
                let settings: Vec<String> = setpoint
                    .map(|v| format!("setpoint={v}"))
                    .into_iter()
                    .chain(hysteresis.map(|v| format!("hysteresis={v}")))
                    .collect();
                crate::device_config::apply(c, &settings)
                    .map_err(|e| WebError::Invalid(e.to_string()))
            })
            .await
            .map_err(shown)?;
            Ok(json!({ "config_version": version }))
        }
        _ => Err(
            "a command message has either \"command\" or \"setpoint\"/\"hysteresis\"".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_topics() {
        assert_eq!(parse_topic("tek", "tek/3/17/set"), Some(("3", 17)));
        assert_eq!(parse_topic("a/b", "a/b/none/1/set"), Some(("none", 1)));
        for bad in [
            "tek/3/17/set/result",
            "tek/3/x/set",
            "tek/3/17",
            "tekx/3/17/set",
            "other/3/1/set",
        ] {
            assert_eq!(parse_topic("tek", bad), None, "{bad}");
        }
    }
}
