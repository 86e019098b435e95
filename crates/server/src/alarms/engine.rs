//! The alarm engine: logic without I/O. Time comes in as an argument (Unix seconds), the
//! engine returns what to do ([`Action`]: raise, clear, escalate, notify) and when to be called
//! next ([`Engine::poll_at`]). The alarm task (`super::task`) feeds it committed telemetry and
//! status and carries the actions out; the tests below drive it with a fake clock.
//!
//! Per rule the engine keeps a phase:
//!
//! ```text
//!            condition                 raise_after_s elapsed
//!  Normal ──────────────► Pending ─────────────────────────► Active ──► (alarm raised)
//!    ▲   ◄─── restored ──┘                                   │   ▲
//!    │                                                restore │   │ condition again
//!    │          clear_after_s elapsed                         ▼   │
//!    └─────────────────────────────────────────────────── Restoring  ──► (alarm cleared)
//! ```
//!
//! Time-based conditions (offline for X, configuration pending for X) and every hold-off,
//! escalation, shelving expiry and flood-window end are per-rule deadlines in one ordered set
//! (a timer wheel in effect): [`Engine::poll`] pops only what is due, never scans the devices.
//!
//! Notifications pass flood suppression: at most `flood_max` per (device, list) per
//! `flood_window_s`; the rest are counted and summarised in one notification when the window
//! ends.

use super::rules::{Condition, Rule, Severity};
use crate::storage::{TelemetryRow, WideRow};
use std::collections::{BTreeSet, HashMap};
use tek_proto::channel::faults::FaultEntry;
use tek_proto::message::status::Transport;

/// Flood suppression settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Most notifications per (device, destination list) per window.
    pub flood_max: u32,
    /// Length of a flood window, seconds.
    pub flood_window_s: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            flood_max: 10,
            flood_window_s: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Normal,
    Pending { since: i64 },
    Active,
    Restoring { since: i64 },
}

#[derive(Debug, Clone, Copy)]
struct Open {
    raised_at: i64,
    acked: bool,
    level: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct Memo {
    /// Offline / configuration pending: when the condition turns true.
    becomes_true_at: Option<i64>,
    /// Heater window start: time and water temperature.
    window: Option<(i64, i32)>,
}

struct RuleState {
    rule: Rule,
    phase: Phase,
    open: Option<Open>,
    memo: Memo,
    scheduled: Option<i64>,
    /// The last value seen, for the alarm message.
    last_seen: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct DeviceMemo {
    log_drops: Option<u32>,
    /// Newest record or report time seen: older ones (retransmissions) are not evaluated.
    newest: i64,
    /// The same for wide records (a device's own channels), which arrive apart from telemetry.
    newest_wide: i64,
    last_contact: Option<i64>,
    config_pending_since: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Rule(i64),
    Flood(u32, i64),
}

#[derive(Debug, Default)]
struct Flood {
    window_end: i64,
    sent: u32,
    held: u32,
    lines: Vec<String>,
    worst: Option<Severity>,
}

/// Lines of held-back notifications a summary lists (the count covers all of them).
const SUMMARY_LINES: usize = 20;

/// The alarm engine of one server.
pub struct Engine {
    opts: EngineOptions,
    rules: HashMap<i64, RuleState>,
    by_device: HashMap<u32, Vec<i64>>,
    devices: HashMap<u32, DeviceMemo>,
    /// Each device's failed-sample counters by channel in its previous ChannelFaults report.
    fault_counts: HashMap<u32, HashMap<u8, u16>>,
    timers: BTreeSet<(i64, Timer)>,
    floods: HashMap<(u32, i64), Flood>,
    out: Vec<Action>,
}

impl Engine {
    /// An engine without rules.
    pub fn new(opts: EngineOptions) -> Engine {
        Engine {
            opts,
            rules: HashMap::new(),
            by_device: HashMap::new(),
            devices: HashMap::new(),
            fault_counts: HashMap::new(),
            timers: BTreeSet::new(),
            floods: HashMap::new(),
            out: Vec::new(),
        }
    }

    /// A loaded rule.
    pub fn rule(&self, id: i64) -> Option<&Rule> {
        self.rules.get(&id).map(|s| &s.rule)
    }

