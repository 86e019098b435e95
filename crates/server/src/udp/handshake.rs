//! Server side of the handshake: cheap checks, rate limits, key lookup, CMAC, the hello counter
//! (in-memory cache first, then one compare-and-set in the shared database), then the Welcome.

use super::ratelimit::TokenBucket;
use super::sessions::{Desired, Link, Live, PendingCommand};
use super::{server_time, unix_now, Ingest};
use crate::keys;
use crate::metrics::DropReason;
use crate::write_job::WriteJob;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tek_proto::crypto::DeviceKeys;
use tek_proto::handshake::{respond, verify_hello};
use tek_proto::message::{Command, CommandResult};
use tek_proto::wire::{Hello, HelloRepr};

/// How long a device id found unknown is not looked up again.
const UNKNOWN_TTL: Duration = Duration::from_secs(2);

impl Ingest {
    pub(super) fn on_hello(self: &Arc<Self>, datagram: &[u8], src: SocketAddr) {
        let hello = match Hello::new_checked(datagram) {
            Ok(h) => h,
            Err(e) => return self.drop_datagram(super::wire_reason(e)),
        };
        let id = hello.device_id();
        let now = Instant::now();
        let ip_ok = self
            .ip_limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(src.ip(), now);
        if !ip_ok {
            return self.drop_datagram(DropReason::RateLimit);
        }
        let mut bytes = [0u8; 46];
        bytes.copy_from_slice(datagram);
        let checked = self
            .links
            .with(id, |link| link.map(|l| self.check_hello(l, &bytes, now)));
        match checked {
            Some(Ok(h)) => {
                let this = self.clone();
                tokio::spawn(async move { this.accept(h, src).await });
            }
            Some(Err(reason)) => self.drop_datagram(reason),
            None => {
                if self.recently_unknown(id, now) {
                    return self.drop_datagram(DropReason::UnknownDevice);
                }
                let this = self.clone();
                tokio::spawn(async move { this.load_then_accept(id, bytes, src).await });
            }
        }
    }

    fn recently_unknown(&self, id: u32, now: Instant) -> bool {
        let unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        unknown
            .get(&id)
            .is_some_and(|t| now.saturating_duration_since(*t) < UNKNOWN_TTL)
    }

    /// The checks that need the device's keys but no database.
    fn check_hello(
        &self,
        link: &mut Link,
        datagram: &[u8],
        now: Instant,
    ) -> Result<HelloRepr, DropReason> {
        let h = verify_hello(&link.keys, datagram).map_err(|_| DropReason::Auth)?;
        if link.last_hello.is_some_and(|last| h.counter <= last) {
            return Err(DropReason::Replay);
        }
        // The device's bucket is charged only for authentic, fresh Hellos, so a spoofer who
        // knows a device id cannot use up that device's handshake allowance (PROTOCOL.md);
        // the per-address bucket in `on_hello` already bounds the CMACs a flood costs.
        let l = &self.cfg.limits;
        let per_s = 1000.0 / l.hello_device_interval_ms as f64;
        if !link.hello_bucket.take(now, l.hello_device_burst, per_s) {
            return Err(DropReason::RateLimit);
        }
        if link.live.is_none() && self.links.live_count() >= self.cfg.sessions.max {
            return Err(DropReason::RateLimit);
        }
        Ok(h)
    }

