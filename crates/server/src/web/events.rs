//! `GET /devices/{id}/events`: a Server-Sent Events stream of the device's view (readings,
//! online, configuration state), sent whenever it changes. The stream polls the database once
//! per interval, so changes saved by any server sharing the database show up; at most
//! [`super::WebOptions::max_event_streams`] streams are open at once (503 beyond), and a comment
//! line every 15 s keeps proxies from closing an idle stream.

use super::auth::PageUser;
use super::error::{HtmlError, WebError};
use super::Web;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use std::convert::Infallible;
use std::time::Duration;

/// `GET /devices/{id}/events`.
pub async fn device_events(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<u32>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HtmlError> {
    web.check_device(&p.user, id).await?;
    let permit = web
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| WebError::Busy)?;
    let interval = Duration::from_millis(web.opts.event_interval_ms.max(100));
    let user = p.user;
    let s = stream::unfold(
        (web, user, None::<String>, permit, true),
        move |(web, user, last, permit, first)| async move {
            let mut last = last;
            loop {
                if !first || last.is_some() {
                    tokio::time::sleep(interval).await;
                }
                // Access is re-checked each round: a revoked membership ends the stream.
                let state = match web.device_for(&user, id).await {
                    Ok(s) => s,
                    Err(_) => return None,
                };
                let view = match web.view(state).await {
                    Ok(v) => v,
                    Err(_) => return None,
                };
                let json = match serde_json::to_string(&view) {
                    Ok(j) => j,
                    Err(_) => return None,
                };
                if last.as_deref() != Some(json.as_str()) {
                    last = Some(json.clone());
                    let ev = Event::default().event("device").data(json);
                    return Some((Ok(ev), (web, user, last, permit, false)));
                }
            }
        },
    );
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
