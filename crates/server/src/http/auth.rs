//! Who is asking: passwords (argon2id), login sessions (a random cookie, stored hashed), API
//! tokens (random, stored hashed), and the CSRF token of a session.
//!
//! Extractors, by use:
//! * [`ApiUser`] — `/api/` routes: `Authorization: Bearer <token>` or the session cookie. A
//!   cookie-authenticated request that changes something must carry `X-CSRF-Token`; a token
//!   request needs none (a browser never attaches a bearer token by itself). No credentials: 401.
//! * `web::auth::PageUser` — pages: the session cookie only ([`from_cookie`]); none valid:
//!   redirect to the login form.
//! * `web::auth::Posted` — form posts of pages: the session cookie, the url-encoded form, and its
//!   `csrf` field checked before the handler runs, so no handler can forget it.
//!
//! Unsafe requests also must not come from another origin (`Origin`, when the browser sends it,
//! must name this host): a second line of defence behind the CSRF token and `SameSite=Strict`.

use super::Web;
use crate::http::error::{JsonError, WebError};
use crate::keys::hex;
use crate::storage::UserRecord;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use sha2::{Digest, Sha256};

/// Name of the session cookie over plain HTTP (loopback, tests).
pub const COOKIE: &str = "tek_session";
/// Name of the session cookie when it is `Secure`: the `__Host-` prefix makes browsers refuse
/// it unless it is Secure, host-only and for path `/`.
pub const COOKIE_SECURE: &str = "__Host-tek_session";
/// Header carrying the CSRF token of cookie-authenticated API calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Hashes a password with argon2id (the crate's default parameters, a random salt) into a PHC
/// string.
pub fn hash_password(password: &str) -> Result<String, WebError> {
    let mut salt = [0u8; 16];
    crate::keys::fill_random(&mut salt).map_err(|e| WebError::Internal(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| WebError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::Internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches a PHC string. A malformed stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash computed for logins of unknown e-mails, so they take as long as known ones and the
/// timing does not tell which addresses have accounts.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default())
}

/// Checks the rules a new password must meet.
pub fn password_acceptable(password: &str) -> Result<(), WebError> {
    let n = password.chars().count();
    if n < 10 {
        return Err(WebError::Invalid(
            "the password must have at least 10 characters".into(),
        ));
    }
    if n > 256 {
        return Err(WebError::Invalid(
            "the password must have at most 256 characters".into(),
        ));
    }
    Ok(())
}

/// Whether `email` looks like an address (one `@`, something on both sides, no spaces).
pub fn email_acceptable(email: &str) -> Result<(), WebError> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((a, b)) if !a.is_empty() && b.contains('.') && !b.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(WebError::Invalid(format!(
            "{email:?} is not an e-mail address"
        )))
    }
}

/// 32 random bytes as 64 lowercase hex digits: session ids and API tokens.
pub fn new_secret() -> Result<String, WebError> {
    let mut b = [0u8; 32];
    crate::keys::fill_random(&mut b).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(hex(&b))
}

/// SHA-256 of a secret: what the database keeps instead of it.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The CSRF token of a session: derived from the session secret (which only the cookie holds),
/// so it needs no storage and is worthless without the cookie.
pub fn csrf_token(session_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tek csrf v1\0");
    h.update(session_secret.as_bytes());
    hex(&h.finalize())
}

/// Compares without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session secret from the `Cookie` header, if present and well-formed.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((name, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if (name == COOKIE || name == COOKIE_SECURE)
                && v.len() == 64
                && v.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Some(v.to_owned());
            }
        }
    }
    None
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(secret: &str, secure: bool, max_age_s: i64) -> String {
    if secure {
        format!("{COOKIE_SECURE}={secret}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict; Secure")
    } else {
        format!("{COOKIE}={secret}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict")
    }
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", secure, 0)
}

