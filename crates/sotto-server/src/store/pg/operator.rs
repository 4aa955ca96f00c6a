//! The PostgreSQL store: what the operator lists and counts, and notices.

#[allow(unused_imports)]
use super::*;

impl OperatorViews for PgStore {
    fn list_invites(&self) -> StoreResult<Vec<InviteRecord>> {
        self.with_tx(|tx| {
            let rows = tx
                .query("SELECT id, uses_left, expires_at, created_at FROM invites WHERE uses_left > 0 ORDER BY id", &[])
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| InviteRecord {
                    id: r.get(0),
                    uses_left: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                    expires_at: r.get(2),
                    created_at: r.get(3),
                })
                .collect())
        })
    }

    fn revoke_invite(&self, id_or_code: &str) -> StoreResult<bool> {
        self.with_tx(|tx| {
            let n = match id_or_code.parse::<i64>() {
                Ok(id) => tx.execute("DELETE FROM invites WHERE id=$1", &[&id]),
                Err(_) => tx.execute("DELETE FROM invites WHERE code_hash=$1", &[&invite_hash(id_or_code)]),
            }
            .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn list_accounts(&self) -> StoreResult<Vec<AccountSummary>> {
        self.with_tx(|tx| {
            let rows = tx
                .query(
                    "SELECT a.handle, (SELECT count(*) FROM devices d WHERE d.handle = a.handle),
                            (SELECT count(DISTINCT group_id) FROM members m WHERE m.handle = a.handle),
                            a.banned, a.created_at
                     FROM accounts a ORDER BY a.handle",
                    &[],
                )
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| AccountSummary {
                    handle: r.get(0),
                    devices: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                    groups: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                    banned: r.get(3),
                    created_at: r.get(4),
                })
                .collect())
        })
    }

    fn stage_timings(&self) -> Option<Vec<crate::store::stage_timings::HistogramSnapshot>> {
        Some(self.timings.snapshot())
    }

    fn stats(&self) -> StoreResult<StoreStats> {
        self.with_tx(|tx| {
            let r = tx
                .query_one(
                    "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM groups),
                            (SELECT count(*) FROM messages), (SELECT count(*) FROM welcomes),
                            (SELECT count(*) FROM blobs), (SELECT coalesce(sum(size), 0)::BIGINT FROM blobs)",
                    &[],
                )
                .map_err(backend)?;
            let n = |i: usize| unsigned(r.get::<_, i64>(i));
            Ok(StoreStats {
                accounts: n(0),
                groups: n(1),
                messages: n(2),
                welcomes: n(3),
                blobs: n(4),
                blob_bytes: n(5),
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
            let id: i64 = tx
                .query_one("INSERT INTO notices(text, created_at) VALUES($1,$2) RETURNING id", &[&text, &now])
                .map_err(backend)?
                .get(0);
            tx.execute("DELETE FROM notices WHERE id <= $1", &[&(id - KEPT_NOTICES as i64)]).map_err(backend)?;
            Ok(unsigned(id))
        })
    }

    fn notices_after(&self, after: u64, limit: usize) -> StoreResult<Vec<sotto_proto::Notice>> {
        self.with_tx(|tx| {
            let rows = tx
                .query(
                    "SELECT id, text, created_at FROM notices WHERE id > $1 ORDER BY id DESC LIMIT $2",
                    &[&int(after), &(limit.min(i64::MAX as usize) as i64)],
                )
                .map_err(backend)?;
            let mut list: Vec<sotto_proto::Notice> = rows
                .iter()
                .map(|r| sotto_proto::Notice { id: unsigned(r.get(0)), text: r.get(1), sent_at: r.get(2) })
                .collect();
            list.reverse();
            Ok(list)
        })
    }
}
