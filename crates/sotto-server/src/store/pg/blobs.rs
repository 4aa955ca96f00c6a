//! The PostgreSQL store: blob records, who may read them, and when they go
//! (the bytes themselves live elsewhere; see `blob_files.rs`).

#[allow(unused_imports)]
use super::*;

impl Blobs for PgStore {
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
            // The owner's account row serialises quota checks across nodes.
            tx.execute("SELECT 1 FROM accounts WHERE handle=$1 FOR UPDATE", &[&owner.handle]).map_err(backend)?;
            let used: i64 = tx
                .query_one("SELECT coalesce(sum(size), 0)::BIGINT FROM blobs WHERE owner_handle=$1", &[&owner.handle])
                .map_err(backend)?
                .get(0);
            crate::store::blob_rules::quota_allows(unsigned(used), size, quota)?;
            let inserted = tx
                .execute(
                    "INSERT INTO blobs(id, owner_handle, owner_device, size, created_at) VALUES($1,$2,$3,$4,$5)
                     ON CONFLICT DO NOTHING",
                    &[&id, &owner.handle, &dev_id(owner), &int(size), &now],
                )
                .map_err(backend)?;
            if inserted == 0 {
                // Begun on another node a moment ago.
                return Err(StoreError::Invalid("this upload is being begun elsewhere; try again".into()));
            }
            Ok(BlobRecord { id: id.to_vec(), owner: owner.clone(), size, complete: false, created_at: now })
        })
    }

    fn blob(&self, id: &[u8]) -> StoreResult<Option<BlobRecord>> {
        self.with_tx(|tx| blob_row(tx, id))
    }

    fn complete_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.execute("UPDATE blobs SET complete=true WHERE id=$1", &[&id]).map_err(backend)?;
            Ok(())
        })
    }

    fn share_blob(&self, id: &[u8], owner: &DeviceRef, group_id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            blob_row(tx, id)?.filter(|b| &b.owner == owner).ok_or(StoreError::UnknownBlob)?;
            member_row(tx, group_id, owner)?.ok_or(StoreError::NotMember)?;
            tx.execute(
                "INSERT INTO blob_groups(blob_id, group_id) VALUES($1,$2) ON CONFLICT DO NOTHING",
                &[&id, &group_id],
            )
            .map_err(backend)?;
            for m in members_of(tx, group_id)? {
                if &m != owner {
                    tx.execute(
                        "INSERT INTO blob_readers(blob_id, handle, device_id) VALUES($1,$2,$3) ON CONFLICT DO NOTHING",
                        &[&id, &m.handle, &dev_id(&m)],
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
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM blob_readers WHERE blob_id=$1 AND handle=$2 AND device_id=$3",
                    &[&id, &device.handle, &dev_id(device)],
                )
                .map_err(backend)?
                .get(0);
            Ok(n > 0)
        })
    }

    fn blob_fetched(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool> {
        self.with_tx(|tx| {
            tx.execute("SELECT 1 FROM blobs WHERE id=$1 FOR UPDATE", &[&id]).map_err(backend)?;
            tx.execute(
                "UPDATE blob_readers SET fetched=true WHERE blob_id=$1 AND handle=$2 AND device_id=$3",
                &[&id, &device.handle, &dev_id(device)],
            )
            .map_err(backend)?;
            let r = tx
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE NOT fetched) FROM blob_readers WHERE blob_id=$1",
                    &[&id],
                )
                .map_err(backend)?;
            let (readers, waiting): (i64, i64) = (r.get(0), r.get(1));
            if readers > 0 && waiting == 0 {
                delete_blob(tx, id)?;
                return Ok(true);
            }
            Ok(false)
        })
    }

    fn incomplete_blobs(&self) -> StoreResult<Vec<BlobRecord>> {
        self.with_tx(|tx| {
            let ids: Vec<Vec<u8>> = tx
                .query("SELECT id FROM blobs WHERE NOT complete", &[])
                .map_err(backend)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut out = Vec::new();
            for id in ids {
                out.extend(blob_row(tx, &id)?);
            }
            Ok(out)
        })
    }

    fn remove_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| delete_blob(tx, id))
    }

    fn expire_group_blobs(&self, now: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.with_tx(|tx| {
            let ids = blob_ids(
                tx,
                "SELECT b.id FROM blobs b
                 WHERE EXISTS(SELECT 1 FROM blob_groups g WHERE g.blob_id = b.id)
                 AND NOT EXISTS(
                     SELECT 1 FROM blob_groups g LEFT JOIN group_retention r ON r.group_id = g.group_id
                     WHERE g.blob_id = b.id AND (r.retention_ms IS NULL OR b.created_at >= $1 - r.retention_ms))",
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
            let ids = blob_ids(tx, "SELECT id FROM blobs WHERE created_at < $1", cutoff)?;
            for id in &ids {
                delete_blob(tx, id)?;
            }
            Ok(ids)
        })
    }
}

fn blob_ids(tx: &mut Tx<'_>, sql: &str, time: i64) -> StoreResult<Vec<Vec<u8>>> {
    Ok(tx.query(sql, &[&time]).map_err(backend)?.iter().map(|r| r.get(0)).collect())
}

fn delete_blob(tx: &mut Tx<'_>, id: &[u8]) -> StoreResult<()> {
    tx.execute("DELETE FROM blob_readers WHERE blob_id=$1", &[&id]).map_err(backend)?;
    tx.execute("DELETE FROM blob_groups WHERE blob_id=$1", &[&id]).map_err(backend)?;
    tx.execute("DELETE FROM blobs WHERE id=$1", &[&id]).map_err(backend)?;
    Ok(())
}