    /// Number of rules loaded.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Replaces the rules of `device_id` (after a change through the API), keeping the state of
    /// rules that still exist. `open` lists the device's open alarms as stored. Returns actions
    /// (a rule loaded shelved-out may raise at once only through later input, never here).
    pub fn set_device_rules(
        &mut self,
        device_id: u32,
        rules: Vec<Rule>,
        open: &[OpenAlarm],
        now: i64,
    ) -> Vec<Action> {
        let old: Vec<i64> = self.by_device.remove(&device_id).unwrap_or_default();
        let mut keep: HashMap<i64, RuleState> = HashMap::new();
        for id in old {
            if let Some(st) = self.rules.remove(&id) {
                self.unschedule(id, st.scheduled);
                keep.insert(id, st);
            }
        }
        let mut ids = Vec::with_capacity(rules.len());
        for rule in rules.into_iter().filter(|r| r.device_id == device_id) {
            let id = rule.id;
            let stored = open.iter().find(|o| o.rule_id == id);
            let st = match keep.remove(&id) {
                Some(mut st) => {
                    let changed = st.rule.spec.condition != rule.spec.condition;
                    st.rule = rule;
                    if changed {
                        st.memo = Memo::default();
                    }
                    // The database is the truth about the alarm itself.
                    st.open = stored.map(|o| Open {
                        raised_at: o.raised_at,
                        acked: o.acked,
                        level: o.level,
                    });
                    if st.open.is_none() && matches!(st.phase, Phase::Active) {
                        // Cleared by hand (rule edited): watch from scratch.
                        st.phase = Phase::Normal;
                    }
                    st
                }
                None => RuleState {
                    phase: if stored.is_some() {
                        Phase::Active
                    } else {
                        Phase::Normal
                    },
                    open: stored.map(|o| Open {
                        raised_at: o.raised_at,
                        acked: o.acked,
                        level: o.level,
                    }),
                    memo: Memo::default(),
                    scheduled: None,
                    last_seen: String::new(),
                    rule,
                },
            };
            ids.push(id);
            self.rules.insert(id, st);
        }
        self.by_device.insert(device_id, ids.clone());
        let dev = *self.devices.entry(device_id).or_default();
        for id in ids {
            if let Some(st) = self.rules.get_mut(&id) {
                // Time-based conditions start counting from what is known (or from now).
                match st.rule.spec.condition {
                    Condition::Offline { after_s } => {
                        let from = dev.last_contact.unwrap_or(now);
                        st.memo.becomes_true_at = Some(from + i64::from(after_s));
                    }
                    Condition::ConfigPending { after_s } => {
                        st.memo.becomes_true_at =
                            dev.config_pending_since.map(|s| s + i64::from(after_s));
                    }
                    _ => {}
                }
            }
            self.reschedule(id);
        }
        self.poll(now)
    }

    /// Committed telemetry records (any devices, any order).
    pub fn telemetry(&mut self, rows: &[TelemetryRow], now: i64) -> Vec<Action> {
        for row in rows {
            self.contact(row.device_id, row.time.min(now));
            let dev = self.devices.entry(row.device_id).or_default();
            if row.time < dev.newest {
                continue; // a retransmission of something already evaluated
            }
            dev.newest = row.time;
            let Some(ids) = self.by_device.get(&row.device_id).cloned() else {
                continue;
            };
            for id in ids {
                let Some(st) = self.rules.get_mut(&id) else {
                    continue;
                };
                if !st.rule.spec.enabled || !st.rule.spec.condition.on_telemetry() {
                    continue;
                }
                let seen = eval_row(st, row);
                self.observe(id, seen, row.time);
            }
        }
        self.poll(now)
    }

    /// Committed wide telemetry records (a device's own channels; any devices, any order):
    /// the conditions on channels by index.
    pub fn wide(&mut self, rows: &[WideRow], now: i64) -> Vec<Action> {
        for row in rows {
            self.contact(row.device_id, row.time.min(now));
            let dev = self.devices.entry(row.device_id).or_default();
            if row.time < dev.newest_wide {
                continue; // a retransmission of something already evaluated
            }
            dev.newest_wide = row.time;
            let Some(ids) = self.by_device.get(&row.device_id).cloned() else {
                continue;
            };
            for id in ids {
                let Some(st) = self.rules.get_mut(&id) else {
                    continue;
                };
                if !st.rule.spec.enabled || !st.rule.spec.condition.on_wide() {
                    continue;
                }
                let seen = eval_wide(st, row);
                self.observe(id, seen, row.time);
            }
        }
        self.poll(now)
    }

