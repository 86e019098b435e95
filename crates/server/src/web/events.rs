//! `GET /devices/{id}/events`: a Server-Sent Events stream of the device's view (readings,
//! online, configuration state), sent whenever it changes. The stream polls the database once
//! per interval, so changes saved by any server sharing the database show up; at most
//! [`crate::http::WebOptions::max_event_streams`] streams are open at once, at most
//! [`crate::http::WebOptions::streams_per_user`] of them for one user (503 beyond), and a comment
//! line every 15 s keeps proxies from closing an idle stream.
//!
//! A stream lives only as long as what opened it: each round (every `event_interval_ms`) it
//! checks that its login session still exists, so logging out, a password change (which ends
//! the other sessions) and the deletion of the user (which ends all of them) end the stream
//! within one interval; a lost device membership ends it too.

use super::auth::PageUser;
use super::error::HtmlError;
use crate::http::auth::Via;
use crate::http::error::WebError;
use crate::http::Web;
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
    let session = match p.via {
        Via::Cookie { hash, .. } => hash,
        Via::Token | Via::Mqtt => return Err(WebError::Unauthenticated.into()),
    };
    let mine = UserStream::open(&web, p.user.id).ok_or(WebError::Busy)?;
    let permit = web
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| WebError::Busy)?;
    let permit = (permit, mine);
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
                // The session is re-checked each round: logout, a password change or the
                // user's deletion ends the stream.
                let now = crate::clock::unix_now();
                match web.db_call(move |db| db.web_session(&session, now)).await {
                    Ok(Some(s)) if s.user_id == user.id => {}
                    _ => return None,
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

/// One of a user's open streams; counted in [`super::Inner::user_streams`] until dropped.
pub struct UserStream {
    web: Web,
    user: i64,
}

impl UserStream {
    /// Counts a new stream of `user`, or `None` if they hold `streams_per_user` already.
    pub fn open(web: &Web, user: i64) -> Option<UserStream> {
        let mut m = web.user_streams.lock().ok()?;
        let n = m.entry(user).or_insert(0);
        if *n >= web.opts.streams_per_user.max(1) {
            return None;
        }
        *n += 1;
        Some(UserStream {
            web: web.clone(),
            user,
        })
    }
}

impl Drop for UserStream {
    fn drop(&mut self) {
        if let Ok(mut m) = self.web.user_streams.lock() {
            if let Some(n) = m.get_mut(&self.user) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.user);
                }
            }
        }
    }
}
