//! How a page's error is shown: a small HTML page, or a redirect to the login form. The error
//! itself is [`crate::http::error::WebError`], shared with the JSON API.

use crate::http::error::WebError;
use crate::inproc::ApiError;
use crate::storage;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// A [`WebError`] answered as a page.
#[derive(Debug)]
pub struct HtmlError(pub WebError);

impl From<WebError> for HtmlError {
    fn from(e: WebError) -> Self {
        HtmlError(e)
    }
}

impl From<storage::Error> for HtmlError {
    fn from(e: storage::Error) -> Self {
        HtmlError(e.into())
    }
}

impl From<ApiError> for HtmlError {
    fn from(e: ApiError) -> Self {
        HtmlError(e.into())
    }
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        self.0.log();
        if matches!(self.0, WebError::Unauthenticated) {
            return Redirect::to("/").into_response();
        }
        let title = match self.0.status() {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            s if s.is_client_error() => "Cannot do that",
            _ => "Something went wrong",
        };
        let page = super::layout::bare(title, &self.0.to_string());
        let mut r = (self.0.status(), page).into_response();
        if let Some(s) = self.0.retry_after() {
            r.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        r
    }
}