    /// A committed ChannelFaults report (PROTOCOL.md 17.8): sensor-fault conditions compare each
    /// channel's failed-sample counter with the previous report's. The first report the engine
    /// sees of a device is only a baseline (as the log-drop counter's first status is).
    pub fn channel_faults(
        &mut self,
        device_id: u32,
        faults: &[FaultEntry],
        at: i64,
    ) -> Vec<Action> {
        self.contact(device_id, at);
        let counts: HashMap<u8, u16> = faults.iter().map(|f| (f.channel, f.errors)).collect();
        let prev = self.fault_counts.insert(device_id, counts.clone());
        for id in self.by_device.get(&device_id).cloned().unwrap_or_default() {
            let Some(st) = self.rules.get_mut(&id) else {
                continue;
            };
            if !st.rule.spec.enabled {
                continue;
            }
            let Condition::SensorFault { index } = st.rule.spec.condition else {
                continue;
            };
            let Some(prev) = &prev else {
                continue;
            };
            let now = counts.get(&index).copied().unwrap_or(0);
            let before = prev.get(&index).copied().unwrap_or(0);
            // A smaller counter is a restart or a new map: whatever it counts now is new.
            let new = if now >= before { now - before } else { now };
            st.last_seen = match faults.iter().find(|f| f.channel == index) {
                Some(f) if new > 0 => format!("{}: {new} failed samples", f.last),
                _ => "no new failed samples".to_owned(),
            };
            self.observe(id, Some(new > 0), at);
        }
        self.poll(at)
    }

    /// A committed status report.
    pub fn status(
        &mut self,
        device_id: u32,
        transport: Transport,
        log_drops: u32,
        at: i64,
    ) -> Vec<Action> {
        self.contact(device_id, at);
        let dev = self.devices.entry(device_id).or_default();
        let prev = dev.log_drops.replace(log_drops);
        // A smaller counter is a reboot: whatever it counts now is new.
        let new_drops = match prev {
            Some(p) if log_drops >= p => log_drops - p,
            Some(_) => log_drops,
            None => 0,
        };
        for id in self.by_device.get(&device_id).cloned().unwrap_or_default() {
            let Some(st) = self.rules.get_mut(&id) else {
                continue;
            };
            if !st.rule.spec.enabled {
                continue;
            }
            let seen = match st.rule.spec.condition {
                Condition::LogDrops => {
                    st.last_seen = format!("{new_drops} records dropped");
                    Some(new_drops > 0)
                }
                Condition::OnGsm => {
                    st.last_seen = format!("transport {transport:?}");
                    Some(transport == Transport::Gsm)
                }
                _ => None,
            };
            if seen.is_some() {
                self.observe(id, seen, at);
            }
        }
        self.poll(at)
    }

    /// Any authenticated contact with the device (keepalive, telemetry, status): restores
    /// offline rules and moves their deadline.
    pub fn contact(&mut self, device_id: u32, at: i64) {
        let dev = self.devices.entry(device_id).or_default();
        if dev.last_contact.is_some_and(|c| c >= at) {
            return;
        }
        dev.last_contact = Some(at);
        for id in self.by_device.get(&device_id).cloned().unwrap_or_default() {
            let Some(st) = self.rules.get_mut(&id) else {
                continue;
            };
            if let Condition::Offline { after_s } = st.rule.spec.condition {
                st.memo.becomes_true_at = Some(at + i64::from(after_s));
                st.last_seen = String::new();
                if st.rule.spec.enabled {
                    self.observe(id, Some(false), at);
                }
                self.reschedule(id);
            }
        }
    }

    /// The driver found that the device of an *offline* rule that just raised was heard from at
    /// `seen` by another server (the database has newer records): the raise is withdrawn (the
    /// driver drops its `Raise` and `Notify` actions) and the deadline moves to `seen + X`.
    pub fn withdraw_offline(&mut self, rule_id: i64, seen: i64) {
        let Some(st) = self.rules.get_mut(&rule_id) else {
            return;
        };
        if !matches!(st.rule.spec.condition, Condition::Offline { .. }) {
            return;
        }
        st.open = None;
        st.phase = Phase::Normal;
        let device = st.rule.device_id;
        self.reschedule(rule_id);
        self.contact(device, seen);
    }

