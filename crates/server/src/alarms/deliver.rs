//! Delivery of notifications: a bounded queue, at most `delivery_workers` deliveries in flight,
//! each retried `retries` times with a doubling delay; every result goes into the notification
//! log (`storage::AlarmStore::notification_done`).
//!
//! * E-mail: SMTP through the relay in `[alarms.smtp]` (lettre): STARTTLS (required) or
//!   implicit TLS, or plain SMTP for a relay on this machine; AUTH PLAIN/LOGIN when a user name
//!   is set.
//! * Webhook: `POST` of the JSON body to the destination's `https://` (or `http://`) URL with
//!   `Content-Type: application/json` and `X-Tek-Signature: sha256=<hex>`, the HMAC-SHA256 of the
//!   exact body bytes under the destination's secret (RustCrypto `hmac` + `sha2`). Any 2xx
//!   answer is success.
//!
//! TLS ([`super::tls`]): rustls, trusting the system's roots plus `alarms.ca_file`. A
//! certificate that does not verify fails the attempt like a refused connection: retried, then
//! logged as failed with rustls' reason.

use super::config::SmtpTls;
use super::tls::{reason, Trust};
use super::AlarmsConfig;
use crate::storage::{DeliveryState, Destination, DestinationKind, Storage};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};

/// The header carrying a webhook's signature.
pub const SIGNATURE_HEADER: &str = "x-tek-signature";

/// One notification to one destination.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its row in the notification log.
    pub note_id: i64,
    /// Where to.
    pub destination: Destination,
    /// Subject line (e-mail).
    pub subject: String,
    /// Plain text (e-mail).
    pub text: String,
    /// JSON body (webhook).
    pub body: String,
}

/// The sending end of the delivery queue.
pub(crate) struct Queue {
    tx: mpsc::Sender<Job>,
    storage: Arc<dyn Storage>,
}

impl Queue {
    /// A queue whose jobs go to `tx` (tests take them from the other end).
    #[cfg(test)]
    pub(crate) fn to(tx: mpsc::Sender<Job>, storage: Arc<dyn Storage>) -> Queue {
        Queue { tx, storage }
    }

    /// Queues a job; a full queue fails it at once (logged), so nothing upstream ever waits.
    pub fn push(&self, job: Job) {
        if let Err(e) = self.tx.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            };
            let s = self.storage.clone();
            let at = crate::clock::unix_now();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = s.notification_done(
                    job.note_id,
                    DeliveryState::Failed,
                    0,
                    Some("delivery queue full"),
                    at,
                ) {
                    tracing::warn!(%e, "cannot log a notification result");
                }
            });
        }
    }
}

/// What every delivery needs: the settings, the trusted certificates, the webhook client.
struct Context {
    cfg: AlarmsConfig,
    /// The trusted certificates, or why they could not be loaded (every TLS delivery then
    /// fails with that reason; the configuration check at start makes this rare).
    trust: Result<Trust, String>,
    /// The webhook client (connection pool), over `trust`.
    webhooks: Result<WebhookClient, String>,
}

type WebhookClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

impl Context {
    fn new(cfg: AlarmsConfig) -> Context {
        let trust = Trust::load(cfg.ca_file.as_deref()).map_err(|e| e.to_string());
        if let Err(e) = &trust {
            tracing::error!(error = %e, "alarm delivery over TLS will fail");
        }
        let webhooks = trust.as_ref().map_err(Clone::clone).map(|t| {
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(t.https())
        });
        Context {
            cfg,
            trust,
            webhooks,
        }
    }
}

