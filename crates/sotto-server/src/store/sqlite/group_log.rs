//! The SQLite store: groups, their ordered logs, cursors, welcomes and retention.

#[allow(unused_imports)]
use super::*;

impl GroupLog for SqliteStore {
    fn create_group_with(&self, group_id: &[u8], creator: &DeviceRef, roles: bool, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            if group_row(tx, group_id)?.is_some() {
                return Err(StoreError::GroupExists);
            }
            tx.exec(
                "INSERT INTO groups(group_id, epoch, last_seq, creator_handle, creator_device, created_at)
                 VALUES(?,0,0,?,?,?)",
                params![group_id, creator.handle, creator.device_id, now],
            )
            .map_err(backend)?;
            tx.exec(
                "INSERT INTO members(group_id, handle, device_id, joined_seq, cursor) VALUES(?,?,?,0,0)",
                params![group_id, creator.handle, creator.device_id],
            )
            .map_err(backend)?;
            tx.exec(
                "INSERT OR IGNORE INTO accepted_groups(group_id, handle) VALUES(?,?)",
                params![group_id, creator.handle],
            )
            .map_err(backend)?;
            // A group with roles (a named group): its creator is admin.
            if roles {
                tx.exec("INSERT OR IGNORE INTO group_policy(group_id) VALUES(?)", [group_id]).map_err(backend)?;
                tx.exec(
                    "INSERT OR IGNORE INTO group_admins(group_id, handle) VALUES(?,?)",
                    params![group_id, creator.handle],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn group(&self, group_id: &[u8]) -> StoreResult<Option<GroupRecord>> {
        self.with_tx(|tx| {
            let Some((epoch, last_seq)) = group_row(tx, group_id)? else { return Ok(None) };
            let members_can_add: Option<bool> = tx
                .row("SELECT members_can_add FROM group_policy WHERE group_id=?", [group_id], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            let admins: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached("SELECT handle FROM group_admins WHERE group_id=? ORDER BY handle")
                    .map_err(backend)?;
                let rows = stmt.query_map([group_id], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            Ok(Some(GroupRecord {
                epoch,
                last_seq,
                members: members_of(tx, group_id)?,
                admins,
                members_can_add: members_can_add.unwrap_or(true),
            }))
        })
    }

    fn append(&self, m: &NewMessage<'_>, now: i64) -> StoreResult<Appended> {
        self.append_queued(m, now)
            .blocking_recv()
            .map_err(|_| StoreError::Backend("the store writer stopped".into()))?
    }

    fn append_queued(&self, m: &NewMessage<'_>, now: i64) -> AppendTicket {
        let (reply, answer) = tokio::sync::oneshot::channel();
        // If the writer is gone the reply sender drops and the ticket says so.
        let _ =
            self.jobs.send(Job::Append { msg: OwnedMessage::new(m), now, reply, queued: std::time::Instant::now() });
        answer
    }

    fn fetch(&self, group_id: &[u8], device: &DeviceRef, after_seq: u64, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.with_tx(|tx| {
            if group_row(tx, group_id)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            let (joined, _, until) = reader_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            // A device that had read this group before (after_seq > 0)
            // asks from before its join point while a welcome into the group
            // waits for it: it was added again, perhaps before it read its
            // removal. The log from the new join point is in the welcome's
            // epochs, so the welcome must come first; nothing to read until
            // it is acknowledged.
            let welcome_waits = after_seq > 0
                && after_seq < joined
                && tx
                    .prepare_cached("SELECT 1 FROM welcomes WHERE handle=? AND device_id=? AND group_id=? LIMIT 1")
                    .map_err(backend)?
                    .exists(params![device.handle, device.device_id, group_id])
                    .map_err(backend)?;
            if welcome_waits {
                return Ok(Vec::new());
            }
            // What every reader has read is gone, as far as anyone can
            // tell, even before the writer's next fold deletes it
            // (`pending.rs`).
            let read_by_all: u64 = tx
                .row("SELECT coalesce(min(cursor), 0) FROM members WHERE group_id=?", [group_id], |r| r.get(0))
                .map_err(backend)?;
            let after = after_seq.max(joined).max(read_by_all);
            let limit = limit.min(sotto_proto::limits::MAX_FETCH) as usize;
            let until = until.unwrap_or(u64::MAX);
            // The entries after `after` begin either in a run that holds
            // `after` too (the last row starting at or before it) or at
            // the first row after it.
            let run_holding: Option<(u64, Option<u64>)> = tx
                .prepare_cached(
                    "SELECT seq, last_seq FROM messages WHERE group_id=? AND seq <= ? ORDER BY seq DESC LIMIT 1",
                )
                .map_err(backend)?
                .query_row(params![group_id, after as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(backend)?;
            let from = match run_holding {
                Some((seq, Some(last))) if last > after => seq,
                _ => after + 1,
            };
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, epoch, sender_handle, sender_device, kind, payload, stored_at, last_seq FROM messages
                     WHERE group_id=?1 AND seq >= ?2 AND seq <= ?3
                     ORDER BY seq LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![group_id, from as i64, until.min(i64::MAX as u64) as i64, limit as i64], |r| {
                    Ok((
                        Delivery {
                            group_id: group_id.to_vec(),
                            seq: r.get(0)?,
                            epoch: r.get(1)?,
                            sender: DeviceRef { handle: r.get(2)?, device_id: r.get(3)? },
                            kind: kind_from(r.get(4)?),
                            payload: r.get(5)?,
                            stored_at: r.get(6)?,
                        },
                        r.get::<_, Option<u64>>(7)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (d, last_seq) = row.map_err(backend)?;
                match last_seq {
                    None => out.push(d),
                    Some(_) => {
                        for (seq, e) in super::runs::unpack(d.seq, &d.payload)? {
                            if seq > after && seq <= until {
                                out.push(super::runs::delivery(group_id, seq, e));
                            }
                        }
                    }
                }
                if out.len() >= limit {
                    break;
                }
            }
            out.truncate(limit);
            Ok(out)
        })
    }

    fn memberships(&self, device: &DeviceRef) -> StoreResult<Vec<Membership>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT group_id, cursor FROM members WHERE handle=? AND device_id=? ORDER BY group_id")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![device.handle, device.device_id], |r| {
                    Ok(Membership { group_id: r.get(0)?, cursor: r.get(1)? })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn put_group_info(&self, group_id: &[u8], device: &DeviceRef, epoch: u64, group_info: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            let (current, _) = group_row(tx, group_id)?.ok_or(StoreError::UnknownGroup)?;
            member_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            if epoch != current {
                return Err(StoreError::StaleEpoch { current });
            }
            tx.exec(
                "UPDATE groups SET group_info=?, group_info_epoch=? WHERE group_id=?",
                params![group_info, epoch, group_id],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn group_info(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, Vec<u8>)>> {
        self.with_tx(|tx| {
            group_row(tx, group_id)?.ok_or(StoreError::UnknownGroup)?;
            member_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            let row: (Option<u64>, Option<Vec<u8>>) = tx
                .row("SELECT group_info_epoch, group_info FROM groups WHERE group_id=?", [group_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(backend)?;
            Ok(row.0.zip(row.1))
        })
    }

    fn groups_created(&self, device: &DeviceRef) -> StoreResult<u64> {
        self.with_tx(|tx| {
            tx.row(
                "SELECT count(*) FROM groups WHERE creator_handle=? AND creator_device=?",
                params![device.handle, device.device_id],
                |r| r.get(0),
            )
            .map_err(backend)
        })
    }

    fn leave(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            if group_row(tx, group_id)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            let n = tx
                .exec(
                    "DELETE FROM members WHERE group_id=? AND handle=? AND device_id=?",
                    params![group_id, device.handle, device.device_id],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotMember);
            }
            tx.exec(
                "DELETE FROM accepted_groups WHERE group_id=? AND handle=?
                 AND NOT EXISTS (SELECT 1 FROM members WHERE group_id=? AND handle=?)",
                params![group_id, device.handle, group_id, device.handle],
            )
            .map_err(backend)?;
            delete_fully_acked(tx, group_id)
        })
    }

    fn co_members(&self, device: &DeviceRef, handles: &[String]) -> StoreResult<Vec<String>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT 1 FROM members a JOIN members b ON a.group_id = b.group_id
                     JOIN accepted_groups c ON c.group_id = b.group_id AND c.handle = b.handle
                     WHERE a.handle=? AND a.device_id=? AND b.handle=? AND a.until_seq IS NULL AND b.until_seq IS NULL
                     LIMIT 1",
                )
                .map_err(backend)?;
            let mut out = Vec::new();
            for h in handles {
                let shared = stmt.exists(params![device.handle, device.device_id, h]).map_err(backend)?;
                if shared {
                    out.push(h.clone());
                }
            }
            Ok(out)
        })
    }

    fn set_accepted(&self, group_id: &[u8], device: &DeviceRef, accepted: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            if group_row(tx, group_id)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            match reader_row(tx, group_id, device)? {
                Some((_, _, None)) => {}
                _ => return Err(StoreError::NotMember),
            }
            let sql = if accepted {
                "INSERT OR IGNORE INTO accepted_groups(group_id, handle) VALUES(?,?)"
            } else {
                "DELETE FROM accepted_groups WHERE group_id=? AND handle=?"
            };
            tx.exec(sql, params![group_id, device.handle]).map_err(backend)?;
            Ok(())
        })
    }

    fn set_role(&self, group_id: &[u8], by: &DeviceRef, handle: &str, admin: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            require_admin(tx, group_id, by)?;
            let member: bool = tx
                .row(
                    "SELECT EXISTS(SELECT 1 FROM members WHERE group_id=? AND handle=? AND until_seq IS NULL)",
                    params![group_id, handle],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if !member {
                return Err(StoreError::Invalid(format!("@{handle} is not in the group")));
            }
            if admin {
                tx.exec("INSERT OR IGNORE INTO group_admins(group_id, handle) VALUES(?,?)", params![group_id, handle])
                    .map_err(backend)?;
            } else {
                let admins: i64 = tx
                    .row(
                        "SELECT count(*) FROM group_admins WHERE group_id=? AND handle != ?",
                        params![group_id, handle],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                if admins == 0 {
                    return Err(StoreError::Invalid("a group needs an admin: make someone else admin first".into()));
                }
                tx.exec("DELETE FROM group_admins WHERE group_id=? AND handle=?", params![group_id, handle])
                    .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn set_group_policy(&self, group_id: &[u8], by: &DeviceRef, members_can_add: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            require_admin(tx, group_id, by)?;
            tx.exec("UPDATE group_policy SET members_can_add=? WHERE group_id=?", params![members_can_add, group_id])
                .map_err(backend)?;
            Ok(())
        })
    }

    fn set_retention(&self, group_id: &[u8], device: &DeviceRef, retention_ms: Option<i64>) -> StoreResult<()> {
        self.with_tx(|tx| {
            if group_row(tx, group_id)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            match reader_row(tx, group_id, device)? {
                Some((_, _, None)) => {}
                _ => return Err(StoreError::NotMember),
            }
            match retention_ms {
                Some(ms) => tx
                    .exec(
                        "INSERT OR REPLACE INTO group_retention(group_id, retention_ms) VALUES(?,?)",
                        params![group_id, ms],
                    )
                    .map_err(backend)?,
                None => tx.exec("DELETE FROM group_retention WHERE group_id=?", [group_id]).map_err(backend)?,
            };
            Ok(())
        })
    }

    fn purge_group_retention(&self, now: i64) -> StoreResult<u64> {
        // Runs every few seconds: without any such group, no write
        // transaction is started at all.
        let any: bool = {
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.query_row("SELECT EXISTS(SELECT 1 FROM group_retention)", [], |r| r.get(0)).map_err(backend)?
        };
        if !any {
            return Ok(0);
        }
        self.with_tx(|tx| {
            const EXPIRED: &str = "SELECT m.rowid FROM group_retention r JOIN messages m ON m.group_id = r.group_id
                                   WHERE m.stored_at < ?1 - r.retention_ms";
            // Their ids may still be only in the writer's memory
            // (`pending.rs`): keep them known, as a fold would.
            super::pending::copy_ids_of_rows(tx, EXPIRED, &[&now])?;
            let n = tx.exec(&format!("DELETE FROM messages WHERE rowid IN ({EXPIRED})"), [now]).map_err(backend)?;
            // A group that is gone needs no setting.
            tx.exec("DELETE FROM group_retention WHERE group_id NOT IN (SELECT group_id FROM groups)", [])
                .map_err(backend)?;
            Ok(n as u64)
        })
    }

    fn ack(&self, group_id: &[u8], device: &DeviceRef, seq: u64) -> StoreResult<()> {
        // Through the writer, in the next batch (see `writer.rs`).
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job::Ack {
            group_id: group_id.to_vec(),
            device: device.clone(),
            seq,
            reply,
            queued: std::time::Instant::now(),
        };
        if self.jobs.send(job).is_err() {
            return Err(StoreError::Backend("the store writer stopped".into()));
        }
        answer.blocking_recv().map_err(|_| StoreError::Backend("the store writer stopped".into()))?
    }

    fn welcomes(&self, device: &DeviceRef) -> StoreResult<Vec<StoredWelcome>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, group_id, sender_handle, sender_device, welcome FROM welcomes
                     WHERE handle=? AND device_id=? ORDER BY id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![device.handle, device.device_id], |r| {
                    Ok(StoredWelcome {
                        id: r.get(0)?,
                        group_id: r.get(1)?,
                        sender: DeviceRef { handle: r.get(2)?, device_id: r.get(3)? },
                        welcome: r.get(4)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn ack_welcome(&self, device: &DeviceRef, welcome_id: u64) -> StoreResult<Option<Vec<u8>>> {
        self.with_tx(|tx| {
            let key = params![welcome_id, device.handle, device.device_id];
            let group: Option<Vec<u8>> = tx
                .row("SELECT group_id FROM welcomes WHERE id=? AND handle=? AND device_id=?", key, |r| r.get(0))
                .optional()
                .map_err(backend)?;
            tx.exec("DELETE FROM welcomes WHERE id=? AND handle=? AND device_id=?", key).map_err(backend)?;
            Ok(group)
        })
    }

    fn purge_expired(&self, now: i64, retention_ms: i64) -> StoreResult<u64> {
        let cutoff = now.saturating_sub(retention_ms);
        let purged = self.with_tx(|tx| {
            let mut n = 0;
            n += tx.exec("DELETE FROM messages WHERE stored_at < ?", [cutoff]).map_err(backend)?;
            n += tx.exec("DELETE FROM welcomes WHERE stored_at < ?", [cutoff]).map_err(backend)?;
            n += tx.exec("DELETE FROM sent_ids WHERE stored_at < ?", [cutoff]).map_err(backend)?;
            n += tx
                .exec("DELETE FROM invites WHERE (expires_at IS NOT NULL AND expires_at <= ?) OR uses_left <= 0", [now])
                .map_err(backend)?;
            Ok(n as u64)
        })?;
        // Once committed: the writer's filter of known ids may now drop
        // what came before (`id_filter.rs`).
        self.ids_purged.purged(cutoff);
        Ok(purged)
    }
}

/// `by` is a member device of an admin of a group that has roles.
fn require_admin(tx: &rusqlite::Connection, group_id: &[u8], by: &DeviceRef) -> StoreResult<()> {
    if group_row(tx, group_id)?.is_none() {
        return Err(StoreError::UnknownGroup);
    }
    match reader_row(tx, group_id, by)? {
        Some((_, _, None)) => {}
        _ => return Err(StoreError::NotMember),
    }
    let roles: bool = tx
        .row("SELECT EXISTS(SELECT 1 FROM group_policy WHERE group_id=?)", [group_id], |r| r.get(0))
        .map_err(backend)?;
    if !roles {
        return Err(StoreError::Invalid("this group has no roles (it was made by an older version)".into()));
    }
    let admin: bool = tx
        .row(
            "SELECT EXISTS(SELECT 1 FROM group_admins WHERE group_id=? AND handle=?)",
            params![group_id, by.handle],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if !admin {
        return Err(StoreError::NotAdmin("only an admin of the group can change roles".into()));
    }
    Ok(())
}
