//! Boots with estimated times in SQLite ([`crate::storage::backlog`]).

use super::{u32_col, Sqlite};
use crate::storage::backlog::{list_sql, note_sql, BacklogStore, EstimatedBoot};
use crate::storage::Result;
use rusqlite::params;

impl BacklogStore for Sqlite {
    fn note_estimated_boots(&self, boots: &[(u32, u32)]) -> Result<()> {
        if boots.is_empty() {
            return Ok(());
        }
        // The note counts the boot's stored records, some of which may be in the inbox.
        self.fold_inbox()?;
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&note_sql("?"))?;
            for (device, boot) in boots {
                stmt.execute(params![device, boot])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn estimated_boots(&self, device_id: u32, limit: usize) -> Result<Vec<EstimatedBoot>> {
        boots_on(&*self.telemetry_reader()?, device_id, limit)
    }

    fn estimated_boots_of(
        &self,
        device_ids: &[u32],
        limit: usize,
    ) -> Result<Vec<Vec<EstimatedBoot>>> {
        // One connection (and one look at the inbox) for the page instead of one per device,
        // and one read transaction: a statement outside one takes and drops the file's locks.
        let conn = self.telemetry_reader()?;
        let conn = conn.unchecked_transaction()?;
        device_ids
            .iter()
            .map(|&d| boots_on(&conn, d, limit))
            .collect()
    }
}

/// The statement of [`boots_on`].
fn boots_sql() -> String {
    list_sql("?", "CAST(?2 AS INTEGER)")
}

/// The boots with estimated times of `device_id` on `conn`, newest first, at most `limit`.
fn boots_on(
    conn: &rusqlite::Connection,
    device_id: u32,
    limit: usize,
) -> Result<Vec<EstimatedBoot>> {
    let mut stmt = conn.prepare_cached(&boots_sql())?;
    let mut rows = stmt.query(params![device_id, crate::storage::sql_limit(limit)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(EstimatedBoot {
            boot: u32_col(r.get(0)?, "boot")?,
            records: r.get::<_, i64>(1)?.max(0) as u64,
            first: r.get(2)?,
            last: r.get(3)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// Each device of a page binds the statement anew; were the limit a bare parameter, SQLite
    /// would parse and plan it again at every binding (see the module note of `sqlite`).
    #[test]
    fn a_page_of_devices_reads_their_boots_without_planning_again() {
        let (_dir, db) = super::super::tests::prepare();
        for _ in 0..2 {
            let boots = db.estimated_boots_of(&[1, 2, 3], 10).unwrap();
            assert_eq!(boots, vec![Vec::new(); 3]);
        }
        // The pool lends its one idle connection again: the statement cached there.
        let conn = db.reader().unwrap();
        let stmt = conn.prepare_cached(&boots_sql()).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::Run), 6);
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
    }
}
