//! The PostgreSQL store: groups, their ordered logs, cursors, welcomes and
//! retention.

#[allow(unused_imports)]
use super::*;

impl GroupLog for PgStore {
    fn create_group_with(&self, group_id: &[u8], creator: &DeviceRef, roles: bool, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO groups(group_id, epoch, last_seq, creator_handle, creator_device, created_at)
                     VALUES($1,0,0,$2,$3,$4) ON CONFLICT DO NOTHING",
                    &[&group_id, &creator.handle, &dev_id(creator), &now],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::GroupExists);
            }
            tx.execute(
                "INSERT INTO members(group_id, handle, device_id, joined_seq, cursor) VALUES($1,$2,$3,0,0)",
                &[&group_id, &creator.handle, &dev_id(creator)],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO accepted_groups(group_id, handle) VALUES($1,$2) ON CONFLICT DO NOTHING",
                &[&group_id, &creator.handle],
            )
            .map_err(backend)?;
            // A group with roles (a named group): its creator is admin.
            if roles {
                tx.execute("INSERT INTO group_policy(group_id) VALUES($1) ON CONFLICT DO NOTHING", &[&group_id])
                    .map_err(backend)?;
                tx.execute(
                    "INSERT INTO group_admins(group_id, handle) VALUES($1,$2) ON CONFLICT DO NOTHING",
                    &[&group_id, &creator.handle],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn group(&self, group_id: &[u8]) -> StoreResult<Option<GroupRecord>> {
        self.with_tx(|tx| {
            let Some((epoch, last_seq)) = group_row(tx, group_id, false)? else { return Ok(None) };
            let members_can_add = tx
                .query_opt("SELECT members_can_add FROM group_policy WHERE group_id=$1", &[&group_id])
                .map_err(backend)?
                .map(|r| r.get::<_, bool>(0));
            let admins = tx
                .query("SELECT handle FROM group_admins WHERE group_id=$1 ORDER BY handle", &[&group_id])
                .map_err(backend)?
                .iter()
                .map(|r| r.get(0))
                .collect();
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
        let ticket = self.append_queued(m, now);
        off_runtime(|| ticket.blocking_recv()).map_err(|_| StoreError::Backend("the store writer stopped".into()))?
    }

    fn append_queued(&self, m: &NewMessage<'_>, now: i64) -> AppendTicket {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let _ = self.jobs.send(writer::Job {
            msg: crate::store::queued::OwnedMessage::new(m),
            now,
            reply,
            queued: std::time::Instant::now(),
        });
        answer
    }

    fn fetch(&self, group_id: &[u8], device: &DeviceRef, after_seq: u64, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.with_tx(|tx| {
            if group_row(tx, group_id, false)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            let (joined, _, until) = reader_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            // Added again while a welcome waits: the welcome comes first
            // (see the SQLite store for why).
            let welcome_waits = after_seq > 0
                && after_seq < joined
                && tx
                    .query_opt(
                        "SELECT 1 FROM welcomes WHERE handle=$1 AND device_id=$2 AND group_id=$3 LIMIT 1",
                        &[&device.handle, &dev_id(device), &group_id],
                    )
                    .map_err(backend)?
                    .is_some();
            if welcome_waits {
                return Ok(Vec::new());
            }
            let limit = i64::from(limit.min(sotto_proto::limits::MAX_FETCH));
            let until = until.map(int).unwrap_or(i64::MAX);
            let rows = tx
                .query(
                    "SELECT seq, epoch, sender_handle, sender_device, kind, payload, stored_at FROM messages
                     WHERE group_id=$1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                    &[&group_id, &int(after_seq.max(joined)), &until, &limit],
                )
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| Delivery {
                    group_id: group_id.to_vec(),
                    seq: unsigned(r.get(0)),
                    epoch: unsigned(r.get(1)),
                    sender: DeviceRef { handle: r.get(2), device_id: device_number(r.get(3)) },
                    kind: kind_from(r.get(4)),
                    payload: r.get(5),
                    stored_at: r.get(6),
                })
                .collect())
        })
    }

    fn memberships(&self, device: &DeviceRef) -> StoreResult<Vec<Membership>> {
        self.with_tx(|tx| {
            let rows = tx
                .query(
                    "SELECT group_id, cursor FROM members WHERE handle=$1 AND device_id=$2 ORDER BY group_id",
                    &[&device.handle, &dev_id(device)],
                )
                .map_err(backend)?;
            Ok(rows.iter().map(|r| Membership { group_id: r.get(0), cursor: unsigned(r.get(1)) }).collect())
        })
    }

    fn put_group_info(&self, group_id: &[u8], device: &DeviceRef, epoch: u64, group_info: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            let (current, _) = group_row(tx, group_id, true)?.ok_or(StoreError::UnknownGroup)?;
            member_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            if epoch != current {
                return Err(StoreError::StaleEpoch { current });
            }
            tx.execute(
                "UPDATE groups SET group_info=$1, group_info_epoch=$2 WHERE group_id=$3",
                &[&group_info, &int(epoch), &group_id],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn group_info(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, Vec<u8>)>> {
        self.with_tx(|tx| {
            group_row(tx, group_id, false)?.ok_or(StoreError::UnknownGroup)?;
            member_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            let r = tx
                .query_one("SELECT group_info_epoch, group_info FROM groups WHERE group_id=$1", &[&group_id])
                .map_err(backend)?;
            let (e, g): (Option<i64>, Option<Vec<u8>>) = (r.get(0), r.get(1));
            Ok(e.map(unsigned).zip(g))
        })
    }

    fn groups_created(&self, device: &DeviceRef) -> StoreResult<u64> {
        self.with_tx(|tx| {
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM groups WHERE creator_handle=$1 AND creator_device=$2",
                    &[&device.handle, &dev_id(device)],
                )
                .map_err(backend)?
                .get(0);
            Ok(unsigned(n))
        })
    }

    fn leave(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<()> {
        self.with_tx(|tx| {
            if group_row(tx, group_id, true)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            let n = tx
                .execute(
                    "DELETE FROM members WHERE group_id=$1 AND handle=$2 AND device_id=$3",
                    &[&group_id, &device.handle, &dev_id(device)],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotMember);
            }
            tx.execute(
                "DELETE FROM accepted_groups WHERE group_id=$1 AND handle=$2
                 AND NOT EXISTS (SELECT 1 FROM members WHERE group_id=$1 AND handle=$2)",
                &[&group_id, &device.handle],
            )
            .map_err(backend)?;
            delete_fully_acked(tx, group_id)
        })
    }

    fn co_members(&self, device: &DeviceRef, handles: &[String]) -> StoreResult<Vec<String>> {
        self.with_tx(|tx| {
            let mut out = Vec::new();
            for h in handles {
                if tx.query_opt(CO_MEMBER, &[&device.handle, &dev_id(device), h]).map_err(backend)?.is_some() {
                    out.push(h.clone());
                }
            }
            Ok(out)
        })
    }

    fn set_accepted(&self, group_id: &[u8], device: &DeviceRef, accepted: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            if group_row(tx, group_id, false)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            match reader_row(tx, group_id, device)? {
                Some((_, _, None)) => {}
                _ => return Err(StoreError::NotMember),
            }
            let sql = if accepted {
                "INSERT INTO accepted_groups(group_id, handle) VALUES($1,$2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM accepted_groups WHERE group_id=$1 AND handle=$2"
            };
            tx.execute(sql, &[&group_id, &device.handle]).map_err(backend)?;
            Ok(())
        })
    }

    fn set_role(&self, group_id: &[u8], by: &DeviceRef, handle: &str, admin: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            require_admin(tx, group_id, by)?;
            let member = tx
                .query_opt(
                    "SELECT 1 FROM members WHERE group_id=$1 AND handle=$2 AND until_seq IS NULL LIMIT 1",
                    &[&group_id, &handle],
                )
                .map_err(backend)?
                .is_some();
            if !member {
                return Err(StoreError::Invalid(format!("@{handle} is not in the group")));
            }
            if admin {
                tx.execute(
                    "INSERT INTO group_admins(group_id, handle) VALUES($1,$2) ON CONFLICT DO NOTHING",
                    &[&group_id, &handle],
                )
                .map_err(backend)?;
            } else {
                let others: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM group_admins WHERE group_id=$1 AND handle != $2",
                        &[&group_id, &handle],
                    )
                    .map_err(backend)?
                    .get(0);
                if others == 0 {
                    return Err(StoreError::Invalid("a group needs an admin: make someone else admin first".into()));
                }
                tx.execute("DELETE FROM group_admins WHERE group_id=$1 AND handle=$2", &[&group_id, &handle])
                    .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn set_group_policy(&self, group_id: &[u8], by: &DeviceRef, members_can_add: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            require_admin(tx, group_id, by)?;
            tx.execute("UPDATE group_policy SET members_can_add=$1 WHERE group_id=$2", &[&members_can_add, &group_id])
                .map_err(backend)?;
            Ok(())
        })
    }

    fn set_retention(&self, group_id: &[u8], device: &DeviceRef, retention_ms: Option<i64>) -> StoreResult<()> {
        self.with_tx(|tx| {
            if group_row(tx, group_id, false)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            match reader_row(tx, group_id, device)? {
                Some((_, _, None)) => {}
                _ => return Err(StoreError::NotMember),
            }
            match retention_ms {
                Some(ms) => tx.execute(
                    "INSERT INTO group_retention(group_id, retention_ms) VALUES($1,$2)
                     ON CONFLICT(group_id) DO UPDATE SET retention_ms = excluded.retention_ms",
                    &[&group_id, &ms],
                ),
                None => tx.execute("DELETE FROM group_retention WHERE group_id=$1", &[&group_id]),
            }
            .map_err(backend)?;
            Ok(())
        })
    }

    fn purge_group_retention(&self, now: i64) -> StoreResult<u64> {
        self.with_tx(|tx| {
            let any = tx.query_opt("SELECT 1 FROM group_retention LIMIT 1", &[]).map_err(backend)?.is_some();
            if !any {
                return Ok(0);
            }
            let n = tx
                .execute(
                    "DELETE FROM messages m USING group_retention r
                     WHERE m.group_id = r.group_id AND m.stored_at < $1 - r.retention_ms",
                    &[&now],
                )
                .map_err(backend)?;
            tx.execute("DELETE FROM group_retention WHERE group_id NOT IN (SELECT group_id FROM groups)", &[])
                .map_err(backend)?;
            Ok(n)
        })
    }

    fn ack(&self, group_id: &[u8], device: &DeviceRef, seq: u64) -> StoreResult<()> {
        self.with_tx(|tx| {
            let (_, last_seq) = group_row(tx, group_id, false)?.ok_or(StoreError::UnknownGroup)?;
            let (_, cursor, until) = reader_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            if let Some(until) = until {
                if seq >= until {
                    // A removed device has read its removal: it is gone.
                    tx.execute(
                        "DELETE FROM members WHERE group_id=$1 AND handle=$2 AND device_id=$3",
                        &[&group_id, &device.handle, &dev_id(device)],
                    )
                    .map_err(backend)?;
                    return delete_fully_acked(tx, group_id);
                }
            }
            // Cursors only move forward, and never past the end of the log.
            let new = seq.min(last_seq);
            if new > cursor {
                tx.execute(
                    "UPDATE members SET cursor=$1 WHERE group_id=$2 AND handle=$3 AND device_id=$4 AND cursor < $1",
                    &[&int(new), &group_id, &device.handle, &dev_id(device)],
                )
                .map_err(backend)?;
                delete_fully_acked(tx, group_id)?;
            }
            Ok(())
        })
    }

    fn welcomes(&self, device: &DeviceRef) -> StoreResult<Vec<StoredWelcome>> {
        self.with_tx(|tx| {
            let rows = tx
                .query(
                    "SELECT id, group_id, sender_handle, sender_device, welcome FROM welcomes
                     WHERE handle=$1 AND device_id=$2 ORDER BY id",
                    &[&device.handle, &dev_id(device)],
                )
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| StoredWelcome {
                    id: unsigned(r.get(0)),
                    group_id: r.get(1),
                    sender: DeviceRef { handle: r.get(2), device_id: device_number(r.get(3)) },
                    welcome: r.get(4),
                })
                .collect())
        })
    }

    fn ack_welcome(&self, device: &DeviceRef, welcome_id: u64) -> StoreResult<Option<Vec<u8>>> {
        self.with_tx(|tx| {
            let group = tx
                .query_opt(
                    "DELETE FROM welcomes WHERE id=$1 AND handle=$2 AND device_id=$3 RETURNING group_id",
                    &[&int(welcome_id), &device.handle, &dev_id(device)],
                )
                .map_err(backend)?;
            Ok(group.map(|r| r.get(0)))
        })
    }

    fn purge_expired(&self, now: i64, retention_ms: i64) -> StoreResult<u64> {
        let cutoff = now.saturating_sub(retention_ms);
        self.with_tx(|tx| {
            let mut n = 0;
            n += tx.execute("DELETE FROM messages WHERE stored_at < $1", &[&cutoff]).map_err(backend)?;
            n += tx.execute("DELETE FROM welcomes WHERE stored_at < $1", &[&cutoff]).map_err(backend)?;
            n += tx.execute("DELETE FROM sent_ids WHERE stored_at < $1", &[&cutoff]).map_err(backend)?;
            n += tx
                .execute(
                    "DELETE FROM invites WHERE (expires_at IS NOT NULL AND expires_at <= $1) OR uses_left <= 0",
                    &[&now],
                )
                .map_err(backend)?;
            Ok(n)
        })
    }
}

