//! Alarm rules, alarms, destinations, lists and the notification log in PostgreSQL.
//!
//! Across servers: a rule's count limit is checked under a row lock on its device; an alarm is
//! raised with `ON CONFLICT DO NOTHING` on the open-alarm-per-rule index, so two servers that
//! evaluate the same rule record one alarm.

use super::{fk, u32_col, unique, Postgres};
use crate::alarms::rules::{Rule, RuleSpec, MAX_RULES_PER_DEVICE};
use crate::storage::alarms::*;
use crate::storage::{missing_if_none, sql_limit, Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

fn rule(r: &Row) -> Result<Rule> {
    Ok(Rule {
        id: r.get(0),
        device_id: u32_col(r.get(1), "device id")?,
        spec: decode_spec(r.get(2))?,
        shelved_until: r.get(3),
        created_at: r.get(4),
    })
}

fn alarm(r: &Row) -> Result<AlarmRecord> {
    Ok(AlarmRecord {
        id: r.get(0),
        rule_id: r.get(1),
        device_id: u32_col(r.get(2), "device id")?,
        rule_name: r.get(3),
        severity: decode_severity(r.get(4))?,
        message: r.get(5),
        raised_at: r.get(6),
        acked_at: r.get(7),
        acked_by: r.get(8),
        cleared_at: r.get(9),
        level: u32_col(r.get(10), "alarm level")?,
    })
}

fn dest(r: &Row) -> Result<Destination> {
    let kind: &str = r.get(2);
    Ok(Destination {
        id: r.get(0),
        name: r.get(1),
        kind: DestinationKind::parse(kind)
            .ok_or_else(|| Error::Corrupt(format!("destination kind {kind:?}")))?,
        target: r.get(3),
        secret: r.get(4),
        created_at: r.get(5),
    })
}

fn note(r: &Row) -> Result<NotificationRecord> {
    let state: &str = r.get(8);
    Ok(NotificationRecord {
        id: r.get(0),
        alarm_id: r.get(1),
        device_id: u32_col(r.get(2), "device id")?,
        list_id: r.get(3),
        destination_id: r.get(4),
        destination: r.get(5),
        event: r.get(6),
        subject: r.get(7),
        state: DeliveryState::parse(state)
            .ok_or_else(|| Error::Corrupt(format!("state {state:?}")))?,
        attempts: u32_col(r.get(9), "attempts")?,
        error: r.get(10),
        created_at: r.get(11),
        done_at: r.get(12),
    })
}

impl AlarmStore for Postgres {
    fn create_rule(&self, device_id: u32, spec: &RuleSpec, now: i64) -> Result<i64> {
        let spec = encode_spec(spec);
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let d = i64::from(device_id);
            // The device's row lock serialises rule creation per device (the count limit).
            if tx
                .query_opt("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE", &[&d])
                .await?
                .is_none()
            {
                return Err(Error::NotFound(device_id));
            }
            let n: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM alarm_rules WHERE device_id = $1",
                    &[&d],
                )
                .await?
                .get(0);
            if n >= MAX_RULES_PER_DEVICE as i64 {
                return Err(Error::Limit(format!(
                    "device {device_id} has {MAX_RULES_PER_DEVICE} alarm rules already"
                )));
            }
            let id: i64 = tx
                .query_one(
                    "INSERT INTO alarm_rules (device_id, spec, created_at) VALUES ($1, $2, $3) \
                     RETURNING id",
                    &[&d, &spec, &now],
                )
                .await?
                .get(0);
            tx.commit().await?;
            Ok(id)
        })
    }

    fn update_rule(&self, id: i64, spec: &RuleSpec) -> Result<()> {
        let spec = encode_spec(spec);
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE alarm_rules SET spec = $2 WHERE id = $1",
                    &[&id, &spec],
                )
                .await?;
            missing_if_none(n, || format!("alarm rule {id}"))
        })
    }

    fn delete_rule(&self, id: i64, now: i64) -> Result<()> {
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let n = tx
                .execute("DELETE FROM alarm_rules WHERE id = $1", &[&id])
                .await?;
            missing_if_none(n, || format!("alarm rule {id}"))?;
            tx.execute(
                "UPDATE alarms SET cleared_at = $2 WHERE rule_id = $1 AND cleared_at IS NULL",
                &[&id, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn rule(&self, id: i64) -> Result<Option<Rule>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {RULE_COLS} FROM alarm_rules WHERE id = $1"),
                    &[&id],
                )
                .await?;
            row.as_ref().map(rule).transpose()
        })
    }

    fn device_rules(&self, device_id: u32) -> Result<Vec<Rule>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {RULE_COLS} FROM alarm_rules WHERE device_id = $1 ORDER BY id"
                    ),
                    &[&i64::from(device_id)],
                )
                .await?;
            rows.iter().map(rule).collect()
        })
    }

    fn all_rules(&self) -> Result<Vec<Rule>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!("SELECT {RULE_COLS} FROM alarm_rules ORDER BY id"),
                    &[],
                )
                .await?;
            rows.iter().map(rule).collect()
        })
    }

    fn shelve_rule(&self, id: i64, until: Option<i64>) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE alarm_rules SET shelved_until = $2 WHERE id = $1",
                    &[&id, &until],
                )
                .await?;
            missing_if_none(n, || format!("alarm rule {id}"))
        })
    }

    fn raise_alarm(&self, a: &NewAlarm) -> Result<(i64, bool)> {
        let a = a.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    "INSERT INTO alarms (rule_id, device_id, rule_name, severity, message, \
                     raised_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (rule_id) WHERE cleared_at IS NULL DO NOTHING RETURNING id",
                    &[
                        &a.rule_id,
                        &i64::from(a.device_id),
                        &a.rule_name,
                        &a.severity.as_str(),
                        &a.message,
                        &a.raised_at,
                    ],
                )
                .await?;
            if let Some(r) = row {
                return Ok((r.get(0), true));
            }
            let r = c
                .query_one(
                    "SELECT id FROM alarms WHERE rule_id = $1 AND cleared_at IS NULL",
                    &[&a.rule_id],
                )
                .await?;
            Ok((r.get(0), false))
        })
    }

    fn clear_alarm(&self, rule_id: i64, at: i64) -> Result<Option<i64>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    "UPDATE alarms SET cleared_at = $2 WHERE rule_id = $1 AND cleared_at IS NULL \
                     RETURNING id",
                    &[&rule_id, &at],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn ack_alarm(&self, id: i64, by: &str, at: i64) -> Result<bool> {
        let by = by.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE alarms SET acked_at = $2, acked_by = $3 \
                     WHERE id = $1 AND acked_at IS NULL",
                    &[&id, &at, &by],
                )
                .await?;
            if n == 1 {
                return Ok(true);
            }
            if c.query_opt("SELECT 1 FROM alarms WHERE id = $1", &[&id])
                .await?
                .is_some()
            {
                Ok(false)
            } else {
                Err(Error::Missing(format!("alarm {id}")))
            }
        })
    }

    fn set_alarm_level(&self, rule_id: i64, level: u32) -> Result<bool> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE alarms SET level = $2 \
                     WHERE rule_id = $1 AND cleared_at IS NULL AND level < $2",
                    &[&rule_id, &i64::from(level)],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn alarm(&self, id: i64) -> Result<Option<AlarmRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {ALARM_COLS} FROM alarms WHERE id = $1"),
                    &[&id],
                )
                .await?;
            row.as_ref().map(alarm).transpose()
        })
    }

    fn alarms(&self, f: &AlarmFilter) -> Result<Vec<AlarmRecord>> {
        let f = f.clone();
        self.run(move |s| async move {
            let devices: Option<Vec<i64>> = f
                .devices
                .as_ref()
                .map(|d| d.iter().map(|&x| i64::from(x)).collect());
            let n = sql_limit(f.limit);
            let mut sql = format!("SELECT {ALARM_COLS} FROM alarms WHERE TRUE");
            let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(d) = &devices {
                args.push(d);
                sql.push_str(&format!(" AND device_id = ANY(${})", args.len()));
            }
            if f.open_only {
                sql.push_str(" AND cleared_at IS NULL");
            }
            args.push(&n);
            sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
            let c = s.conn().await?;
            let rows = c.query(&sql, &args).await?;
            rows.iter().map(alarm).collect()
        })
    }

    fn create_destination(&self, d: &NewDestination, now: i64) -> Result<i64> {
        let d = d.clone();
        let secret =
            crate::storage::sealed::seal_secret(self.vault.as_deref(), d.secret.as_deref())?;
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_one(
                    "INSERT INTO alarm_destinations (name, kind, target, secret, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&d.name, &d.kind.as_str(), &d.target, &secret, &now],
                )
                .await
                .map_err(|e| unique(e, || format!("destination {}", d.name)))?;
            Ok(row.get(0))
        })
    }

    fn destinations(&self) -> Result<Vec<Destination>> {
        let vault = self.vault.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!("SELECT {DEST_COLS} FROM alarm_destinations ORDER BY id"),
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| dest(r)?.opened(vault.as_deref()))
                .collect()
        })
    }

    fn delete_destination(&self, id: i64) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute("DELETE FROM alarm_destinations WHERE id = $1", &[&id])
                .await?;
            missing_if_none(n, || format!("destination {id}"))
        })
    }

    fn create_list(&self, name: &str, now: i64) -> Result<i64> {
        let name = name.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_one(
                    "INSERT INTO alarm_lists (name, created_at) VALUES ($1, $2) RETURNING id",
                    &[&name, &now],
                )
                .await
                .map_err(|e| unique(e, || format!("list {name}")))?;
            Ok(row.get(0))
        })
    }

    fn set_list_members(&self, id: i64, members: &[i64]) -> Result<()> {
        let members = members.to_vec();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            if tx
                .query_opt("SELECT 1 FROM alarm_lists WHERE id = $1 FOR UPDATE", &[&id])
                .await?
                .is_none()
            {
                return Err(Error::Missing(format!("list {id}")));
            }
            tx.execute("DELETE FROM alarm_list_members WHERE list_id = $1", &[&id])
                .await?;
            for m in &members {
                tx.execute(
                    "INSERT INTO alarm_list_members (list_id, destination_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&id, m],
                )
                .await
                .map_err(|e| fk(e, || format!("destination {m}")))?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn set_list_site(&self, list_id: i64, site_id: Option<i64>) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE alarm_lists SET site_id = $2 WHERE id = $1",
                    &[&list_id, &site_id],
                )
                .await
                .map_err(|e| fk(e, || format!("site {site_id:?}")))?;
            missing_if_none(n, || format!("list {list_id}"))
        })
    }

    fn lists(&self) -> Result<Vec<DestinationList>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT l.id, l.name, l.created_at, \
                     COALESCE(array_agg(m.destination_id ORDER BY m.destination_id) \
                       FILTER (WHERE m.destination_id IS NOT NULL), '{}'), l.site_id \
                     FROM alarm_lists l LEFT JOIN alarm_list_members m ON m.list_id = l.id \
                     GROUP BY l.id ORDER BY l.id",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| DestinationList {
                    id: r.get(0),
                    name: r.get(1),
                    created_at: r.get(2),
                    members: r.get(3),
                    site_id: r.get(4),
                })
                .collect())
        })
    }

    fn delete_list(&self, id: i64) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute("DELETE FROM alarm_lists WHERE id = $1", &[&id])
                .await?;
            missing_if_none(n, || format!("list {id}"))
        })
    }

    fn list_destinations(&self, list_id: i64) -> Result<Vec<Destination>> {
        let vault = self.vault.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT d.id, d.name, d.kind, d.target, d.secret, d.created_at \
                     FROM alarm_destinations d JOIN alarm_list_members m \
                       ON m.destination_id = d.id \
                     WHERE m.list_id = $1 ORDER BY d.id",
                    &[&list_id],
                )
                .await?;
            rows.iter()
                .map(|r| dest(r)?.opened(vault.as_deref()))
                .collect()
        })
    }

    fn log_notification(&self, n: &NewNotification, now: i64) -> Result<i64> {
        let n = n.clone();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_one(
                    "INSERT INTO alarm_notifications (alarm_id, device_id, list_id, \
                     destination_id, destination, event, subject, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &n.alarm_id,
                        &i64::from(n.device_id),
                        &n.list_id,
                        &n.destination_id,
                        &n.destination,
                        &n.event,
                        &n.subject,
                        &now,
                    ],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn write_delivery(&self, id: i64, record: &DeliveryRecord<'_>) -> Result<()> {
        let (state, attempts, done_at) = (record.state, record.attempts, record.done_at);
        let error = record.error.map(str::to_owned);
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.execute(
                "UPDATE alarm_notifications SET state = $2, attempts = $3, error = $4, \
                 done_at = $5 WHERE id = $1",
                &[&id, &state.as_str(), &i64::from(attempts), &error, &done_at],
            )
            .await?;
            Ok(())
        })
    }

    fn query_notifications(&self, q: &NotificationQuery<'_>) -> Result<Vec<NotificationRecord>> {
        let devices: Option<Vec<i64>> =
            q.devices.map(|d| d.iter().map(|&x| i64::from(x)).collect());
        let (alarm_id, n) = (q.alarm_id, q.limit);
        self.run(move |s| async move {
            let mut sql = format!("SELECT {NOTE_COLS} FROM alarm_notifications WHERE TRUE");
            let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(d) = &devices {
                args.push(d);
                sql.push_str(&format!(" AND device_id = ANY(${})", args.len()));
            }
            if let Some(a) = &alarm_id {
                args.push(a);
                sql.push_str(&format!(" AND alarm_id = ${}", args.len()));
            }
            args.push(&n);
            sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
            let c = s.conn().await?;
            let rows = c.query(&sql, &args).await?;
            rows.iter().map(note).collect()
        })
    }
}
