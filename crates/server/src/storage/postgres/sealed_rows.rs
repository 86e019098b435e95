//! Sealing the configuration items and destination secrets already stored (see
//! [`crate::storage::sealed`]), inside the transaction that wraps or re-seals device keys.

use crate::storage::sealed::{self, StoredItems};
use crate::storage::Result;
use crate::vault::Vault;
use tokio_postgres::Transaction;

/// Seals the rows still in the clear under `to`; with `all`, also re-seals the sealed ones
/// (opened under `from`: master key rotation). Rows are locked. Returns how many changed.
pub(super) async fn reseal(
    tx: &Transaction<'_>,
    from: &Vault,
    to: &Vault,
    all: bool,
) -> Result<usize> {
    let configs = tx
        .query(
            "SELECT seq, device_id, version, items, sealed FROM configs \
             WHERE NOT sealed OR $1 FOR UPDATE",
            &[&all],
        )
        .await?
        .iter()
        .map(|r| StoredItems {
            seq: r.get(0),
            device_id: r.get(1),
            version: r.get(2),
            items: r.get(3),
            sealed: r.get(4),
        })
        .collect();
    let configs = sealed::resealed_items(from, to, all, configs)?;
    let update = tx
        .prepare("UPDATE configs SET items = $2, sealed = TRUE WHERE seq = $1")
        .await?;
    for (seq, items) in &configs {
        tx.execute(&update, &[seq, items]).await?;
    }
    let secrets = tx
        .query(
            "SELECT id, secret FROM alarm_destinations WHERE secret IS NOT NULL FOR UPDATE",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let secrets = sealed::resealed_secrets(from, to, all, secrets)?;
    let update = tx
        .prepare("UPDATE alarm_destinations SET secret = $2 WHERE id = $1")
        .await?;
    for (id, secret) in &secrets {
        tx.execute(&update, &[id, secret]).await?;
    }
    Ok(configs.len() + secrets.len())
}

#[cfg(test)]
mod tests {
    use super::super::{testing, Postgres};
    use crate::storage::sealed::fixture::{config, contains, store_secrets, GSM, HOOK};
    use crate::storage::{AlarmStore, ConfigStore};

    /// Rows as the version before stored them (items and secret in the clear, `sealed` false
    /// as migration 7 leaves them) are sealed when a server connects with the master key, and
    /// read back the same; new rows are sealed at once.
    #[test]
    fn clear_rows_are_sealed_at_connect() {
        let Some(db) = testing::database() else {
            return;
        };
        store_secrets(&*db);
        let raw = |db: &Postgres| {
            db.run(|s| async move {
                let c = s.conn().await?;
                let r = c
                    .query_one(
                        "SELECT c.items, c.sealed, d.secret FROM configs c, alarm_destinations d",
                        &[],
                    )
                    .await?;
                Ok((
                    r.get::<_, Vec<u8>>(0),
                    r.get::<_, bool>(1),
                    r.get::<_, String>(2),
                ))
            })
            .unwrap()
        };
        let (items, sealed, secret) = raw(&db);
        assert!(sealed && !contains(&items, GSM) && !secret.contains(HOOK));
        // Back to the clear, as an older version wrote them.
        let c = config();
        let mut clear = vec![0u8; c.items_len()];
        c.emit_items(&mut clear).unwrap();
        db.run(move |s| async move {
            let c = s.conn().await?;
            c.execute("UPDATE configs SET items = $1, sealed = FALSE", &[&clear])
                .await?;
            c.execute("UPDATE alarm_destinations SET secret = $1", &[&HOOK])
                .await?;
            Ok(())
        })
        .unwrap();
        let again = Postgres::connect_sealed(&db.url, &db.master_key).unwrap();
        let (items, sealed, secret) = raw(&again);
        assert!(sealed && !contains(&items, GSM) && !secret.contains(HOOK));
        assert_eq!(
            again.latest_config(1).unwrap().unwrap().config.gsm.password,
            GSM
        );
        assert_eq!(
            again.destinations().unwrap()[0].secret.as_deref(),
            Some(HOOK)
        );
    }
}
