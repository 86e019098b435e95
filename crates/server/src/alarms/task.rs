//! The alarm task: owns the [`Engine`], is fed through a bounded queue ([`Alarms`]) by the writer
//! after each commit (telemetry, status, configuration confirmations), by the socket loop
//! (keepalives) and by the API (rules changed, acknowledged, shelved, configuration saved), and
//! carries the engine's actions out: alarms into the database, notifications into the notification
//! log and onto the delivery queue.
//!
//! Nothing here can block ingest: feeding is `try_send` (a full queue drops the event and counts
//! it in `dropped`), and the task sleeps until the engine's next deadline or the next event.

use super::counters::Counters;
use super::deliver::{self, Job};
use super::engine::{Action, Engine, EngineOptions, Notice, NoticeKind, OpenAlarm};
use super::AlarmsConfig;
use crate::storage::{AlarmFilter, NewAlarm, NewNotification, Storage, TelemetryRow};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tek_proto::message::status::Transport;
use tokio::sync::{mpsc, watch};

/// Something the engine must hear about.
#[derive(Debug, Clone)]
pub enum Event {
    /// Telemetry committed by the writer.
    Telemetry(Vec<TelemetryRow>),
    /// Wide telemetry (a device's own channels) committed by the writer.
    Wide(Vec<crate::storage::WideRow>),
    /// A ChannelFaults report committed by the writer.
    ChannelFaults {
        /// Device.
        device_id: u32,
        /// Its entries.
        faults: Vec<tek_proto::channel::faults::FaultEntry>,
        /// When it arrived.
        at: i64,
    },
    /// A status report committed by the writer.
    Status {
        /// Device.
        device_id: u32,
        /// Transport in use.
        transport: Transport,
        /// The log's drop counter.
        log_drops: u32,
        /// When.
        at: i64,
    },
    /// An authenticated datagram without data (keepalive).
    Contact {
        /// Device.
        device_id: u32,
        /// When.
        at: i64,
    },
    /// A configuration was saved for the device.
    ConfigSaved {
        /// Device.
        device_id: u32,
        /// When.
        at: i64,
    },
    /// The device confirmed (or rolled back) its configuration.
    ConfigSettled {
        /// Device.
        device_id: u32,
        /// When.
        at: i64,
    },
    /// A device's rules changed in the database: reload them.
    RulesChanged {
        /// Device.
        device_id: u32,
    },
    /// An alarm of this rule was acknowledged.
    Acked {
        /// Rule.
        rule_id: i64,
    },
    /// A rule was shelved (or unshelved).
    Shelved {
        /// Rule.
        rule_id: i64,
        /// Until (None: unshelved).
        until: Option<i64>,
    },
    /// A test notification an administrator asked for, already in the notification log: onto
    /// the delivery queue like any other (`api::alarms::test_destination`).
    Test(Job),
}

/// The feeding end, shared by the writer, the socket loop and the API.
#[derive(Debug)]
pub struct Alarms {
    tx: mpsc::Sender<Event>,
    /// Counters (shared with the task and the delivery workers).
    pub counters: Arc<Counters>,
    /// Rules loaded (telemetry is not copied to the task while there are none).
    rules: Arc<AtomicUsize>,
}

