//! Errors of pages and API calls, and how the API shows them: `{"error": "..."}` with the
//! status ([`JsonError`]); pages show the same error as HTML (`web::error::HtmlError`). Internal
//! details are logged, never shown.

use crate::inproc::ApiError;
use crate::storage;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No valid session or token.
    #[error("sign-in required")]
    Unauthenticated,
    /// Signed in but not allowed (admin pages, CSRF, cross-origin).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Absent, or not visible to this user (the two are indistinguishable on purpose).
    #[error("not found")]
    NotFound,
    /// Bad input; the message says what to fix. Nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// Exists already.
    #[error("{0}")]
    Conflict(String),
    /// The request body is over the limit.
    #[error("the request is too large")]
    TooLarge,
    /// Too many login attempts.
    #[error("too many login attempts; try again in {0} s")]
    RateLimited(u64),
    /// Too many live event streams open.
    #[error("too busy; try again later")]
    Busy,
    /// Everything else (logged; the user sees a generic message).
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Unauthenticated => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn log(&self) {
        if let WebError::Internal(m) = self {
            tracing::error!(error = %m, "request failed");
        }
    }

    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            WebError::RateLimited(s) => Some(*s),
            _ => None,
        }
    }
}

impl From<storage::Error> for WebError {
    fn from(e: storage::Error) -> WebError {
        match e {
            storage::Error::NotFound(_) => WebError::NotFound,
            storage::Error::Duplicate(what) => WebError::Conflict(format!("{what} already exists")),
            storage::Error::Missing(what) => WebError::Invalid(format!("{what} does not exist")),
            storage::Error::QueueFull(why) => WebError::Conflict(why),
            storage::Error::Exists(id) => WebError::Conflict(format!("device {id} already exists")),
            storage::Error::Limit(why) => WebError::Invalid(why),
            storage::Error::InvalidChannels(why) => WebError::Invalid(why),
            storage::Error::InvalidConfig(e) => {
                WebError::Invalid(format!("the configuration is not valid: {e}"))
            }
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> WebError {
        match e {
            ApiError::Storage(s) => s.into(),
            other => WebError::Internal(other.to_string()),
        }
    }
}

/// A [`WebError`] answered as JSON.
#[derive(Debug)]
pub struct JsonError(pub WebError);

impl From<WebError> for JsonError {
    fn from(e: WebError) -> Self {
        JsonError(e)
    }
}

impl From<storage::Error> for JsonError {
    fn from(e: storage::Error) -> Self {
        JsonError(e.into())
    }
}

impl From<ApiError> for JsonError {
    fn from(e: ApiError) -> Self {
        JsonError(e.into())
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        self.0.log();
        let body = serde_json::json!({ "error": self.0.to_string() });
        let mut r = (self.0.status(), axum::Json(body)).into_response();
        if matches!(self.0, WebError::Unauthenticated) {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"tek\""),
            );
        }
        if let Some(s) = self.0.retry_after() {
            r.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        r
    }
}
