//! The SQLite store: file blobs: uploads, who may read them, expiry.

#[allow(unused_imports)]
use super::*;

impl Blobs for SqliteStore {
    fn begin_blob(
        &self,
        id: &[u8],
        owner: &DeviceRef,
        size: u64,
        max_size: u64,
        quota: u64,
        now: i64,
    ) -> StoreResult<BlobRecord> {
        self.with_tx(|tx| {
            if let Some(b) = blob_row(tx, id)? {
                return crate::store::blob_rules::resume(b, owner, size);
            }
            crate::store::blob_rules::size_allowed(size, max_size)?;
            let used: u64 = tx
                .row("SELECT coalesce(sum(size), 0) FROM blobs WHERE owner_handle=?", [&owner.handle], |r| r.get(0))
                .map_err(backend)?;
            crate::store::blob_rules::quota_allows(used, size, quota)?;
            tx.exec(
                "INSERT INTO blobs(id, owner_handle, owner_device, size, created_at) VALUES(?,?,?,?,?)",
                params![id, owner.handle, owner.device_id, size, now],
            )
            .map_err(backend)?;
            Ok(BlobRecord { id: id.to_vec(), owner: owner.clone(), size, complete: false, created_at: now })
        })
    }

    fn blob(&self, id: &[u8]) -> StoreResult<Option<BlobRecord>> {
        self.with_tx(|tx| blob_row(tx, id))
    }

    fn complete_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.exec("UPDATE blobs SET complete=1 WHERE id=?", [id]).map_err(backend)?;
            Ok(())
        })
    }

    fn share_blob(&self, id: &[u8], owner: &DeviceRef, group_id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Someone else's blob looks like no blob: no probing for ids.
            blob_row(tx, id)?.filter(|b| &b.owner == owner).ok_or(StoreError::UnknownBlob)?;
            member_row(tx, group_id, owner)?.ok_or(StoreError::NotMember)?;
            tx.exec("INSERT OR IGNORE INTO blob_groups(blob_id, group_id) VALUES(?,?)", params![id, group_id])
                .map_err(backend)?;
            for m in members_of(tx, group_id)? {
                if &m != owner {
                    tx.exec(
                        "INSERT OR IGNORE INTO blob_readers(blob_id, handle, device_id) VALUES(?,?,?)",
                        params![id, m.handle, m.device_id],
                    )
                    .map_err(backend)?;
                }
            }
            Ok(())
        })
    }

    fn may_read_blob(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool> {
        self.with_tx(|tx| {
            let Some(b) = blob_row(tx, id)? else { return Ok(false) };
            if &b.owner == device {
                return Ok(true);
            }
            tx.row(
                "SELECT count(*) FROM blob_readers WHERE blob_id=? AND handle=? AND device_id=?",
                params![id, device.handle, device.device_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(backend)
        })
    }

    fn blob_fetched(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool> {
        self.with_tx(|tx| {
            tx.exec(
                "UPDATE blob_readers SET fetched=1 WHERE blob_id=? AND handle=? AND device_id=?",
                params![id, device.handle, device.device_id],
            )
            .map_err(backend)?;
            let (readers, waiting): (i64, i64) = tx
                .row("SELECT count(*), coalesce(sum(fetched = 0), 0) FROM blob_readers WHERE blob_id=?", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(backend)?;
            if readers > 0 && waiting == 0 {
                delete_blob(tx, id)?;
                return Ok(true);
            }
            Ok(false)
        })
    }

    fn incomplete_blobs(&self) -> StoreResult<Vec<BlobRecord>> {
        self.with_tx(|tx| {
            let ids: Vec<Vec<u8>> = {
                let mut stmt = tx.prepare_cached("SELECT id FROM blobs WHERE complete=0").map_err(backend)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            ids.iter().filter_map(|id| blob_row(tx, id).transpose()).collect()
        })
    }

    fn remove_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| delete_blob(tx, id))
    }

    fn expire_group_blobs(&self, now: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.with_tx(|tx| {
            // Shared with at least one group, and with no group that keeps
            // it longer: one without a timer, or whose timer has not run
            // out for it yet.
            let ids = blob_ids(
                tx,
                "SELECT b.id FROM blobs b
                 WHERE EXISTS(SELECT 1 FROM blob_groups g WHERE g.blob_id = b.id)
                 AND NOT EXISTS(
                     SELECT 1 FROM blob_groups g LEFT JOIN group_retention r ON r.group_id = g.group_id
                     WHERE g.blob_id = b.id AND (r.retention_ms IS NULL OR b.created_at >= ? - r.retention_ms))",
                now,
            )?;
            for id in &ids {
                delete_blob(tx, id)?;
            }
            Ok(ids)
        })
    }

    fn expire_blobs(&self, cutoff: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.with_tx(|tx| {
            let ids = blob_ids(tx, "SELECT id FROM blobs WHERE created_at < ?", cutoff)?;
            for id in &ids {
                delete_blob(tx, id)?;
            }
            Ok(ids)
        })
    }
}

/// The ids a query with one time parameter selects.
fn blob_ids(tx: &rusqlite::Transaction<'_>, sql: &str, time: i64) -> StoreResult<Vec<Vec<u8>>> {
    let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
    let rows = stmt.query_map([time], |r| r.get(0)).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// A blob's record, its readers and the groups it was shared with.
fn delete_blob(tx: &rusqlite::Transaction<'_>, id: &[u8]) -> StoreResult<()> {
    tx.exec("DELETE FROM blob_readers WHERE blob_id=?", [id]).map_err(backend)?;
    tx.exec("DELETE FROM blob_groups WHERE blob_id=?", [id]).map_err(backend)?;
    tx.exec("DELETE FROM blobs WHERE id=?", [id]).map_err(backend)?;
    Ok(())
}
