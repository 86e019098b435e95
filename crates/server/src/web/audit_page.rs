//! `GET /audit`: who changed what, when — the entries of the user's sites (every entry for an
//! admin), newest first, 100 a page.

use super::auth::PageUser;
use super::error::HtmlError;
use super::layout::{self, Nav};
use super::zoned::ZoneHtml;
use crate::http::Web;
use crate::service::audit::AuditQuery;
use axum::extract::{Query, State};
use axum::response::Html;
use maud::html;

/// `GET /audit`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Query(q): Query<AuditQuery>,
) -> Result<Html<String>, HtmlError> {
    let entries = web.audit_for(&p.user, &q).await?;
    let zones = web
        .zones(entries.iter().filter_map(|e| e.entry.device_id).collect())
        .await?;
    let body = html! {
        h1 { "Audit log" }
        p.meta { "Each time is in its controller's site's zone (the abbreviation; the name on hover), else UTC." }
        @if entries.is_empty() { p { "No changes recorded yet." } } @else {
            table.audit #audit {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "Controller" } th { "Details" } } }
                tbody { @for e in &entries { tr {
                    td { (zones.of(e.entry.device_id, e.entry.site_id).time_abbr(e.at)) }
                    td { (e.entry.actor) }
                    td { (e.entry.action) }
                    td { @if let Some(d) = e.entry.device_id { a href={ "/devices/" (d) } { (d) } } }
                    td { (e.entry.detail) }
                } } }
            }
            @if let Some(last) = entries.last() {
                p { a href={ "/audit?before=" (last.id) (q.device.map(|d| format!("&device={d}")).unwrap_or_default()) } { "Older entries" } }
            }
        }
    };
    Ok(layout::page(&p, Nav::Audit, "Audit log", body))
}
