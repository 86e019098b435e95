//! Templates and device channel registries in PostgreSQL ([`crate::storage::channels`]).

use super::{fk, u32_col, unique, Postgres};
use crate::storage::channels::{
    check_not_builtin, clear_entry_channels_sql, entry_from_rows, entry_sql, group_templates,
    insert_entry_channel_sql, insert_template_channel_sql, template_devices_sql, template_sql,
    templates_sql, upsert_entry_sql, validate, validate_template, ChannelInfo, ChannelRow,
    ChannelSet, ChannelStore, DeviceChannels, EntryRow, NewTemplate, TemplateRecord, TemplateRow,
};
use crate::storage::{Error, Result};
use deadpool_postgres::Transaction;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

/// The channel columns starting at `at` (all NULL for a template or entry without channels).
fn channel_row(r: &Row, at: usize) -> Option<ChannelRow> {
    let index: Option<i64> = r.get(at);
    index.map(|i| {
        (
            i,
            r.get(at + 1),
            r.get(at + 2),
            r.get(at + 3),
            r.get(at + 4),
        )
    })
}

fn template_row(r: &Row) -> TemplateRow {
    (
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
        channel_row(r, 8),
    )
}

/// A unique name taken is `Duplicate`, an unknown site `Missing`.
fn write_error(e: tokio_postgres::Error, name: &str, site: Option<i64>) -> Error {
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        fk(e, || format!("site {}", site.unwrap_or(0)))
    } else {
        unique(e, || format!("template {name}"))
    }
}