/// How a request was authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    /// A browser session; holds the session's CSRF token.
    Cookie {
        /// Expected CSRF token.
        csrf: String,
        /// Hash of the session secret (for logout).
        hash: [u8; 32],
    },
    /// An API token.
    Token,
    /// An API token carried in an MQTT command message (`crate::mqtt::commands`).
    Mqtt,
}

/// An authenticated user.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account.
    pub user: UserRecord,
    /// How.
    pub via: Via,
}

impl Principal {
    /// The CSRF token to embed in forms (empty for token requests, which never render forms).
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Cookie { csrf, .. } => csrf,
            Via::Token | Via::Mqtt => "",
        }
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses an unsafe request whose `Origin` names another host.
pub(crate) fn check_origin(parts: &Parts) -> Result<(), WebError> {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(WebError::Forbidden("cross-origin request refused"))
    }
}

pub(crate) async fn from_cookie(parts: &Parts, web: &Web) -> Result<Principal, WebError> {
    let secret = session_cookie(&parts.headers).ok_or(WebError::Unauthenticated)?;
    let hash = secret_hash(&secret);
    let now = crate::clock::unix_now();
    let user = web
        .db_call(move |db| {
            let Some(s) = db.web_session(&hash, now)? else {
                return Ok(None);
            };
            db.user(s.user_id)
        })
        .await?
        .ok_or(WebError::Unauthenticated)?;
    Ok(Principal {
        user,
        via: Via::Cookie {
            csrf: csrf_token(&secret),
            hash,
        },
    })
}

/// The user an API token belongs to (`Unauthenticated` if unknown or expired).
pub async fn from_token(token: &str, web: &Web) -> Result<Principal, WebError> {
    let hash = secret_hash(token);
    let now = crate::clock::unix_now();
    let user = web
        .db_call(move |db| {
            let Some(uid) = db.token_user(&hash, now)? else {
                return Ok(None);
            };
            db.user(uid)
        })
        .await?
        .ok_or(WebError::Unauthenticated)?;
    Ok(Principal {
        user,
        via: Via::Token,
    })
}

/// A user of the JSON API (bearer token or session cookie + CSRF header).
#[derive(Debug, Clone)]
pub struct ApiUser(pub Principal);

impl FromRequestParts<Web> for ApiUser {
    type Rejection = JsonError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, JsonError> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or(WebError::Unauthenticated)?;
            return Ok(ApiUser(from_token(token, web).await?));
        }
        let p = from_cookie(parts, web).await?;
        if !is_safe(&parts.method) {
            check_origin(parts)?;
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), p.csrf().as_bytes()) {
                return Err(WebError::Forbidden("missing or wrong CSRF token").into());
            }
        }
        Ok(ApiUser(p))
    }
}

/// The error for a body that could not be read: too large (413) or malformed (422).
pub fn body_error(status: axum::http::StatusCode, text: &str) -> WebError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        WebError::TooLarge
    } else {
        WebError::Invalid(format!("bad request body: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn cookies_and_tokens() {
        let s = new_secret().unwrap();
        assert_eq!(s.len(), 64);
        assert_ne!(s, new_secret().unwrap());
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("a=b; {COOKIE}={s}; c=d").parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some(s.clone()));
        h.insert(
            header::COOKIE,
            format!("{COOKIE}=zz{}", &s[2..]).parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), None, "not hex");
        let c = set_cookie(&s, true, 60);
        assert!(c.starts_with("__Host-") && c.contains("HttpOnly") && c.contains("Secure"));
        assert!(c.contains("SameSite=Strict"));
        assert!(!set_cookie(&s, false, 60).contains("Secure"));
        assert_ne!(csrf_token(&s), csrf_token(&new_secret().unwrap()));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn input_rules() {
        assert!(email_acceptable("a@b.c").is_ok());
        for bad in ["", "a", "a@b", "@b.c", "a b@c.d", "a@b@c.d"] {
            assert!(email_acceptable(bad).is_err(), "{bad}");
        }
        assert!(password_acceptable("short").is_err());
        assert!(password_acceptable("long enough!").is_ok());
    }
}
