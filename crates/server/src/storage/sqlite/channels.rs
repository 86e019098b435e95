//! Templates and device channel registries in SQLite ([`crate::storage::channels`]).

use super::sites::fk;
use super::users::unique;
use super::Sqlite;
use crate::storage::channels::KeepEntry;
use crate::storage::channels::{
    check_not_builtin, clear_entry_channels_sql, entry_channels_sql, entry_from_rows,
    entry_head_sql, entry_sql, group_templates, insert_entry_channel_sql,
    insert_template_channel_sql, template_devices_sql, template_sql, templates_sql,
    upsert_entry_sql, validate, validate_template, ChannelInfo, ChannelRow, ChannelSet,
    ChannelStore, DeviceChannels, EntryRow, NewTemplate, TemplateRecord, TemplateRow,
};
use crate::storage::{u32_col, Error, Result};
use rusqlite::{params, OptionalExtension, Row, Transaction};

/// The channel columns starting at `at` (all NULL for a template or entry without channels).
fn channel_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<ChannelRow>> {
    let index: Option<i64> = r.get(at)?;
    index
        .map(|i| {
            Ok((
                i,
                r.get(at + 1)?,
                r.get(at + 2)?,
                r.get(at + 3)?,
                r.get(at + 4)?,
            ))
        })
        .transpose()
}

fn template_row(r: &Row<'_>) -> rusqlite::Result<TemplateRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        channel_row(r, 8)?,
    ))
}

fn query_templates(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<TemplateRecord>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(args, template_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    group_templates(rows)
}

fn insert_template_channels(tx: &Transaction<'_>, id: i64, channels: &[ChannelInfo]) -> Result<()> {
    let mut stmt = tx.prepare_cached(&insert_template_channel_sql("?"))?;
    for c in channels {
        stmt.execute(params![
            id,
            c.index,
            c.name,
            c.unit,
            c.kind.as_str(),
            c.decimals
        ])?;
    }
    Ok(())
}

/// A unique name taken is `Duplicate`, an unknown site `Missing`.
fn write_error(e: rusqlite::Error, name: &str, site: Option<i64>) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            fk(e, || format!("site {}", site.unwrap_or(0)))
        }
        e => unique(e, format!("template {name}")),
    }
}

