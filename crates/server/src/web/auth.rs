//! The pages' extractors: a signed-in user of the pages and a CSRF-checked form post. Their
//! rejections are HTML ([`HtmlError`]); sessions, tokens and the JSON API's extractor are in
//! [`crate::http::auth`].

use super::error::HtmlError;
use crate::http::auth::{body_error, check_origin, constant_time_eq, from_cookie, Principal};
use crate::http::error::WebError;
use crate::http::Web;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A signed-in user of the pages (session cookie).
#[derive(Debug, Clone)]
pub struct PageUser(pub Principal);

impl FromRequestParts<Web> for PageUser {
    type Rejection = HtmlError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, HtmlError> {
        Ok(PageUser(from_cookie(parts, web).await?))
    }
}

/// A form with a CSRF field.
pub trait CsrfForm {
    /// The submitted token.
    fn csrf(&self) -> &str;
}

/// A page form post by a signed-in user, CSRF-checked.
#[derive(Debug)]
pub struct Posted<T> {
    /// Who.
    pub user: Principal,
    /// The form.
    pub form: T,
}

impl<T: DeserializeOwned + CsrfForm + Send> FromRequest<Web> for Posted<T> {
    type Rejection = HtmlError;

    async fn from_request(req: Request, web: &Web) -> Result<Self, HtmlError> {
        let (parts, body) = req.into_parts();
        let user = from_cookie(&parts, web).await?;
        check_origin(&parts)?;
        let req = Request::from_parts(parts, body);
        let bytes = axum::body::Bytes::from_request(req, web)
            .await
            .map_err(|e| body_error(e.status(), &e.body_text()))?;
        // The token is checked before the form is interpreted at all.
        #[derive(Deserialize)]
        struct Token {
            csrf: Option<String>,
        }
        let token: Token = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| WebError::Forbidden("missing or wrong CSRF token; reload the page"))?;
        let sent = token.csrf.unwrap_or_default();
        if !constant_time_eq(sent.as_bytes(), user.csrf().as_bytes()) {
            return Err(WebError::Forbidden("missing or wrong CSRF token; reload the page").into());
        }
        let form: T = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::Invalid(format!("the form could not be read: {e}")))?;
        Ok(Posted { user, form })
    }
}