    /// The driver found that the configuration a *configuration pending* rule just raised for
    /// was confirmed through another server: the raise is withdrawn (the driver drops its
    /// actions) and the device counts as settled.
    pub fn withdraw_config_pending(&mut self, rule_id: i64) {
        let Some(st) = self.rules.get_mut(&rule_id) else {
            return;
        };
        if !matches!(st.rule.spec.condition, Condition::ConfigPending { .. }) {
            return;
        }
        st.open = None;
        st.phase = Phase::Normal;
        let device = st.rule.device_id;
        if let Some(dev) = self.devices.get_mut(&device) {
            dev.config_pending_since = None;
        }
        for id in self.by_device.get(&device).cloned().unwrap_or_default() {
            if let Some(st) = self.rules.get_mut(&id) {
                if let Condition::ConfigPending { .. } = st.rule.spec.condition {
                    st.memo.becomes_true_at = None;
                }
            }
            self.reschedule(id);
        }
    }

    /// A configuration was saved for the device (pending until it confirms).
    pub fn config_saved(&mut self, device_id: u32, at: i64) -> Vec<Action> {
        let dev = self.devices.entry(device_id).or_default();
        if dev.config_pending_since.is_none() {
            dev.config_pending_since = Some(at);
        }
        let since = dev.config_pending_since.unwrap_or(at);
        for id in self.by_device.get(&device_id).cloned().unwrap_or_default() {
            if let Some(st) = self.rules.get_mut(&id) {
                if let Condition::ConfigPending { after_s } = st.rule.spec.condition {
                    st.memo.becomes_true_at = Some(since + i64::from(after_s));
                    self.reschedule(id);
                }
            }
        }
        self.poll(at)
    }

    /// The device confirmed (or rolled back) its newest configuration.
    pub fn config_settled(&mut self, device_id: u32, at: i64) -> Vec<Action> {
        // No entry for a device the engine knows nothing else about: an absent memo reads as
        // the default (nothing pending), and a configured fleet settles every device once, so
        // an entry each would cost ~100 bytes per device for nothing (`tek bench fleet`).
        if let Some(dev) = self.devices.get_mut(&device_id) {
            dev.config_pending_since = None;
        }
        for id in self.by_device.get(&device_id).cloned().unwrap_or_default() {
            if let Some(st) = self.rules.get_mut(&id) {
                if let Condition::ConfigPending { .. } = st.rule.spec.condition {
                    st.memo.becomes_true_at = None;
                    if st.rule.spec.enabled {
                        self.observe(id, Some(false), at);
                    }
                    self.reschedule(id);
                }
            }
        }
        self.poll(at)
    }

    /// Someone acknowledged the open alarm of `rule_id`: escalation stops.
    pub fn acknowledge(&mut self, rule_id: i64) {
        if let Some(open) = self.rules.get_mut(&rule_id).and_then(|s| s.open.as_mut()) {
            open.acked = true;
        }
        self.reschedule(rule_id);
    }

    /// Shelves `rule_id` until `until` (None: unshelve). While shelved the rule raises nothing,
    /// sends nothing and does not escalate; at expiry a condition still active raises.
    pub fn shelve(&mut self, rule_id: i64, until: Option<i64>, now: i64) -> Vec<Action> {
        if let Some(st) = self.rules.get_mut(&rule_id) {
            st.rule.shelved_until = until.filter(|u| *u > now);
            if st.phase == Phase::Active && st.open.is_none() && !st.rule.shelved(now) {
                // Unshelved early with the condition still active.
                self.enter_active(rule_id, now);
            }
        }
        self.reschedule(rule_id);
        self.poll(now)
    }

    /// When [`Engine::poll`] must be called next.
    pub fn poll_at(&self) -> Option<i64> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Fires every deadline due at `now` and returns all actions since the last call.
    pub fn poll(&mut self, now: i64) -> Vec<Action> {
        while let Some((at, timer)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Rule(id) => {
                    if let Some(st) = self.rules.get_mut(&id) {
                        st.scheduled = None;
                    }
                    self.rule_due(id, at);
                    self.reschedule(id);
                }
                Timer::Flood(device, list) => self.flood_due(device, list, at),
            }
        }
        std::mem::take(&mut self.out)
    }