    /// First Hello from a device since this server started: load it (keys, newest
    /// configuration, pending commands) once, then handle the Hello.
    async fn load_then_accept(self: Arc<Self>, id: u32, bytes: [u8; 46], src: SocketAddr) {
        let storage = self.storage.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let Some(dev) = storage.load_device(id)? else {
                return Ok(None);
            };
            let config = storage.latest_config(id)?;
            let assembled = match &config {
                Some(c) => super::split::load(&*storage, c)?,
                None => None,
            };
            let commands = storage.pending_commands(id)?;
            Ok::<_, crate::storage::Error>(Some((dev, config, assembled, commands)))
        })
        .await;
        let (dev, config, assembled, commands) = match loaded {
            Ok(Ok(Some(x))) => x,
            Ok(Ok(None)) => {
                let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
                if unknown.len() > 100_000 {
                    unknown.clear();
                }
                unknown.insert(id, Instant::now());
                return self.drop_datagram(DropReason::UnknownDevice);
            }
            Ok(Err(e)) => {
                self.metrics.storage_error();
                tracing::warn!(device = id, %e, "cannot load device");
                return;
            }
            Err(e) => {
                tracing::error!(device = id, %e, "device load task failed");
                return;
            }
        };
        let now = Instant::now();
        let link = Link {
            keys: DeviceKeys::new(dev.key),
            last_hello: dev.hello_counter,
            hello_bucket: TokenBucket::new(self.cfg.limits.hello_device_burst, now),
            live: None,
            desired: config.map(|c| Desired::new(c.version, &c.config, c.state, assembled)),
            reported_version: None,
            config_retry: None,
            commands: commands
                .into_iter()
                .map(|c| PendingCommand {
                    id: c.id,
                    command: c.command,
                    queued_at: c.queued_at,
                    retry: None,
                    sent_boot: c.sent_boot,
                })
                .collect(),
            done_commands: Default::default(),
        };
        self.links.insert_if_absent(id, link);
        let checked = self
            .links
            .with(id, |l| l.map(|l| self.check_hello(l, &bytes, now)));
        match checked {
            Some(Ok(h)) => self.accept(h, src).await,
            Some(Err(reason)) => self.drop_datagram(reason),
            None => {}
        }
    }

    /// The Hello verified and its counter is above what this server knows: claim the counter in
    /// the database (atomic across servers), then answer.
    async fn accept(self: Arc<Self>, h: HelloRepr, src: SocketAddr) {
        let storage = self.storage.clone();
        let claimed = tokio::task::spawn_blocking(move || {
            storage.accept_hello(h.device_id, h.counter, unix_now())
        })
        .await;
        match claimed {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                // Another server (or an earlier run) accepted this counter or a higher one.
                self.links.with(h.device_id, |l| {
                    if let Some(l) = l {
                        l.last_hello = Some(l.last_hello.map_or(h.counter, |c| c.max(h.counter)));
                    }
                });
                return self.drop_datagram(DropReason::Replay);
            }
            Ok(Err(e)) => {
                self.metrics.storage_error();
                tracing::warn!(device = h.device_id, %e, "hello counter update failed");
                return;
            }
            Err(e) => {
                tracing::error!(%e, "hello task failed");
                return;
            }
        }
        let boot = (h.counter >> 32) as u32;
        let done_in_db = self.reboots_done_in_db(h.device_id, boot).await;
        let (session_id, nonce) = match (keys::random_nonzero_u32(), random_nonce()) {
            (Ok(s), Ok(n)) => (s, n),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(%e, "no randomness for a session");
                return;
            }
        };
        let now = Instant::now();
        let outcome = self.links.with(h.device_id, |link| {
            let link = link?;
            if link.last_hello.is_some_and(|last| h.counter <= last) {
                // A concurrent Hello with a higher counter won.
                return Some(Err(DropReason::Replay));
            }
            let mut out = [0u8; 46];
            let (session, _) = respond(&link.keys, &h, session_id, nonce, server_time(), &mut out)?;
            link.last_hello = Some(h.counter);
            link.live = Some(Live {
                session,
                boot,
                endpoint: src,
                last_auth: now,
                // Stated again by the device in every session (PROTOCOL.md 17.1).
                capabilities: None,
            });
            // What the device runs is learnt again from its first Status or Keepalive.
            link.reported_version = None;
            link.config_retry = None;
            // A device keeps a partial transfer in RAM only (PROTOCOL.md 17.4): start over.
            if let Some(d) = link.desired.as_mut() {
                d.set_chunks_held(0);
                d.set_chunks_sent(0);
            }
            let rebooted = reboots_done(link, boot, &done_in_db);
            // Pending commands go out on the next timer tick, after the Welcome.
            for c in &mut link.commands {
                c.retry = None;
            }
            Some(Ok((out, rebooted)))
        });
        match outcome {
            Some(Ok((welcome, rebooted))) => {
                self.send_raw(&welcome, src);
                self.metrics.session_established();
                tracing::debug!(device = h.device_id, %src, "session established");
                for id in rebooted {
                    // Known only here (the database had not recorded its send yet).
                    tracing::debug!(device = h.device_id, command = id, "reboot done: new boot");
                    let job = WriteJob::CommandAck {
                        device_id: h.device_id,
                        id,
                        result: CommandResult::Done,
                        at: unix_now(),
                    };
                    if self.writer.try_send(job).is_err() {
                        // Not sent again either way (it left the link); the database keeps it
                        // queued until it expires.
                        tracing::warn!(device = h.device_id, command = id, "writer queue full");
                    }
                }
            }
            Some(Err(reason)) => self.drop_datagram(reason),
            None => {}
        }
    }
}

impl Ingest {
    /// A Hello with boot number `boot` was accepted: if the device has a reboot waiting, mark
    /// done in the database every reboot sent in an earlier boot, by any server (PROTOCOL.md
    /// 11.3). One query, and only for a device with a reboot queued. Returns their ids.
    async fn reboots_done_in_db(&self, device_id: u32, boot: u32) -> Vec<u32> {
        let waiting = self.links.with(device_id, |l| {
            l.is_some_and(|l| l.commands.iter().any(|c| c.command == Command::Reboot))
        });
        if !waiting {
            return Vec::new();
        }
        let storage = self.storage.clone();
        let now = unix_now();
        match tokio::task::spawn_blocking(move || storage.reboots_done(device_id, boot, now)).await
        {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                self.metrics.storage_error();
                tracing::warn!(device = device_id, %e, "reboot check failed");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(%e, "reboot check task failed");
                Vec::new()
            }
        }
    }
}

/// A *reboot* command sent in a session of an earlier boot than `boot` (the boot of the Hello
/// just accepted) has been carried out, even if its CommandAck never arrived (PROTOCOL.md 11.3):
/// it leaves the link, so it is not sent again into the new boot, whose device no longer
/// remembers its id (10.10) and would reboot a second time. `in_db` are the ones the database
/// already marked done (sent by this or another server); the others, sent by this server in a
/// session whose send the database had not recorded yet, are returned for the caller to record.
fn reboots_done(link: &mut Link, boot: u32, in_db: &[u32]) -> Vec<u32> {
    let mut done = Vec::new();
    let mut to_record = Vec::new();
    link.commands.retain(|c| {
        let by_db = in_db.contains(&c.id);
        let here = c.command == Command::Reboot && c.sent_boot.is_some_and(|b| boot > b);
        if by_db || here {
            done.push(c.id);
            if !by_db {
                to_record.push(c.id);
            }
        }
        !(by_db || here)
    });
    for &id in &done {
        link.remember_done(id);
    }
    to_record
}

fn random_nonce() -> Result<[u8; 16], keys::RandomError> {
    let mut n = [0u8; 16];
    keys::fill_random(&mut n)?;
    Ok(n)
}