/// `by` is a member device of an admin of a group that has roles.
fn require_admin(tx: &mut Tx<'_>, group_id: &[u8], by: &DeviceRef) -> StoreResult<()> {
    if group_row(tx, group_id, true)?.is_none() {
        return Err(StoreError::UnknownGroup);
    }
    match reader_row(tx, group_id, by)? {
        Some((_, _, None)) => {}
        _ => return Err(StoreError::NotMember),
    }
    let roles = tx.query_opt("SELECT 1 FROM group_policy WHERE group_id=$1", &[&group_id]).map_err(backend)?.is_some();
    if !roles {
        return Err(StoreError::Invalid("this group has no roles (it was made by an older version)".into()));
    }
    let admin = tx
        .query_opt("SELECT 1 FROM group_admins WHERE group_id=$1 AND handle=$2", &[&group_id, &by.handle])
        .map_err(backend)?
        .is_some();
    if !admin {
        return Err(StoreError::NotAdmin("only an admin of the group can change roles".into()));
    }
    Ok(())
}

/// Whether two accounts share a group the other has accepted (presence).
const CO_MEMBER: &str = "SELECT 1 FROM members a JOIN members b ON a.group_id = b.group_id
     JOIN accepted_groups c ON c.group_id = b.group_id AND c.handle = b.handle
     WHERE a.handle=$1 AND a.device_id=$2 AND b.handle=$3 AND a.until_seq IS NULL AND b.until_seq IS NULL
     LIMIT 1";