    fn rule_due(&mut self, id: i64, at: i64) {
        let Some(st) = self.rules.get_mut(&id) else {
            return;
        };
        if st.rule.shelved_until.is_some_and(|u| u <= at) {
            st.rule.shelved_until = None; // expired: its deadline must not come back
        }
        if !st.rule.spec.enabled {
            return;
        }
        // A time-based condition turning true.
        if st.memo.becomes_true_at.is_some_and(|t| t <= at) {
            st.memo.becomes_true_at = None;
            st.last_seen = match st.rule.spec.condition {
                Condition::Offline { .. } => "no contact".into(),
                _ => "not confirmed".into(),
            };
            self.observe(id, Some(true), at);
        }
        let Some(st) = self.rules.get_mut(&id) else {
            return;
        };
        let spec = &st.rule.spec;
        match st.phase {
            Phase::Pending { since } if since + i64::from(spec.raise_after_s) <= at => {
                self.enter_active(id, at)
            }
            Phase::Restoring { since } if since + i64::from(spec.clear_after_s) <= at => {
                self.enter_normal(id, at)
            }
            Phase::Active if st.open.is_none() && !st.rule.shelved(at) => {
                // Shelving ended with the condition still active.
                self.enter_active(id, at)
            }
            _ => {}
        }
        self.escalate_due(id, at);
    }

    fn escalate_due(&mut self, id: i64, at: i64) {
        let Some(st) = self.rules.get_mut(&id) else {
            return;
        };
        let Some(due) = escalation_at(st) else {
            return;
        };
        if due > at || st.rule.shelved(at) {
            return;
        }
        let Some(open) = st.open.as_mut() else {
            return;
        };
        open.level += 1;
        let level = open.level;
        let Some(&list) = st.rule.spec.lists.get(level as usize) else {
            return;
        };
        let n = Notice {
            device_id: st.rule.device_id,
            list_id: list,
            rule_id: Some(id),
            kind: NoticeKind::Escalated(level),
            severity: st.rule.spec.severity,
            text: format!(
                "{} — not acknowledged, escalated (level {level})",
                st.rule.spec.name
            ),
            at,
        };
        self.out.push(Action::Escalate { rule_id: id, level });
        self.notify(n);
    }

    /// One observation: `Some(true)` condition, `Some(false)` restore condition, `None` neither
    /// (in the hysteresis band, or not enough data yet).
    fn observe(&mut self, id: i64, seen: Option<bool>, at: i64) {
        let Some(st) = self.rules.get_mut(&id) else {
            return;
        };
        let Some(active) = seen else {
            return;
        };
        let (raise, clear) = (
            i64::from(st.rule.spec.raise_after_s),
            i64::from(st.rule.spec.clear_after_s),
        );
        match (st.phase, active) {
            (Phase::Normal, true) => {
                st.phase = Phase::Pending { since: at };
                if raise == 0 {
                    self.enter_active(id, at);
                }
            }
            (Phase::Pending { .. }, false) => st.phase = Phase::Normal,
            (Phase::Pending { since }, true) if since + raise <= at => self.enter_active(id, at),
            (Phase::Active, false) => {
                st.phase = Phase::Restoring { since: at };
                if clear == 0 {
                    self.enter_normal(id, at);
                }
            }
            (Phase::Restoring { .. }, true) => st.phase = Phase::Active,
            (Phase::Restoring { since }, false) if since + clear <= at => self.enter_normal(id, at),
            _ => {}
        }
        self.reschedule(id);
    }

    fn enter_active(&mut self, id: i64, at: i64) {
        let Some(st) = self.rules.get_mut(&id) else {
            return;
        };
        st.phase = Phase::Active;
        if st.open.is_some() || st.rule.shelved(at) {
            return;
        }
        st.open = Some(Open {
            raised_at: at,
            acked: false,
            level: 0,
        });
        let spec = &st.rule.spec;
        let message = if st.last_seen.is_empty() {
            spec.condition.describe()
        } else {
            format!("{} ({})", spec.condition.describe(), st.last_seen)
        };
        self.out.push(Action::Raise {
            rule_id: id,
            device_id: st.rule.device_id,
            rule_name: spec.name.clone(),
            severity: spec.severity,
            message: message.clone(),
            at,
        });
        if let Some(&list) = spec.lists.first() {
            let n = Notice {
                device_id: st.rule.device_id,
                list_id: list,
                rule_id: Some(id),
                kind: NoticeKind::Raised,
                severity: spec.severity,
                text: format!("{} — {message}", spec.name),
                at,
            };
            self.notify(n);
        }
    }

