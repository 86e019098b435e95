//! Delivery of configurations and commands: the first send, the re-send timer (5 s, then
//! doubling to 30 s by default, while the device is online, at most
//! [`MAX_SENDS_PER_SESSION`](super::sessions::MAX_SENDS_PER_SESSION) times per session), the
//! idle-session sweep, and the
//! poll of the database's change feed for changes saved by other processes.

use super::sessions::{Desired, Link, PendingCommand, Retry};
use super::Ingest;
use crate::storage::{CommandRecord, CommandState, ConfigRecord, ConfigState};
use crate::write_job::WriteJob;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tek_proto::message::{Command, Message};
use tokio::sync::watch;

/// Changes read from the feed per poll.
const FEED_BATCH: usize = 1000;

impl Ingest {
    fn retry_initial(&self) -> Duration {
        Duration::from_millis(self.cfg.push.retry_initial_ms)
    }

    fn next_retry(&self, prev: Option<Retry>, now: Instant) -> Retry {
        let max = Duration::from_millis(self.cfg.push.retry_max_ms);
        let interval = prev.map_or(self.retry_initial(), |r| (r.interval() * 2).min(max));
        Retry::new(now, interval, prev.map_or(1, |r| r.sends + 1))
    }

    /// Sends the desired configuration now and starts its re-send schedule.
    pub(super) fn push_config_now(&self, link: &mut Link, now: Instant) {
        if self.send_config(link) {
            link.config_retry = Some(self.next_retry(None, now));
        }
    }

    fn send_command(&self, link: &mut Link, i: usize, now: Instant) {
        let (id, command, prev) = {
            let c = &link.commands[i];
            (c.id, c.command, c.retry)
        };
        if self.send(link, &Message::Command { id, command }) {
            self.metrics.command_sent();
            if let Some((device_id, boot)) =
                link.live.as_ref().map(|l| (l.session.device_id(), l.boot))
            {
                if command == Command::Reboot && link.commands[i].sent_boot != Some(boot) {
                    // Shared through the database, so that whichever server the rebooted device
                    // says Hello to next knows the reboot was carried out (PROTOCOL.md 11.3).
                    let job = WriteJob::CommandSent {
                        device_id,
                        id,
                        boot,
                    };
                    if self.writer.try_send(job).is_err() {
                        tracing::warn!(device_id, command = id, "writer queue full");
                    }
                }
                link.commands[i].sent_boot = Some(boot);
            }
        }
        link.commands[i].retry = Some(self.next_retry(prev, now));
    }

    /// A configuration version was saved (here or by another process): make it the device's
    /// desired one and push it at once if the device is online and has reported, in this
    /// session, a version other than this one. A session just opened waits for the device's
    /// first Status or Keepalive ([`config_on_contact`](Self::config_on_contact)), as
    /// PROTOCOL.md 11.3 says: only then does the server know what the device runs.
    /// `assembled`: its assembled form if it has a channel map ([`super::split::load`]).
    pub(crate) fn apply_config(&self, rec: &ConfigRecord, assembled: Option<Vec<u8>>) {
        let now = Instant::now();
        self.links.with(rec.device_id, |link| {
            let Some(link) = link else {
                return; // loaded with its newest configuration at its first Hello
            };
            if link
                .desired
                .as_ref()
                .is_some_and(|d| d.version() >= rec.version)
            {
                return;
            }
            link.desired = Some(Desired::new(rec.version, &rec.config, rec.state, assembled));
            link.config_retry = None;
            if rec.state == ConfigState::Pending
                && link.online(now)
                && link.reported_version.is_some_and(|v| v != rec.version)
            {
                self.push_config_now(link, now);
            }
        });
    }

    /// A command was queued: remember it and send it at once if the device is online.
    pub(crate) fn apply_command(&self, rec: &CommandRecord) {
        if rec.state != CommandState::Queued || expired(rec.queued_at, super::unix_now()) {
            return;
        }
        let now = Instant::now();
        self.links.with(rec.device_id, |link| {
            let Some(link) = link else {
                return;
            };
            if link.commands.iter().any(|c| c.id == rec.id) || link.done_commands.contains(&rec.id)
            {
                return;
            }
            // A reboot another server sent in an earlier boot of a device that is now on this
            // server in a later one was carried out (PROTOCOL.md 11.3): record it, never send it.
            let boot = link.live.as_ref().map(|l| l.boot);
            if rec.command == Command::Reboot
                && rec
                    .sent_boot
                    .zip(boot)
                    .is_some_and(|(sent, now)| now > sent)
            {
                link.remember_done(rec.id);
                let job = WriteJob::CommandAck {
                    device_id: rec.device_id,
                    id: rec.id,
                    result: tek_proto::message::CommandResult::Done,
                    at: super::unix_now(),
                };
                if self.writer.try_send(job).is_err() {
                    tracing::warn!(
                        device = rec.device_id,
                        command = rec.id,
                        "writer queue full"
                    );
                }
                return;
            }
            link.commands.push(PendingCommand {
                id: rec.id,
                command: rec.command,
                queued_at: rec.queued_at,
                retry: None,
                sent_boot: rec.sent_boot,
            });
            if link.online(now) {
                let i = link.commands.len() - 1;
                self.send_command(link, i, now);
            }
        });
    }