async fn insert_template_channels(
    tx: &Transaction<'_>,
    id: i64,
    channels: &[ChannelInfo],
) -> Result<()> {
    let stmt = tx.prepare_cached(&insert_template_channel_sql("$")).await?;
    for c in channels {
        tx.execute(
            &stmt,
            &[
                &id,
                &i64::from(c.index),
                &c.name,
                &i64::from(c.unit),
                &c.kind.as_str(),
                &i64::from(c.decimals),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Locks template `id` for the transaction and returns its `builtin` (`None`: no such
/// template).
async fn lock_template(tx: &Transaction<'_>, id: i64) -> Result<Option<bool>> {
    Ok(tx
        .query_opt(
            "SELECT builtin FROM channel_templates WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .map(|r| r.get(0)))
}

impl ChannelStore for Postgres {
    fn templates(&self) -> Result<Vec<TemplateRecord>> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let rows = c.query(&templates_sql(), &[]).await?;
            group_templates(rows.iter().map(template_row).collect())
        })
    }

    fn template(&self, id: i64) -> Result<Option<TemplateRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c.query(&template_sql("$"), &[&id]).await?;
            Ok(group_templates(rows.iter().map(template_row).collect())?
                .into_iter()
                .next())
        })
    }

    fn create_template(&self, t: &NewTemplate, now: i64) -> Result<i64> {
        let (name, channels) = validate_template(t)?;
        let t = t.clone();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let row = tx
                .query_one(
                    "INSERT INTO channel_templates (name, builtin, site_id, map, roles,
                                                    created_at, updated_at)
                     VALUES ($1, FALSE, $2, $3, $4, $5, $5) RETURNING id",
                    &[&name, &t.site_id, &t.set.map, &t.set.roles, &now],
                )
                .await
                .map_err(|e| write_error(e, &name, t.site_id))?;
            let id: i64 = row.get(0);
            insert_template_channels(&tx, id, &channels).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn update_template(&self, id: i64, t: &NewTemplate, now: i64) -> Result<()> {
        let (name, channels) = validate_template(t)?;
        let t = t.clone();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            check_not_builtin(id, lock_template(&tx, id).await?)?;
            tx.execute(
                "UPDATE channel_templates SET name = $2, site_id = $3, map = $4, roles = $5,
                                              updated_at = $6
                 WHERE id = $1",
                &[&id, &name, &t.site_id, &t.set.map, &t.set.roles, &now],
            )
            .await
            .map_err(|e| write_error(e, &name, t.site_id))?;
            tx.execute(
                "DELETE FROM channel_template_channels WHERE template_id = $1",
                &[&id],
            )
            .await?;
            insert_template_channels(&tx, id, &channels).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn delete_template(&self, id: i64) -> Result<()> {
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            check_not_builtin(id, lock_template(&tx, id).await?)?;
            // The foreign keys cascade: the template's channels go, registry entries lose the
            // link.
            tx.execute("DELETE FROM channel_templates WHERE id = $1", &[&id])
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn template_devices(&self, id: i64) -> Result<Vec<u32>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c.query(&template_devices_sql("$"), &[&id]).await?;
            rows.iter()
                .map(|r| u32_col(r.get(0), "device id"))
                .collect()
        })
    }

    fn save_device_channels(
        &self,
        device_id: u32,
        version: u32,
        template_id: Option<i64>,
        set: &ChannelSet,
        now: i64,
    ) -> Result<()> {
        let channels = validate(set)?;
        let set = set.clone();
        let (device, version) = (i64::from(device_id), i64::from(version));
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            if tx
                .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&device])
                .await?
                .is_none()
            {
                return Err(Error::NotFound(device_id));
            }
            tx.execute(
                &upsert_entry_sql("$"),
                &[&device, &version, &template_id, &set.map, &set.roles, &now],
            )
            .await
            .map_err(|e| fk(e, || format!("template {}", template_id.unwrap_or(0))))?;
            tx.execute(&clear_entry_channels_sql("$"), &[&device, &version])
                .await?;
            let stmt = tx.prepare_cached(&insert_entry_channel_sql("$")).await?;
            for ch in &channels {
                tx.execute(
                    &stmt,
                    &[
                        &device,
                        &version,
                        &i64::from(ch.index),
                        &ch.name,
                        &i64::from(ch.unit),
                        &ch.kind.as_str(),
                        &i64::from(ch.decimals),
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn device_channels(
        &self,
        device_id: u32,
        version: Option<u32>,
    ) -> Result<Option<DeviceChannels>> {
        let upto = version.map_or(i64::MAX, i64::from);
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(&entry_sql("$"), &[&i64::from(device_id), &upto])
                .await?;
            let rows: Vec<EntryRow> = rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        channel_row(r, 5),
                    )
                })
                .collect();
            entry_from_rows(device_id, rows)
        })
    }

    fn device_channels_of(
        &self,
        asked: &[(u32, Option<u32>)],
    ) -> Result<Vec<Option<DeviceChannels>>> {
        let devices: Vec<i64> = asked.iter().map(|&(d, _)| i64::from(d)).collect();
        let upto: Vec<i64> = asked
            .iter()
            .map(|&(_, v)| v.map_or(i64::MAX, i64::from))
            .collect();
        let asked = asked.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c.query(ENTRIES_OF_SQL, &[&devices, &upto]).await?;
            // The rows come grouped by the position asked (column 0), channels in index order.
            let mut by_position: Vec<Vec<EntryRow>> = vec![Vec::new(); asked.len()];
            for r in &rows {
                let at = usize::try_from(r.get::<_, i64>(0) - 1)
                    .ok()
                    .filter(|&at| at < asked.len())
                    .ok_or_else(|| Error::Corrupt("entry of a device not asked".into()))?;
                by_position[at].push((
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    channel_row(r, 6),
                ));
            }
            asked
                .iter()
                .zip(by_position)
                .map(|(&(device, _), rows)| entry_from_rows(device, rows))
                .collect()
        })
    }
}

/// [`ChannelStore::device_channels_of`] in one statement: `entry_sql` for every
/// `(device, version)` pair of the arrays `$1`, `$2`, each row led by the pair's position
/// (from 1), ordered by position and channel index.
const ENTRIES_OF_SQL: &str = "
    SELECT q.n, m.version, m.template_id, m.map, m.roles, m.saved_at,
           c.idx, c.name, c.unit, c.kind, c.decimals
    FROM unnest($1::BIGINT[], $2::BIGINT[]) WITH ORDINALITY AS q(device_id, upto, n)
    JOIN device_channel_maps AS m ON m.device_id = q.device_id
     AND m.version = (SELECT MAX(x.version) FROM device_channel_maps AS x
                      WHERE x.device_id = q.device_id AND x.version <= q.upto)
    LEFT JOIN device_channels AS c ON c.device_id = m.device_id AND c.version = m.version
    ORDER BY q.n, c.idx";
