//! Alarm rules, alarms, destinations, lists and the notification log in SQLite.

use super::{u32_col, Sqlite};
use crate::alarms::rules::{Rule, RuleSpec, MAX_RULES_PER_DEVICE};
use crate::storage::alarms::*;
use crate::storage::{missing_if_none, Error, Result};
use rusqlite::{params, OptionalExtension};

type RawRule = (i64, i64, String, Option<i64>, i64);

fn raw_rule(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRule> {
    // rusqlite maps a row to a tuple of its columns, in order.
    r.try_into()
}

fn rule((id, device, spec, shelved_until, created_at): RawRule) -> Result<Rule> {
    Ok(Rule {
        id,
        device_id: u32_col(device, "device id")?,
        spec: decode_spec(&spec)?,
        shelved_until,
        created_at,
    })
}

type RawAlarm = (
    i64,
    i64,
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    i64,
);

fn raw_alarm(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAlarm> {
    // rusqlite maps a row to a tuple of its columns, in order.
    r.try_into()
}

fn alarm(a: RawAlarm) -> Result<AlarmRecord> {
    Ok(AlarmRecord {
        id: a.0,
        rule_id: a.1,
        device_id: u32_col(a.2, "device id")?,
        rule_name: a.3,
        severity: decode_severity(&a.4)?,
        message: a.5,
        raised_at: a.6,
        acked_at: a.7,
        acked_by: a.8,
        cleared_at: a.9,
        level: u32_col(a.10, "alarm level")?,
    })
}

type RawDest = (i64, String, String, String, Option<String>, i64);

fn raw_dest(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawDest> {
    // rusqlite maps a row to a tuple of its columns, in order.
    r.try_into()
}

fn dest(d: RawDest) -> Result<Destination> {
    Ok(Destination {
        id: d.0,
        name: d.1,
        kind: DestinationKind::parse(&d.2)
            .ok_or_else(|| Error::Corrupt(format!("destination kind {:?}", d.2)))?,
        target: d.3,
        secret: d.4,
        created_at: d.5,
    })
}

/// A logged notification with its state, device id and attempts still raw.
type RawNote = (NotificationRecord, String, i64, i64);

fn note(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawNote> {
    Ok((
        NotificationRecord {
            id: r.get(0)?,
            alarm_id: r.get(1)?,
            device_id: 0,
            list_id: r.get(3)?,
            destination_id: r.get(4)?,
            destination: r.get(5)?,
            event: r.get(6)?,
            subject: r.get(7)?,
            state: DeliveryState::Queued,
            attempts: 0,
            error: r.get(10)?,
            created_at: r.get(11)?,
            done_at: r.get(12)?,
        },
        r.get(8)?,
        r.get(2)?,
        r.get(9)?,
    ))
}

fn finish_note((mut n, state, device, attempts): RawNote) -> Result<NotificationRecord> {
    n.state =
        DeliveryState::parse(&state).ok_or_else(|| Error::Corrupt(format!("state {state:?}")))?;
    n.device_id = u32_col(device, "device id")?;
    n.attempts = u32_col(attempts, "attempts")?;
    Ok(n)
}

fn unique(e: rusqlite::Error, what: String) -> Error {
    super::users::unique(e, what)
}

/// `?,?,?` for an `IN` list of `n` items.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

impl AlarmStore for Sqlite {
    fn create_rule(&self, device_id: u32, spec: &RuleSpec, now: i64) -> Result<i64> {
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE id = ?1)",
            params![device_id],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(Error::NotFound(device_id));
        }
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM alarm_rules WHERE device_id = ?1",
            params![device_id],
            |r| r.get(0),
        )?;
        if n >= MAX_RULES_PER_DEVICE as i64 {
            return Err(Error::Limit(format!(
                "device {device_id} has {MAX_RULES_PER_DEVICE} alarm rules already"
            )));
        }
        tx.execute(
            "INSERT INTO alarm_rules (device_id, spec, created_at) VALUES (?1, ?2, ?3)",
            params![device_id, encode_spec(spec), now],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    fn update_rule(&self, id: i64, spec: &RuleSpec) -> Result<()> {
        let n = self.writer()?.execute(
            "UPDATE alarm_rules SET spec = ?2 WHERE id = ?1",
            params![id, encode_spec(spec)],
        )?;
        missing_if_none(n, || format!("alarm rule {id}"))
    }

    fn delete_rule(&self, id: i64, now: i64) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM alarm_rules WHERE id = ?1", params![id])?;
        missing_if_none(n, || format!("alarm rule {id}"))?;
        tx.execute(
            "UPDATE alarms SET cleared_at = ?2 WHERE rule_id = ?1 AND cleared_at IS NULL",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn rule(&self, id: i64) -> Result<Option<Rule>> {
        let raw = self
            .reader()?
            .query_row(
                &format!("SELECT {RULE_COLS} FROM alarm_rules WHERE id = ?1"),
                params![id],
                raw_rule,
            )
            .optional()?;
        raw.map(rule).transpose()
    }

    fn device_rules(&self, device_id: u32) -> Result<Vec<Rule>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RULE_COLS} FROM alarm_rules WHERE device_id = ?1 ORDER BY id"
        ))?;
        let raw = stmt
            .query_map(params![device_id], raw_rule)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(rule).collect()
    }

    fn all_rules(&self) -> Result<Vec<Rule>> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {RULE_COLS} FROM alarm_rules ORDER BY id"))?;
        let raw = stmt
            .query_map([], raw_rule)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(rule).collect()
    }

    fn shelve_rule(&self, id: i64, until: Option<i64>) -> Result<()> {
        let n = self.writer()?.execute(
            "UPDATE alarm_rules SET shelved_until = ?2 WHERE id = ?1",
            params![id, until],
        )?;
        missing_if_none(n, || format!("alarm rule {id}"))
    }

    fn raise_alarm(&self, a: &NewAlarm) -> Result<(i64, bool)> {
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let open: Option<i64> = tx
            .query_row(
                "SELECT id FROM alarms WHERE rule_id = ?1 AND cleared_at IS NULL",
                params![a.rule_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = open {
            return Ok((id, false));
        }
        tx.execute(
            "INSERT INTO alarms (rule_id, device_id, rule_name, severity, message, raised_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                a.rule_id,
                a.device_id,
                a.rule_name,
                a.severity.as_str(),
                a.message,
                a.raised_at
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok((id, true))
    }

    fn clear_alarm(&self, rule_id: i64, at: i64) -> Result<Option<i64>> {
        Ok(self
            .writer()?
            .query_row(
                "UPDATE alarms SET cleared_at = ?2 WHERE rule_id = ?1 AND cleared_at IS NULL \
                 RETURNING id",
                params![rule_id, at],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn ack_alarm(&self, id: i64, by: &str, at: i64) -> Result<bool> {
        let conn = self.writer()?;
        let n = conn.execute(
            "UPDATE alarms SET acked_at = ?2, acked_by = ?3 WHERE id = ?1 AND acked_at IS NULL",
            params![id, at, by],
        )?;
        if n == 1 {
            return Ok(true);
        }
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM alarms WHERE id = ?1)",
            params![id],
            |r| r.get(0),
        )?;
        if exists {
            Ok(false)
        } else {
            Err(Error::Missing(format!("alarm {id}")))
        }
    }

    fn set_alarm_level(&self, rule_id: i64, level: u32) -> Result<bool> {
        let n = self.writer()?.execute(
            "UPDATE alarms SET level = ?2 WHERE rule_id = ?1 AND cleared_at IS NULL AND level < ?2",
            params![rule_id, level],
        )?;
        Ok(n > 0)
    }

    fn alarm(&self, id: i64) -> Result<Option<AlarmRecord>> {
        let raw = self
            .reader()?
            .query_row(
                &format!("SELECT {ALARM_COLS} FROM alarms WHERE id = ?1"),
                params![id],
                raw_alarm,
            )
            .optional()?;
        raw.map(alarm).transpose()
    }

    fn alarms(&self, f: &AlarmFilter) -> Result<Vec<AlarmRecord>> {
        let mut sql = format!("SELECT {ALARM_COLS} FROM alarms WHERE 1 = 1");
        let mut args: Vec<i64> = Vec::new();
        if let Some(d) = &f.devices {
            if d.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(&format!(" AND device_id IN ({})", placeholders(d.len())));
            args.extend(d.iter().map(|&x| i64::from(x)));
        }
        if f.open_only {
            sql.push_str(" AND cleared_at IS NULL");
        }
        sql.push_str(" ORDER BY id DESC LIMIT CAST(? AS INTEGER)");
        args.push(i64::try_from(f.limit).unwrap_or(i64::MAX));
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&sql)?;
        let raw = stmt
            .query_map(rusqlite::params_from_iter(args), raw_alarm)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(alarm).collect()
    }

    fn create_destination(&self, d: &NewDestination, now: i64) -> Result<i64> {
        let conn = self.writer()?;
        conn.execute(
            "INSERT INTO alarm_destinations (name, kind, target, secret, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                d.name,
                d.kind.as_str(),
                d.target,
                crate::storage::sealed::seal_secret(Some(&self.vault), d.secret.as_deref())?,
                now
            ],
        )
        .map_err(|e| unique(e, format!("destination {}", d.name)))?;
        Ok(conn.last_insert_rowid())
    }

    fn destinations(&self) -> Result<Vec<Destination>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DEST_COLS} FROM alarm_destinations ORDER BY id"
        ))?;
        let raw = stmt
            .query_map([], raw_dest)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter()
            .map(|d| dest(d)?.opened(Some(&self.vault)))
            .collect()
    }

    fn delete_destination(&self, id: i64) -> Result<()> {
        let n = self
            .writer()?
            .execute("DELETE FROM alarm_destinations WHERE id = ?1", params![id])?;
        missing_if_none(n, || format!("destination {id}"))
    }

    fn create_list(&self, name: &str, now: i64) -> Result<i64> {
        let conn = self.writer()?;
        conn.execute(
            "INSERT INTO alarm_lists (name, created_at) VALUES (?1, ?2)",
            params![name, now],
        )
        .map_err(|e| unique(e, format!("list {name}")))?;
        Ok(conn.last_insert_rowid())
    }

    fn set_list_members(&self, id: i64, members: &[i64]) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM alarm_lists WHERE id = ?1)",
            params![id],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(Error::Missing(format!("list {id}")));
        }
        tx.execute(
            "DELETE FROM alarm_list_members WHERE list_id = ?1",
            params![id],
        )?;
        for &m in members {
            tx.execute(
                "INSERT OR IGNORE INTO alarm_list_members (list_id, destination_id) \
                 VALUES (?1, ?2)",
                params![id, m],
            )
            .map_err(|e| super::sites::fk(e, || format!("destination {m}")))?;
        }
        tx.commit()?;
        Ok(())
    }

    fn set_list_site(&self, list_id: i64, site_id: Option<i64>) -> Result<()> {
        let n = self
            .writer()?
            .execute(
                "UPDATE alarm_lists SET site_id = ?2 WHERE id = ?1",
                params![list_id, site_id],
            )
            .map_err(|e| super::sites::fk(e, || format!("site {site_id:?}")))?;
        missing_if_none(n, || format!("list {list_id}"))
    }

    fn lists(&self) -> Result<Vec<DestinationList>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached("SELECT id, name, created_at, site_id FROM alarm_lists ORDER BY id")?;
        let mut lists = stmt
            .query_map([], |r| {
                Ok(DestinationList {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    members: Vec::new(),
                    created_at: r.get(2)?,
                    site_id: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = conn.prepare_cached(
            "SELECT list_id, destination_id FROM alarm_list_members ORDER BY list_id, destination_id",
        )?;
        let pairs = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (l, d) in pairs {
            if let Some(list) = lists.iter_mut().find(|x| x.id == l) {
                list.members.push(d);
            }
        }
        Ok(lists)
    }

    fn delete_list(&self, id: i64) -> Result<()> {
        let n = self
            .writer()?
            .execute("DELETE FROM alarm_lists WHERE id = ?1", params![id])?;
        missing_if_none(n, || format!("list {id}"))
    }

    fn list_destinations(&self, list_id: i64) -> Result<Vec<Destination>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT d.id, d.name, d.kind, d.target, d.secret, d.created_at \
             FROM alarm_destinations d JOIN alarm_list_members m ON m.destination_id = d.id \
             WHERE m.list_id = ?1 ORDER BY d.id",
        )?;
        let raw = stmt
            .query_map(params![list_id], raw_dest)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter()
            .map(|d| dest(d)?.opened(Some(&self.vault)))
            .collect()
    }

    fn log_notification(&self, n: &NewNotification, now: i64) -> Result<i64> {
        let conn = self.writer()?;
        conn.execute(
            "INSERT INTO alarm_notifications (alarm_id, device_id, list_id, destination_id, \
             destination, event, subject, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                n.alarm_id,
                n.device_id,
                n.list_id,
                n.destination_id,
                n.destination,
                n.event,
                n.subject,
                now
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn write_delivery(&self, id: i64, record: &DeliveryRecord<'_>) -> Result<()> {
        self.writer()?.execute(
            "UPDATE alarm_notifications SET state = ?2, attempts = ?3, error = ?4, done_at = ?5 \
             WHERE id = ?1",
            params![
                id,
                record.state.as_str(),
                record.attempts,
                record.error,
                record.done_at
            ],
        )?;
        Ok(())
    }

    fn query_notifications(&self, q: &NotificationQuery<'_>) -> Result<Vec<NotificationRecord>> {
        let mut sql = format!("SELECT {NOTE_COLS} FROM alarm_notifications WHERE 1 = 1");
        let mut args: Vec<i64> = Vec::new();
        if let Some(d) = q.devices {
            sql.push_str(&format!(" AND device_id IN ({})", placeholders(d.len())));
            args.extend(d.iter().map(|&x| i64::from(x)));
        }
        if let Some(a) = q.alarm_id {
            sql.push_str(" AND alarm_id = ?");
            args.push(a);
        }
        sql.push_str(" ORDER BY id DESC LIMIT CAST(? AS INTEGER)");
        args.push(q.limit);
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&sql)?;
        let raw = stmt
            .query_map(rusqlite::params_from_iter(args), note)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(finish_note).collect()
    }
}