/// Starts the delivery dispatcher; it stops taking jobs at `stop`.
pub(crate) fn start(
    storage: Arc<dyn Storage>,
    cfg: AlarmsConfig,
    counters: Arc<super::counters::Counters>,
    mut stop: watch::Receiver<bool>,
) -> Queue {
    let (tx, mut rx) = mpsc::channel::<Job>(cfg.delivery_queue);
    let queue = Queue {
        tx,
        storage: storage.clone(),
    };
    let permits = Arc::new(Semaphore::new(cfg.delivery_workers));
    let cfg = Arc::new(Context::new(cfg));
    tokio::spawn(async move {
        loop {
            let job = tokio::select! {
                j = rx.recv() => match j {
                    Some(j) => j,
                    None => break,
                },
                _ = crate::runtime::stopped(&mut stop) => break,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (storage, cfg, counters) = (storage.clone(), cfg.clone(), counters.clone());
            tokio::spawn(async move {
                let ok = deliver(&storage, &cfg, job).await;
                let c = if ok { &counters.sent } else { &counters.failed };
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(permit);
            });
        }
    });
    queue
}

/// Delivers one job with retries and logs the result; returns whether it was delivered.
async fn deliver(storage: &Arc<dyn Storage>, ctx: &Context, job: Job) -> bool {
    let cfg = &ctx.cfg;
    let mut wait = Duration::from_millis(cfg.retry_initial_ms);
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let mut attempts = 0u32;
    let result = loop {
        attempts += 1;
        let r = match tokio::time::timeout(timeout, attempt(ctx, &job)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {} ms", cfg.timeout_ms)),
        };
        match r {
            Ok(()) => break Ok(()),
            Err(e) if attempts > cfg.retries => break Err(e),
            Err(e) => {
                tracing::debug!(note = job.note_id, error = %e, "delivery failed; retrying");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
    };
    let (state, error) = match &result {
        Ok(()) => (DeliveryState::Sent, None),
        Err(e) => {
            tracing::warn!(
                note = job.note_id,
                destination = %job.destination.name,
                error = %e,
                "notification not delivered"
            );
            (DeliveryState::Failed, Some(e.clone()))
        }
    };
    let s = storage.clone();
    let at = crate::clock::unix_now();
    let note = job.note_id;
    let logged = crate::runtime::blocking(move || {
        s.notification_done(note, state, attempts, error.as_deref(), at)
    })
    .await;
    if logged.is_err() {
        tracing::warn!(note, "cannot log a notification result");
    }
    result.is_ok()
}

async fn attempt(ctx: &Context, job: &Job) -> Result<(), String> {
    match job.destination.kind {
        DestinationKind::Email => email(ctx, job).await,
        DestinationKind::Webhook => webhook(ctx, job).await,
    }
}

async fn email(ctx: &Context, job: &Job) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::Tls;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let smtp = &ctx.cfg.smtp;
    let msg = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("sender: {e}"))?)
        .to(job
            .destination
            .target
            .parse()
            .map_err(|e| format!("recipient: {e}"))?)
        .subject(job.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(job.text.clone())
        .map_err(|e| format!("message: {e}"))?;
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        mode => {
            let trust = ctx.trust.as_ref().map_err(Clone::clone)?;
            let params = trust.smtp(&smtp.host)?;
            if mode == SmtpTls::Tls {
                Tls::Wrapper(params)
            } else {
                // Required: no STARTTLS offered, or a failed handshake, fails the attempt.
                Tls::Required(params)
            }
        }
    };
    // `builder_dangerous` only means "TLS as set with `.tls()`", not "no verification".
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port())
        .tls(tls)
        .timeout(Some(Duration::from_millis(ctx.cfg.timeout_ms)));
    if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
        t = t.credentials(Credentials::new(u.clone(), p.clone()));
    }
    t.build()
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("smtp: {}", reason(&e)))
}

/// The signature header's value for `body` under `secret`: `sha256=<lowercase hex>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

async fn webhook(ctx: &Context, job: &Job) -> Result<(), String> {
    use http_body_util::BodyExt;
    let d = &job.destination;
    let uri: hyper::Uri = d.target.parse().map_err(|e| format!("url: {e}"))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) {
        return Err("a webhook URL starts with https:// or http://".into());
    }
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or("url has no host")?;
    let sig = signature(
        d.secret.as_deref().unwrap_or("").as_bytes(),
        job.body.as_bytes(),
    );
    let req = hyper::Request::post(uri)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "tek-alarms")
        .header(SIGNATURE_HEADER, sig)
        .body(Full::new(Bytes::from(job.body.clone())))
        .map_err(|e| format!("request: {e}"))?;
    let client = ctx.webhooks.as_ref().map_err(Clone::clone)?;
    let res = client
        .request(req)
        .await
        .map_err(|e| format!("webhook: {}", reason(&e)))?;
    let status = res.status();
    // Read (a bounded part of) the answer so the connection closes cleanly.
    let _ = http_body_util::Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

/// Checks a destination before it is saved: an e-mail address, or an `https://` (or `http://`)
/// URL with a secret of at least 16 characters.
pub fn validate_destination(
    kind: DestinationKind,
    target: &str,
    secret: Option<&str>,
) -> Result<(), String> {
    match kind {
        DestinationKind::Email => {
            target
                .parse::<lettre::Address>()
                .map_err(|_| format!("{target:?} is not an e-mail address"))?;
            if secret.is_some() {
                return Err("an e-mail destination has no secret".into());
            }
        }
        DestinationKind::Webhook => {
            let uri: hyper::Uri = target
                .parse()
                .map_err(|_| format!("{target:?} is not a URL"))?;
            if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.authority().is_none() {
                return Err("a webhook URL must start with https:// (or http://)".into());
            }
            if secret.is_none_or(|s| s.len() < 16 || s.len() > 256) {
                return Err("a webhook needs a secret of 16 to 256 characters".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn destinations_are_checked() {
        let secret = Some("0123456789abcdef");
        validate_destination(DestinationKind::Email, "ops@example.com", None).unwrap();
        assert!(validate_destination(DestinationKind::Email, "nope", None).is_err());
        validate_destination(DestinationKind::Webhook, "http://127.0.0.1:8/x", secret).unwrap();
        validate_destination(DestinationKind::Webhook, "https://a/x", secret).unwrap();
        assert!(validate_destination(DestinationKind::Webhook, "ftp://a/x", secret).is_err());
        assert!(validate_destination(DestinationKind::Webhook, "https:///x", secret).is_err());
        assert!(
            validate_destination(DestinationKind::Webhook, "http://a/x", Some("short")).is_err()
        );
        assert!(validate_destination(DestinationKind::Webhook, "/x", secret).is_err());
    }
}