impl Alarms {
    /// Offers an event; never blocks (a full queue drops it and counts it).
    pub fn offer(&self, e: Event) {
        if matches!(e, Event::RulesChanged { .. }) {
            // Records committed before the task has loaded the new rules must reach it too; the
            // task stores the exact count after the reload.
            self.rules.fetch_add(1, Ordering::Relaxed);
        }
        if self.tx.try_send(e).is_err() {
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Offers committed telemetry, if any rule could look at it.
    pub fn telemetry(&self, rows: &[TelemetryRow]) {
        if !rows.is_empty() && self.rules.load(Ordering::Relaxed) > 0 {
            self.offer(Event::Telemetry(rows.to_vec()));
        }
    }

    /// Offers committed wide telemetry, if any rule could look at it.
    pub fn wide(&self, rows: &[crate::storage::WideRow]) {
        if !rows.is_empty() && self.rules.load(Ordering::Relaxed) > 0 {
            self.offer(Event::Wide(rows.to_vec()));
        }
    }

    /// Offers a test notification; `false` if the queue is full (the caller logs it failed).
    pub fn offer_test(&self, job: Job) -> bool {
        let ok = self.tx.try_send(Event::Test(job)).is_ok();
        if !ok {
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Whether any rule is loaded (cheap; lets the socket loop skip keepalive events).
    pub fn active(&self) -> bool {
        self.rules.load(Ordering::Relaxed) > 0
    }
}

/// Creates the feeding end and the task's receiving end.
pub(crate) fn channel(cfg: &AlarmsConfig) -> (Alarms, Receiver) {
    let (tx, rx) = mpsc::channel(cfg.queue_capacity);
    let rules = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(Counters::default());
    (
        Alarms {
            tx,
            counters: counters.clone(),
            rules: rules.clone(),
        },
        Receiver {
            rx,
            rules,
            counters,
        },
    )
}

/// The task's end of the queue.
pub(crate) struct Receiver {
    rx: mpsc::Receiver<Event>,
    rules: Arc<AtomicUsize>,
    counters: Arc<Counters>,
}

use crate::clock::unix_now as now;

/// [`crate::runtime::blocking`] with the error pinned to the storage's (closures here use `?`).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::storage::Result<T> + Send + 'static,
) -> crate::storage::Result<T> {
    crate::runtime::blocking(f).await
}

/// Loads every rule and open alarm into the engine. Retries until the database answers or
/// `stop` (a server must not run without its alarms because the database was slow at start).
async fn load(
    storage: &Arc<dyn Storage>,
    engine: &mut Engine,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut wait = Duration::from_millis(250);
    loop {
        let s = storage.clone();
        let got = blocking(move || {
            let rules = s.all_rules()?;
            let open = s.alarms(&AlarmFilter {
                devices: None,
                open_only: true,
                limit: usize::MAX,
            })?;
            // Configurations already pending when the server started count from their save.
            let mut pending = Vec::new();
            let mut asked = std::collections::HashSet::new();
            for r in &rules {
                if matches!(
                    r.spec.condition,
                    super::rules::Condition::ConfigPending { .. }
                ) && asked.insert(r.device_id)
                {
                    let d = s.device(r.device_id)?;
                    let waiting = d.config_desired > d.config_applied
                        && d.config_rolled_back != Some(d.config_desired);
                    if waiting {
                        if let Some(c) = s.latest_config(r.device_id)? {
                            pending.push((r.device_id, c.saved_at));
                        }
                    }
                }
            }
            Ok((rules, open, pending))
        })
        .await;
        match got {
            Ok((rules, open, pending)) => {
                for (device, saved_at) in pending {
                    let _ = engine.config_saved(device, saved_at);
                }
                let mut by_device: HashMap<u32, Vec<_>> = HashMap::new();
                for r in rules {
                    by_device.entry(r.device_id).or_default().push(r);
                }
                let open: Vec<OpenAlarm> = open.iter().map(open_alarm).collect();
                let t = now();
                for (device, rules) in by_device {
                    // Actions now can only be due deadlines; the first poll carries them out.
                    let _ = engine.set_device_rules(device, rules, &open, t);
                }
                return true;
            }
            Err(e) => {
                tracing::warn!(%e, "cannot load alarm rules; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = crate::runtime::stopped(stop) => return false,
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn open_alarm(a: &crate::storage::AlarmRecord) -> OpenAlarm {
    OpenAlarm {
        rule_id: a.rule_id,
        raised_at: a.raised_at,
        acked: a.acked_at.is_some(),
        level: a.level,
    }
}

/// Runs the engine until `stop`.
pub(crate) async fn run(
    storage: Arc<dyn Storage>,
    cfg: AlarmsConfig,
    mut rx: Receiver,
    mqtt: crate::mqtt::Publisher,
    mut stop: watch::Receiver<bool>,
) {
    let mut engine = Engine::new(EngineOptions {
        flood_max: cfg.flood_max,
        flood_window_s: i64::from(cfg.flood_window_s),
    });
    let delivery = deliver::start(
        storage.clone(),
        cfg.clone(),
        rx.counters.clone(),
        stop.clone(),
    );
    if !load(&storage, &mut engine, &mut stop).await {
        return;
    }
    rx.rules.store(engine.rule_count(), Ordering::Relaxed);
    loop {
        let sleep = match engine.poll_at() {
            Some(t) => Duration::from_secs(u64::try_from(t - now()).unwrap_or(0)),
            None => Duration::from_secs(3600),
        };
        let mut events = Vec::new();
        tokio::select! {
            e = rx.rx.recv() => match e {
                Some(e) => events.push(e),
                None => break,
            },
            _ = tokio::time::sleep(sleep) => {}
            _ = crate::runtime::stopped(&mut stop) => break,
        }
        while events.len() < 1000 {
            match rx.rx.try_recv() {
                Ok(e) => events.push(e),
                Err(_) => break,
            }
        }
        let mut actions = Vec::new();
        for e in events {
            if let Event::Test(job) = e {
                // Not the engine's business: the same queue, retries and log as the others.
                delivery.push(job);
                continue;
            }
            actions.extend(apply(&storage, &mut engine, e).await);
        }
        rx.rules.store(engine.rule_count(), Ordering::Relaxed);
        actions.extend(engine.poll(now()));
        let actions = seen_elsewhere(&storage, &mut engine, actions).await;
        if !actions.is_empty() {
            let raised = actions
                .iter()
                .filter(|a| matches!(a, Action::Raise { .. }))
                .count();
            rx.counters
                .raised
                .fetch_add(raised as u64, Ordering::Relaxed);
            for e in execute(&storage, &delivery, actions).await {
                mqtt.offer(e);
            }
        }
    }
    tracing::debug!("alarm task stopped");
}

/// A raise from a time-based state condition is checked against the database first: with
/// several servers sharing it, the device may be talking to another one. *Offline*: if the
/// database has a record or a contact within the rule's `after_s`, the raise is withdrawn (and
/// re-armed from that time). *Configuration pending*: if the device confirmed it (through any
/// server), the raise is withdrawn.
async fn seen_elsewhere(
    storage: &Arc<dyn Storage>,
    engine: &mut Engine,
    mut actions: Vec<Action>,
) -> Vec<Action> {
    use super::rules::Condition;
    let checks: Vec<(i64, u32, Option<i64>)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Raise {
                rule_id,
                device_id,
                at,
                ..
            } => match engine.rule(*rule_id)?.spec.condition {
                Condition::Offline { after_s } => {
                    Some((*rule_id, *device_id, Some(at - i64::from(after_s))))
                }
                Condition::ConfigPending { .. } => Some((*rule_id, *device_id, None)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    if checks.is_empty() {
        return actions;
    }
    let s = storage.clone();
    let seen = blocking(move || {
        let mut seen = Vec::new();
        for (rule, device, since) in checks {
            let d = s.device(device)?;
            let Some(since) = since else {
                let pending = d.config_desired > d.config_applied
                    && d.config_rolled_back != Some(d.config_desired);
                if !pending {
                    seen.push((rule, None));
                }
                continue;
            };
            let last = d.last_seen.filter(|t| *t > since);
            let record = s
                .telemetry(&crate::storage::TelemetryQuery {
                    device_id: device,
                    from: since + 1,
                    to: i64::MAX,
                    limit: 1,
                })?
                .first()
                .map(|r| r.time);
            if let Some(t) = last.max(record) {
                seen.push((rule, Some(t)));
            }
        }
        Ok(seen)
    })
    .await;
    let seen = match seen {
        Ok(s) => s,
        Err(e) => {
            // Cannot tell: raise (a false alarm beats a missed one).
            tracing::warn!(%e, "cannot check an offline alarm against the database");
            return actions;
        }
    };
    for (rule, t) in seen {
        match t {
            Some(t) => engine.withdraw_offline(rule, t),
            None => engine.withdraw_config_pending(rule),
        }
        actions.retain(|a| match a {
            Action::Raise { rule_id, .. } => *rule_id != rule,
            Action::Notify(n) => !(n.rule_id == Some(rule) && n.kind == NoticeKind::Raised),
            _ => true,
        });
        tracing::debug!(
            rule,
            seen = t,
            "alarm withdrawn: the database shows another server's contact or confirmation"
        );
    }
    actions
}

/// Feeds one event to the engine.
async fn apply(storage: &Arc<dyn Storage>, engine: &mut Engine, e: Event) -> Vec<Action> {
    let t = now();
    match e {
        Event::Telemetry(rows) => engine.telemetry(&rows, t),
        Event::Wide(rows) => engine.wide(&rows, t),
        Event::ChannelFaults {
            device_id,
            faults,
            at,
        } => engine.channel_faults(device_id, &faults, at),
        Event::Status {
            device_id,
            transport,
            log_drops,
            at,
        } => engine.status(device_id, transport, log_drops, at),
        Event::Contact { device_id, at } => {
            engine.contact(device_id, at);
            Vec::new()
        }
        Event::ConfigSaved { device_id, at } => engine.config_saved(device_id, at),
        Event::ConfigSettled { device_id, at } => engine.config_settled(device_id, at),
        Event::RulesChanged { device_id } => {
            let s = storage.clone();
            let got = blocking(move || {
                let rules = s.device_rules(device_id)?;
                let open = s.alarms(&AlarmFilter {
                    devices: Some(vec![device_id]),
                    open_only: true,
                    limit: usize::MAX,
                })?;
                Ok((rules, open))
            })
            .await;
            match got {
                Ok((rules, open)) => {
                    let open: Vec<OpenAlarm> = open.iter().map(open_alarm).collect();
                    engine.set_device_rules(device_id, rules, &open, t)
                }
                Err(e) => {
                    tracing::warn!(%e, device_id, "cannot reload alarm rules");
                    Vec::new()
                }
            }
        }
        Event::Acked { rule_id } => {
            engine.acknowledge(rule_id);
            Vec::new()
        }
        // Carried out by `run` before the engine sees anything.
        Event::Test(_) => Vec::new(),
        Event::Shelved { rule_id, until } => engine.shelve(rule_id, until, t),
    }
}

/// Carries actions out in order: alarms into the database, then each notification into the log
/// (one row per destination) and onto the delivery queue.
/// Returns the raises and clears this server recorded, for the MQTT publisher.
async fn execute(
    storage: &Arc<dyn Storage>,
    delivery: &deliver::Queue,
    actions: Vec<Action>,
) -> Vec<crate::mqtt::Event> {
    let s = storage.clone();
    let jobs = blocking(move || {
        let mut published = Vec::new();
        let mut open: HashMap<i64, i64> = HashMap::new();
        // Notifications another server sends (it recorded the raise, escalation or clear
        // first): (rule, event).
        let mut theirs: std::collections::HashSet<(i64, &'static str)> = Default::default();
        let mut jobs = Vec::new();
        for a in actions {
            match a {
                Action::Raise {
                    rule_id,
                    device_id,
                    rule_name,
                    severity,
                    message,
                    at,
                } => {
                    let (id, fresh) = s.raise_alarm(&NewAlarm {
                        rule_id,
                        device_id,
                        rule_name,
                        severity,
                        message: message.clone(),
                        raised_at: at,
                    })?;
                    open.insert(rule_id, id);
                    if !fresh {
                        theirs.insert((rule_id, "raised"));
                    } else {
                        published.push(crate::mqtt::Event::Alarm {
                            device_id,
                            alarm_id: id,
                            rule_id,
                            event: crate::mqtt::AlarmEvent::Raised,
                            severity: severity.as_str().to_owned(),
                            message,
                            at,
                        });
                    }
                }
                Action::Clear { rule_id, at } => match s.clear_alarm(rule_id, at)? {
                    Some(id) => {
                        open.insert(rule_id, id);
                        if let Some(a) = s.alarm(id)? {
                            published.push(crate::mqtt::Event::Alarm {
                                device_id: a.device_id,
                                alarm_id: id,
                                rule_id,
                                event: crate::mqtt::AlarmEvent::Cleared,
                                severity: a.severity.as_str().to_owned(),
                                message: a.message,
                                at,
                            });
                        }
                    }
                    None => {
                        theirs.insert((rule_id, "cleared"));
                    }
                },
                Action::Escalate { rule_id, level } => {
                    if !s.set_alarm_level(rule_id, level)? {
                        theirs.insert((rule_id, "escalated"));
                    }
                }
                Action::Notify(n) => {
                    if n.rule_id
                        .is_some_and(|r| theirs.contains(&(r, n.kind.label())))
                    {
                        continue;
                    }
                    let alarm_id = match n.rule_id {
                        None => None,
                        Some(r) => match open.get(&r) {
                            Some(&id) => Some(id),
                            None => s
                                .alarms(&AlarmFilter {
                                    devices: Some(vec![n.device_id]),
                                    open_only: true,
                                    limit: usize::MAX,
                                })?
                                .into_iter()
                                .find(|a| a.rule_id == r)
                                .map(|a| a.id),
                        },
                    };
                    let (subject, text, body) = render(&n, alarm_id);
                    for d in s.list_destinations(n.list_id)? {
                        let note = s.log_notification(
                            &NewNotification {
                                alarm_id,
                                device_id: n.device_id,
                                list_id: n.list_id,
                                destination_id: d.id,
                                destination: d.name.clone(),
                                event: n.kind.label().to_owned(),
                                subject: subject.clone(),
                            },
                            n.at,
                        )?;
                        jobs.push(Job {
                            note_id: note,
                            destination: d,
                            subject: subject.clone(),
                            text: text.clone(),
                            body: body.clone(),
                        });
                    }
                }
            }
        }
        Ok((jobs, published))
    })
    .await;
    match jobs {
        Ok((jobs, published)) => {
            for j in jobs {
                delivery.push(j);
            }
            published
        }
        Err(e) => {
            tracing::warn!(%e, "alarm actions failed");
            Vec::new()
        }
    }
}

/// The `event` of a test notification in the log and in its webhook body.
pub const TEST_EVENT: &str = "test";

/// Subject, plain text and JSON body of a test notification to `destination`, asked for by
/// `by` at `at`. The body has the fields of every webhook body (docs/API.md), with `event`
/// `test` and no device, rule, alarm or list.
pub fn render_test(destination: &str, by: &str, at: i64) -> (String, String, String) {
    let subject: String = format!("[tek] Test notification to {destination}")
        .chars()
        .take(200)
        .collect();
    let text = format!(
        "This is a test notification from tek to the destination {destination:?}, sent by {by}.\n\
         Alarm notifications to this destination arrive the same way.\n\nTime: {} (Unix {at})\n",
        crate::timefmt::datetime(at)
    );
    let body = serde_json::json!({
        "event": TEST_EVENT,
        "level": 0,
        "device_id": null,
        "rule_id": null,
        "alarm_id": null,
        "list_id": null,
        "severity": "info",
        "text": format!("Test notification to {destination}, sent by {by}"),
        "at": at,
        "suppressed": 0,
        "lines": [],
    })
    .to_string();
    (subject, text, body)
}

/// Subject, plain text and JSON body of a notification.
fn render(n: &Notice, alarm_id: Option<i64>) -> (String, String, String) {
    let what = match &n.kind {
        NoticeKind::Raised => "raised".to_owned(),
        NoticeKind::Escalated(l) => format!("escalated (level {l})"),
        NoticeKind::Cleared => "cleared".to_owned(),
        NoticeKind::Summary { .. } => "suppressed notifications".to_owned(),
    };
    let subject = format!(
        "[tek] {} {what}: device {} — {}",
        n.severity.as_str().to_uppercase(),
        n.device_id,
        n.text
    );
    let subject: String = subject.chars().take(200).collect();
    let mut text = format!(
        "{}\n\nDevice: {}\nSeverity: {}\nEvent: {what}\nTime: {} (Unix {})\n",
        n.text,
        n.device_id,
        n.severity.as_str(),
        crate::timefmt::datetime(n.at),
        n.at
    );
    if let Some(a) = alarm_id {
        text.push_str(&format!("Alarm: {a}\n"));
    }
    let lines = match &n.kind {
        NoticeKind::Summary { count, lines } => {
            text.push_str(&format!("\n{count} notifications held back:\n"));
            for l in lines {
                text.push_str(&format!("  {l}\n"));
            }
            lines.clone()
        }
        _ => Vec::new(),
    };
    let body = serde_json::json!({
        "event": n.kind.label(),
        "level": match n.kind { NoticeKind::Escalated(l) => l, _ => 0 },
        "device_id": n.device_id,
        "rule_id": n.rule_id,
        "alarm_id": alarm_id,
        "list_id": n.list_id,
        "severity": n.severity.as_str(),
        "text": n.text,
        "at": n.at,
        "suppressed": match &n.kind { NoticeKind::Summary { count, .. } => *count, _ => 0 },
        "lines": lines,
    })
    .to_string();
    (subject, text, body)
}

#[cfg(test)]
mod tests;