    /// One timer tick: re-sends that are due, and removal of idle sessions.
    pub(crate) fn tick(&self, now: Instant) {
        let idle_min = Duration::from_secs(self.cfg.sessions.idle_timeout_s);
        self.links.for_each(|_, link| {
            let Some(live) = link.live.as_ref() else {
                return;
            };
            let idle = now.saturating_duration_since(live.last_auth);
            if idle > idle_min.max(3 * link.keepalive()) {
                link.live = None;
                link.config_retry = None;
                return;
            }
            if !link.online(now) {
                return; // resumes on the device's next contact
            }
            if let Some(r) = link.config_retry {
                if r.due(now)
                    && link
                        .desired
                        .as_ref()
                        .is_some_and(|d| d.state() == ConfigState::Pending)
                {
                    self.send_config(link);
                    link.config_retry = Some(self.next_retry(Some(r), now));
                }
            }
            // Expired commands are never sent again; the sweep (`run_expiry`) records it.
            let unix = super::unix_now();
            link.commands.retain(|c| !expired(c.queued_at, unix));
            for i in 0..link.commands.len() {
                if link.commands[i].retry.is_none_or(|r| r.due(now)) {
                    self.send_command(link, i, now);
                }
            }
        });
    }

    /// Marks expired commands in the database once a minute (the timer already stopped sending
    /// them), so the UI and API show them as *expired*.
    pub(crate) async fn run_expiry(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = crate::udp::stopped(&mut stop) => break,
            }
            let storage = self.storage.clone();
            let now = super::unix_now();
            match tokio::task::spawn_blocking(move || storage.expire_commands(now)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(commands = n, "undelivered commands expired"),
                Ok(Err(e)) => {
                    self.metrics.storage_error();
                    tracing::warn!(%e, "command expiry failed");
                }
                Err(e) => tracing::error!(%e, "command expiry task failed"),
            }
        }
    }

    /// The re-send timer task.
    pub(crate) async fn run_timer(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(self.cfg.push.tick_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.tick(Instant::now()),
                _ = crate::udp::stopped(&mut stop) => break,
            }
        }
    }

    /// The change-feed poller: configurations and commands saved by any process sharing the
    /// database reach the device through whichever server holds its session. Cheap: two
    /// primary-key range reads per poll.
    pub(crate) async fn run_poller(
        self: Arc<Self>,
        mut config_seq: i64,
        mut command_id: u32,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut every =
            tokio::time::interval(Duration::from_millis(self.cfg.push.poll_interval_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = self.poll_now.notified() => {}
                _ = crate::udp::stopped(&mut stop) => break,
            }
            let storage = self.storage.clone();
            let read = tokio::task::spawn_blocking(move || {
                let configs = storage.configs_since(config_seq, FEED_BATCH)?;
                // Only the newest version of a device matters (`apply_config`); an older one
                // is not worth a registry read.
                let mut newest = std::collections::HashMap::new();
                for r in &configs {
                    let v = newest.entry(r.device_id).or_insert(r.version);
                    *v = (*v).max(r.version);
                }
                let mut loaded = Vec::with_capacity(configs.len());
                for r in configs {
                    let a = if newest.get(&r.device_id) == Some(&r.version) {
                        super::split::load(&*storage, &r)?
                    } else {
                        None
                    };
                    loaded.push((r, a));
                }
                Ok::<_, crate::storage::Error>((
                    loaded,
                    storage.commands_since(command_id, FEED_BATCH)?,
                ))
            })
            .await;
            match read {
                Ok(Ok((configs, commands))) => {
                    for (rec, assembled) in configs {
                        config_seq = config_seq.max(rec.seq);
                        self.apply_config(&rec, assembled);
                    }
                    for rec in &commands {
                        command_id = command_id.max(rec.id);
                        self.apply_command(rec);
                    }
                }
                Ok(Err(e)) => {
                    self.metrics.storage_error();
                    tracing::warn!(%e, "change poll failed");
                }
                Err(e) => tracing::error!(%e, "change poll task failed"),
            }
        }
    }
}

/// Whether a command queued at `queued_at` has expired at `now` (Unix seconds).
fn expired(queued_at: i64, now: i64) -> bool {
    now - queued_at >= crate::storage::commands::EXPIRE_AFTER_S
}
