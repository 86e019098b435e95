//! What the database takes on disk, for `tek bench history --postgres`: the bytes of each table
//! (its partitions, indexes and TOAST included) and of the whole database, after a `VACUUM` has
//! returned the space of deleted rows (sealing moves closed days out of the `telemetry`
//! partitions with `DELETE`), as autovacuum would in a running server.

use super::Postgres;
use crate::storage::Result;

impl Postgres {
    /// `VACUUM (ANALYZE)` of the whole database: dead rows freed, empty tail pages returned to
    /// the file system, planner statistics fresh.
    pub fn vacuum_analyze(&self) -> Result<()> {
        self.run(|s| async move {
            let c = s.conn().await?;
            c.batch_execute("VACUUM (ANALYZE)").await?;
            Ok(())
        })
    }

    /// Bytes of each table of the schema, largest first: `pg_total_relation_size` (heap, TOAST
    /// and indexes) with every partition counted under its parent table's name.
    pub fn table_bytes(&self) -> Result<Vec<(String, u64)>> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT COALESCE(p.relname, t.relname)::text AS name, \
                            SUM(pg_total_relation_size(t.oid))::bigint AS bytes \
                     FROM pg_class t \
                     JOIN pg_namespace n ON n.oid = t.relnamespace \
                     LEFT JOIN pg_inherits i ON i.inhrelid = t.oid \
                     LEFT JOIN pg_class p ON p.oid = i.inhparent \
                     WHERE n.nspname = current_schema() AND t.relkind IN ('r', 'm') \
                     GROUP BY 1 ORDER BY 2 DESC",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
                .collect())
        })
    }

    /// Bytes of the whole database (`pg_database_size`: every relation and the catalogs; not
    /// the cluster's write-ahead log).
    pub fn database_bytes(&self) -> Result<u64> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let b: i64 = c
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await?
                .get(0);
            Ok(b.max(0) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::postgres::partitions::{self, DAY};
    use crate::storage::postgres::tests::{dev, prepare, row};
    use crate::storage::Storage;
    use crate::storage::{DeviceStore, TelemetryStore};

    #[test]
    fn sizes_count_partitions_under_their_table() {
        let Some(db) = prepare() else { return };
        let pg = &db.db;
        // The upkeep creates the partitions of yesterday, today and the days ahead.
        pg.maintain(1_800_000_000, 0).unwrap();
        let before = pg.database_bytes().unwrap();
        assert!(before > 0);
        pg.vacuum_analyze().unwrap();
        let tables = pg.table_bytes().unwrap();
        // Partitions roll up to `telemetry`; no `telemetry_YYYYMMDD` is listed by itself.
        assert!(tables.iter().any(|(n, b)| n == "telemetry" && *b > 0));
        assert!(
            tables
                .iter()
                .all(|(n, _)| !(n.starts_with("telemetry_2")
                    && n.len() == "telemetry_20260101".len()))
        );
        assert!(tables.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    /// Sealing empties a closed day's partition; its indexes must not keep the rows' pages.
    #[test]
    fn sealed_days_leave_no_index_pages_behind() {
        let Some(db) = prepare() else { return };
        let pg = &db.db;
        let day = 20_454;
        pg.add_devices(&[dev(1)], 0).unwrap();
        let rows: Vec<_> = (0..1440u32)
            .map(|seq| row(1, seq, day * DAY + i64::from(seq) * 60))
            .collect();
        pg.insert_telemetry_new(&rows).unwrap();
        let partition_bytes = |pg: &crate::storage::postgres::Postgres| -> u64 {
            let table = partitions::name(day);
            pg.run(move |s| async move {
                let c = s.conn().await?;
                let b: i64 = c
                    .query_one(
                        "SELECT pg_total_relation_size($1::text::regclass)",
                        &[&table],
                    )
                    .await?
                    .get(0);
                Ok(b as u64)
            })
            .unwrap()
        };
        let full = partition_bytes(pg);
        assert!(full > 100_000, "{full} bytes for 1440 rows");
        // The day sealed into chunks an hour and more after it ended.
        pg.maintain((day + 2) * DAY, 0).unwrap();
        assert_eq!(pg.telemetry_count(1).unwrap(), 1440);
        let after = partition_bytes(pg);
        assert!(after <= 64 * 1024, "{after} bytes left of {full}");
        // A late record of the sealed day still goes in.
        pg.insert_telemetry_new(&[row(1, 5000, day * DAY + 30)])
            .unwrap();
        assert_eq!(pg.telemetry_count(1).unwrap(), 1441);
    }
}