    fn enter_normal(&mut self, id: i64, at: i64) {
        let Some(st) = self.rules.get_mut(&id) else {
            return;
        };
        st.phase = Phase::Normal;
        st.memo.window = None;
        let Some(open) = st.open.take() else {
            return;
        };
        self.out.push(Action::Clear { rule_id: id, at });
        if st.rule.shelved(at) {
            return;
        }
        let spec = st.rule.spec.clone();
        let device_id = st.rule.device_id;
        for &list in spec.lists.iter().take(open.level as usize + 1) {
            self.notify(Notice {
                device_id,
                list_id: list,
                rule_id: Some(id),
                kind: NoticeKind::Cleared,
                severity: spec.severity,
                text: format!("{} — cleared", spec.name),
                at,
            });
        }
    }

    fn notify(&mut self, n: Notice) {
        let key = (n.device_id, n.list_id);
        let window = self.opts.flood_window_s.max(1);
        let f = self.floods.entry(key).or_default();
        if n.at >= f.window_end && f.held == 0 {
            f.window_end = n.at + window;
            f.sent = 0;
        }
        if f.sent < self.opts.flood_max {
            f.sent += 1;
            self.out.push(Action::Notify(n));
            return;
        }
        if f.held == 0 {
            self.timers
                .insert((f.window_end, Timer::Flood(n.device_id, n.list_id)));
        }
        f.held += 1;
        f.worst = f.worst.max(Some(n.severity));
        if f.lines.len() < SUMMARY_LINES {
            f.lines.push(format!("{}: {}", n.kind.label(), n.text));
        }
    }

    fn flood_due(&mut self, device_id: u32, list_id: i64, at: i64) {
        let Some(f) = self.floods.get_mut(&(device_id, list_id)) else {
            return;
        };
        if f.held == 0 {
            return;
        }
        let n = Notice {
            device_id,
            list_id,
            rule_id: None,
            kind: NoticeKind::Summary {
                count: f.held,
                lines: std::mem::take(&mut f.lines),
            },
            severity: f.worst.take().unwrap_or(Severity::Info),
            text: format!(
                "{} notifications held back by flood suppression in the last {} s",
                f.held, self.opts.flood_window_s
            ),
            at,
        };
        // The summary opens the next window and counts in it.
        f.held = 0;
        f.window_end = at + self.opts.flood_window_s.max(1);
        f.sent = 1;
        self.out.push(Action::Notify(n));
    }

    fn unschedule(&mut self, id: i64, at: Option<i64>) {
        if let Some(t) = at {
            self.timers.remove(&(t, Timer::Rule(id)));
        }
    }

    /// Puts the rule's earliest deadline in the timer set (and removes the old one).
    fn reschedule(&mut self, id: i64) {
        let Some(st) = self.rules.get_mut(&id) else {
            return;
        };
        let spec = &st.rule.spec;
        let mut next: Option<i64> = None;
        let mut at = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        if spec.enabled {
            if let Some(t) = st.memo.becomes_true_at {
                at(t);
            }
            match st.phase {
                Phase::Pending { since } => at(since + i64::from(spec.raise_after_s)),
                Phase::Restoring { since } => at(since + i64::from(spec.clear_after_s)),
                _ => {}
            }
            if let Some(u) = st.rule.shelved_until {
                if matches!(st.phase, Phase::Active | Phase::Restoring { .. })
                    || st.open.is_some_and(|o| !o.acked)
                {
                    at(u);
                }
            }
            if let Some(e) = escalation_at(st) {
                at(e.max(st.rule.shelved_until.unwrap_or(e)));
            }
        }
        if next == st.scheduled {
            return;
        }
        let old = std::mem::replace(&mut st.scheduled, next);
        if let Some(t) = old {
            self.timers.remove(&(t, Timer::Rule(id)));
        }
        if let Some(t) = next {
            self.timers.insert((t, Timer::Rule(id)));
        }
    }
}

mod actions;
mod conditions;

pub use actions::{Action, Notice, NoticeKind, OpenAlarm};
use conditions::{escalation_at, eval_row, eval_wide};

#[cfg(test)]
mod tests;
