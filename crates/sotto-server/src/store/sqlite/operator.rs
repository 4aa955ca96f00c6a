//! The SQLite store: what the operator lists and counts.

#[allow(unused_imports)]
use super::*;

impl OperatorViews for SqliteStore {
    fn stage_timings(&self) -> Option<Vec<crate::store::stage_timings::HistogramSnapshot>> {
        Some(self.timings.snapshot())
    }

    fn list_invites(&self) -> StoreResult<Vec<InviteRecord>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT rowid, uses_left, expires_at, created_at FROM invites WHERE uses_left > 0 ORDER BY rowid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(InviteRecord {
                        id: r.get(0)?,
                        uses_left: r.get(1)?,
                        expires_at: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn revoke_invite(&self, id_or_code: &str) -> StoreResult<bool> {
        self.with_tx(|tx| {
            let n = match id_or_code.parse::<i64>() {
                Ok(id) => tx.exec("DELETE FROM invites WHERE rowid=?", [id]),
                Err(_) => tx.exec("DELETE FROM invites WHERE code_hash=?", [invite_hash(id_or_code)]),
            }
            .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn list_accounts(&self) -> StoreResult<Vec<AccountSummary>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT a.handle, (SELECT count(*) FROM devices d WHERE d.handle = a.handle),
                            (SELECT count(DISTINCT group_id) FROM members m WHERE m.handle = a.handle),
                            a.banned, a.created_at
                     FROM accounts a ORDER BY a.handle",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AccountSummary {
                        handle: r.get(0)?,
                        devices: r.get(1)?,
                        groups: r.get(2)?,
                        banned: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn stats(&self) -> StoreResult<StoreStats> {
        // What every reader has read is deleted by the writer's next fold
        // (`pending.rs`): fold now, so the count is what still waits.
        self.fold()?;
        self.with_tx(|tx| {
            let count = |table: &str| -> StoreResult<u64> {
                tx.row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(backend)
            };
            Ok(StoreStats {
                accounts: count("accounts")?,
                groups: count("groups")?,
                // A run (`runs.rs`) is one row for several messages; one
                // that everyone read part of counts whole until its last
                // entry is read.
                messages: tx
                    .row("SELECT coalesce(sum(coalesce(last_seq, seq) - seq + 1), 0) FROM messages", [], |r| r.get(0))
                    .map_err(backend)?,
                welcomes: count("welcomes")?,
                blobs: count("blobs")?,
                blob_bytes: tx.row("SELECT coalesce(sum(size), 0) FROM blobs", [], |r| r.get(0)).map_err(backend)?,
            })
        })
    }

    fn add_notice(&self, text: &str, now: i64) -> StoreResult<u64> {
        if text.trim().is_empty() || text.len() > sotto_proto::limits::MAX_NOTICE_BYTES {
            return Err(StoreError::Invalid(format!(
                "a notice has 1 to {} bytes of text",
                sotto_proto::limits::MAX_NOTICE_BYTES
            )));
        }
        self.with_tx(|tx| {
            tx.exec("INSERT INTO notices(text, created_at) VALUES(?,?)", rusqlite::params![text, now])
                .map_err(backend)?;
            let id = tx.last_insert_rowid();
            tx.exec("DELETE FROM notices WHERE id <= ?", [id - KEPT_NOTICES as i64]).map_err(backend)?;
            Ok(id as u64)
        })
    }

    fn notices_after(&self, after: u64, limit: usize) -> StoreResult<Vec<sotto_proto::Notice>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT id, text, created_at FROM notices WHERE id > ? ORDER BY id DESC LIMIT ?")
                .map_err(backend)?;
            let rows = stmt
                .query_map(rusqlite::params![after as i64, limit as i64], |r| {
                    Ok(sotto_proto::Notice { id: r.get::<_, i64>(0)? as u64, text: r.get(1)?, sent_at: r.get(2)? })
                })
                .map_err(backend)?;
            let mut list: Vec<sotto_proto::Notice> = rows.collect::<Result<_, _>>().map_err(backend)?;
            list.reverse();
            Ok(list)
        })
    }
}