/// `builtin` of template `id`, `None` if there is none.
fn builtin_flag(tx: &Transaction<'_>, id: i64) -> Result<Option<bool>> {
    Ok(tx
        .query_row(
            "SELECT builtin FROM channel_templates WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?)
}

impl ChannelStore for Sqlite {
    fn templates(&self) -> Result<Vec<TemplateRecord>> {
        query_templates(&*self.reader()?, &templates_sql(), &[])
    }

    fn template(&self, id: i64) -> Result<Option<TemplateRecord>> {
        Ok(
            query_templates(&*self.reader()?, &template_sql("?"), &[&id])?
                .into_iter()
                .next(),
        )
    }

    fn create_template(&self, t: &NewTemplate, now: i64) -> Result<i64> {
        let (name, channels) = validate_template(t)?;
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO channel_templates (name, builtin, site_id, map, roles, created_at,
                                            updated_at)
             VALUES (?1, 0, ?2, ?3, ?4, ?5, ?5)",
            params![name, t.site_id, t.set.map, t.set.roles, now],
        )
        .map_err(|e| write_error(e, &name, t.site_id))?;
        let id = tx.last_insert_rowid();
        insert_template_channels(&tx, id, &channels)?;
        tx.commit()?;
        Ok(id)
    }

    fn update_template(&self, id: i64, t: &NewTemplate, now: i64) -> Result<()> {
        let (name, channels) = validate_template(t)?;
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        check_not_builtin(id, builtin_flag(&tx, id)?)?;
        tx.execute(
            "UPDATE channel_templates SET name = ?2, site_id = ?3, map = ?4, roles = ?5,
                                          updated_at = ?6
             WHERE id = ?1",
            params![id, name, t.site_id, t.set.map, t.set.roles, now],
        )
        .map_err(|e| write_error(e, &name, t.site_id))?;
        tx.execute(
            "DELETE FROM channel_template_channels WHERE template_id = ?1",
            params![id],
        )?;
        insert_template_channels(&tx, id, &channels)?;
        tx.commit()?;
        Ok(())
    }

    fn delete_template(&self, id: i64) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        check_not_builtin(id, builtin_flag(&tx, id)?)?;
        // The foreign keys cascade: the template's channels go, registry entries lose the link.
        tx.execute("DELETE FROM channel_templates WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(())
    }

    fn template_devices(&self, id: i64) -> Result<Vec<u32>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&template_devices_sql("?"))?;
        let raw = stmt
            .query_map(params![id], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(|v| u32_col(v, "device id")).collect()
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
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let known = tx
            .query_row(
                "SELECT 1 FROM devices WHERE id = ?1",
                params![device_id],
                |_| Ok(()),
            )
            .optional()?;
        if known.is_none() {
            return Err(Error::NotFound(device_id));
        }
        tx.execute(
            &upsert_entry_sql("?"),
            params![device_id, version, template_id, set.map, set.roles, now],
        )
        .map_err(|e| fk(e, || format!("template {}", template_id.unwrap_or(0))))?;
        tx.execute(&clear_entry_channels_sql("?"), params![device_id, version])?;
        {
            let mut stmt = tx.prepare_cached(&insert_entry_channel_sql("?"))?;
            for c in &channels {
                stmt.execute(params![
                    device_id,
                    version,
                    c.index,
                    c.name,
                    c.unit,
                    c.kind.as_str(),
                    c.decimals
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn device_channels(
        &self,
        device_id: u32,
        version: Option<u32>,
    ) -> Result<Option<DeviceChannels>> {
        entry_on(&*self.reader()?, device_id, version)
    }

    fn device_channels_of(
        &self,
        asked: &[(u32, Option<u32>)],
    ) -> Result<Vec<Option<DeviceChannels>>> {
        // One connection and one snapshot for the page: each entry is then one cached statement
        // in process (no round trip to batch away), and a save meanwhile is seen by all or none.
        let conn = self.reader()?;
        let tx = conn.unchecked_transaction()?;
        asked
            .iter()
            .map(|&(device, version)| entry_on(&tx, device, version))
            .collect()
    }

    fn device_channels_kept_of(
        &self,
        asked: &[(u32, Option<u32>)],
        keep: &KeepEntry,
    ) -> Result<Vec<Option<DeviceChannels>>> {
        // As device_channels_of, one snapshot; but the head first, so that an entry `keep`
        // rejects (the factory map of nearly every device) costs one indexed row, not its
        // channels joined and parsed.
        let conn = self.reader()?;
        let tx = conn.unchecked_transaction()?;
        asked
            .iter()
            .map(|&(device, version)| kept_entry_on(&tx, device, version, keep))
            .collect()
    }
}

/// The entry [`entry_on`] reads, if `keep` accepts its map and roles; its channels are read only
/// then.
fn kept_entry_on(
    conn: &rusqlite::Connection,
    device_id: u32,
    version: Option<u32>,
    keep: &KeepEntry,
) -> Result<Option<DeviceChannels>> {
    let upto = version.map_or(i64::MAX, i64::from);
    let mut head_stmt = conn.prepare_cached(&entry_head_sql("?"))?;
    let mut heads = head_stmt.query(params![device_id, upto])?;
    let Some(head) = heads.next()? else {
        return Ok(None);
    };
    // Judged on the borrowed blobs: a rejected entry's map is never copied out.
    let kept = {
        let not_bytes =
            |what: &str| Error::Corrupt(format!("device {device_id}: {what} not bytes"));
        let map = head.get_ref(2)?.as_blob().map_err(|_| not_bytes("map"))?;
        let roles = head
            .get_ref(3)?
            .as_blob_or_null()
            .map_err(|_| not_bytes("roles"))?;
        keep(map, roles)
    };
    if !kept {
        return Ok(None);
    }
    let (entry_version, template_id, map, roles, saved_at): (
        i64,
        Option<i64>,
        Vec<u8>,
        Option<Vec<u8>>,
        i64,
    ) = (
        head.get(0)?,
        head.get(1)?,
        head.get(2)?,
        head.get(3)?,
        head.get(4)?,
    );
    let mut channels_stmt = conn.prepare_cached(&entry_channels_sql("?"))?;
    let channels = channels_stmt
        .query_map(params![device_id, entry_version], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<Vec<ChannelRow>>>()?;
    // The rows entry_sql would give, so that one function builds an entry for both reads.
    let rows: Vec<EntryRow> = if channels.is_empty() {
        vec![(entry_version, template_id, map, roles, saved_at, None)]
    } else {
        channels
            .into_iter()
            .map(|c| {
                (
                    entry_version,
                    template_id,
                    map.clone(),
                    roles.clone(),
                    saved_at,
                    Some(c),
                )
            })
            .collect()
    };
    entry_from_rows(device_id, rows)
}

/// The registry entry of `device_id` at `version` on `conn` ([`ChannelStore::device_channels`]).
fn entry_on(
    conn: &rusqlite::Connection,
    device_id: u32,
    version: Option<u32>,
) -> Result<Option<DeviceChannels>> {
    let mut stmt = conn.prepare_cached(&entry_sql("?"))?;
    let upto = version.map_or(i64::MAX, i64::from);
    let rows = stmt
        .query_map(
            params![device_id, upto],
            |r| -> rusqlite::Result<EntryRow> {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    channel_row(r, 5)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    entry_from_rows(device_id, rows)
}
