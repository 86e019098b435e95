//! `LISTEN tek_changes` on a dedicated connection: a configuration saved or a command queued by
//! any process sharing the database wakes this server's change poller at once, which reads the
//! feed and pushes to the devices whose sessions this server holds.
//!
//! A notification carries no data the poller relies on: the feed in the tables is the truth, so
//! a notification lost while the listener reconnects costs nothing but latency (the listener wakes
//! the poller after every reconnect, and the poller also runs on its own interval).

use super::health::{next_backoff, BACKOFF_MIN};
use super::CHANNEL;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio_postgres::AsyncMessage;

/// Listens until the runtime shuts down, reconnecting with back-off.
pub(crate) async fn run(config: tokio_postgres::Config, wake: Arc<dyn Fn() + Send + Sync>) {
    let mut wait = BACKOFF_MIN;
    loop {
        match listen_once(&config, &*wake).await {
            Ok(()) => wait = BACKOFF_MIN,
            Err(e) => {
                tracing::debug!(%e, "change listener connection failed");
                wait = next_backoff(wait);
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// One connection's life: LISTEN, then forward notifications until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    wake: &(dyn Fn() + Send + Sync),
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection must be polled for the LISTEN below to complete, so it runs in its own task
    // and hands notifications over.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%e, "change listener connection ended");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    tracing::debug!("listening for configuration and command changes");
    // Anything saved while this listener was not connected.
    wake();
    while rx.recv().await.is_some() {
        wake();
    }
    driver.abort();
    drop(client);
    Ok(())
}
