//! `GET /devices/{id}/export.csv`: the page face of the CSV export (`service::export`).

use super::auth::PageUser;
use super::error::HtmlError;
use crate::http::Web;
use crate::service::export::{csv_response, parse_range_in, RangeQuery};
use axum::extract::{Path, Query, State};
use axum::response::Response;

/// `GET /devices/{id}/export.csv?from=&to=`.
pub async fn page_csv(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<u32>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, HtmlError> {
    web.check_device(&p.user, id).await?;
    let z = web.device_zone(id).await?;
    let (from, to) = parse_range_in(&q, crate::clock::unix_now(), &z)?;
    Ok(csv_response(&web, id, from, to).await?)
}
