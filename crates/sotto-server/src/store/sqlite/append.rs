//! One append inside the writer's open transaction: every check first,
//! then the writes (`writer.rs` runs these in batches).

use super::pending::{insert_id, IdKey, Pending, StoredAt};
use super::runs::{RunEntry, Runs};
use super::writer::{GroupHeads, MembersCache};
use super::*;

/// One append inside an open transaction: membership, idempotency, epoch,
/// membership change, welcomes.
///
/// In a batch (`batch`), an application message joins its group's run,
/// written when the batch ends (`runs.rs`); otherwise it is a row of its own.
pub(super) fn append_in<'m>(
    tx: &Connection,
    m: &NewMessage<'m>,
    now: i64,
    batch: Option<(&mut MembersCache, &mut GroupHeads, &mut Runs<'m>)>,
    mut ids: Ids<'_>,
) -> StoreResult<Appended> {
    let (mut cache, heads, runs) = match batch {
        Some((c, h, r)) => (Some(c), Some(h), Some(r)),
        None => (None, None, None),
    };
    let head = match heads.as_deref().and_then(|h| h.get(m.group_id)) {
        Some(&head) => Some(head),
        None => group_row(tx, m.group_id)?,
    };
    let (epoch, last_seq) = head.ok_or(StoreError::UnknownGroup)?;
    let members = match cache.as_deref_mut() {
        Some(c) => c.get(tx, m.group_id)?,
        None => members_of(tx, m.group_id)?.into(),
    };
    if !members.contains(m.sender) {
        return Err(StoreError::NotMember);
    }
    // Exactly once: an id seen before answers with where it was stored,
    // whatever the epoch is now. Recent ids are in the writer's memory,
    // older ones in `sent_ids` (a read: no page is written for it).
    let key = IdKey::new(m.group_id, m.sender, m.client_id);
    let id = ids.pending().hash(&key);
    let seen = match ids.pending().seen(&key) {
        Some(at) => Some((at.seq, at.epoch_after)),
        // Nearly every new id: the filter knows it was never stored.
        None if !ids.pending().may_be_stored(id) => None,
        None => tx
            .prepare_cached(
                "SELECT seq, epoch FROM sent_ids WHERE group_id=? AND sender_handle=? AND sender_device=? AND client_id=?",
            )
            .map_err(backend)?
            .query_row(params![m.group_id, m.sender.handle, m.sender.device_id, m.client_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(backend)?,
    };
    if let Some((seq, epoch_after)) = seen {
        return Ok(Appended { seq, epoch: epoch_after, duplicate: true, members });
    }
    if m.epoch != epoch {
        return Err(StoreError::StaleEpoch { current: epoch });
    }
    let seq = last_seq + 1;
    let new_epoch = if m.kind == MessageKind::Commit { epoch + 1 } else { epoch };
    if m.kind == MessageKind::Commit && (!m.added.is_empty() || !m.removed.is_empty()) {
        check_roles(tx, m, &members)?;
    }
    if m.kind == MessageKind::Commit {
        for d in m.added {
            let known: i64 = tx
                .row(
                    "SELECT count(*) FROM devices WHERE handle=? AND device_id=?",
                    params![d.handle, d.device_id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if known == 0 {
                return Err(StoreError::UnknownDevice(d.clone()));
            }
        }
    }
    // Every check is above this line and every write below it: a refusal
    // leaves no trace, so the writer needs no savepoint per message; only
    // a failing write (disk full, I/O) can stop an append half-way.
    if m.kind == MessageKind::Commit {
        for d in m.added {
            // The new member reads from after the commit that adds it.
            tx.exec(
                "INSERT OR REPLACE INTO members(group_id, handle, device_id, joined_seq, cursor) VALUES(?,?,?,?,?)",
                params![m.group_id, d.handle, d.device_id, seq, seq],
            )
            .map_err(backend)?;
            if let Some(w) = m.welcome {
                tx.exec(
                            "INSERT INTO welcomes(handle, device_id, group_id, sender_handle, sender_device, welcome, stored_at)
                             VALUES(?,?,?,?,?,?,?)",
                            params![d.handle, d.device_id, m.group_id, m.sender.handle, m.sender.device_id, w, now],
                        )
                        .map_err(backend)?;
            }
        }
        for d in m.removed {
            tx.exec(
                "UPDATE members SET until_seq=? WHERE group_id=? AND handle=? AND device_id=? AND until_seq IS NULL",
                params![seq, m.group_id, d.handle, d.device_id],
            )
            .map_err(backend)?;
        }
    }
    // The client's id rides on the row: if the server stops before the
    // writer folds it into `sent_ids`, opening the store copies it there.
    match runs {
        Some(runs) if m.kind == MessageKind::Application => runs.push(
            m.group_id,
            RunEntry {
                seq,
                epoch: m.epoch,
                sender: m.sender,
                stored_at: now,
                client_id: m.client_id,
                payload: m.payload,
            },
        ),
        _ => insert_row(tx, m, seq, now)?,
    }
    let at = StoredAt { seq, epoch_after: new_epoch, now };
    match &mut ids {
        Ids::Deferred(pending) => pending.stage(key, id, at),
        Ids::Direct(pending) => {
            pending.note_stored(id, at);
            insert_id(tx, m.group_id, m.sender, m.client_id, at)?
        }
    }
    match heads {
        Some(h) => {
            h.insert(m.group_id.to_vec(), (new_epoch, seq));
        }
        None => {
            tx.exec("UPDATE groups SET epoch=?, last_seq=? WHERE group_id=?", params![new_epoch, seq, m.group_id])
                .map_err(backend)?;
        }
    }
    if m.kind == MessageKind::Application {
        return Ok(Appended { seq, epoch: new_epoch, duplicate: false, members });
    }
    // A commit may change who is in: read again, and forget the old list.
    if let Some(c) = cache {
        c.groups.remove(m.group_id);
    }
    // Removed devices are woken too, to read the commit removing them.
    let mut wake = members_of(tx, m.group_id)?;
    wake.extend(m.removed.iter().cloned());
    Ok(Appended { seq, epoch: new_epoch, duplicate: false, members: wake.into() })
}

/// One append as a row of its own.
fn insert_row(tx: &Connection, m: &NewMessage<'_>, seq: u64, now: i64) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO messages(group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at, client_id)
         VALUES(?,?,?,?,?,?,?,?,?)",
        params![
            m.group_id,
            seq,
            m.epoch,
            m.sender.handle,
            m.sender.device_id,
            kind_code(m.kind),
            m.payload,
            now,
            m.client_id
        ],
    )
    .map(drop)
    .map_err(backend)
}

/// Where the exactly-once check looks and where a new id goes.
pub(super) enum Ids<'a> {
    /// Into the writer's memory, folded later (the batch path).
    Deferred(&'a mut Pending),
    /// Straight into `sent_ids` (the path that isolates each job after a
    /// failed batch, which must not leave anything in memory half-done).
    Direct(&'a mut Pending),
}

impl Ids<'_> {
    fn pending(&self) -> &Pending {
        match self {
            Ids::Deferred(p) => p,
            Ids::Direct(p) => p,
        }
    }
}

/// In a group with roles, a commit's changes must be the committer's to
/// make ([`crate::store::roles::commit_allowed`]).
fn check_roles(tx: &Connection, m: &NewMessage<'_>, members: &[DeviceRef]) -> StoreResult<()> {
    let policy: Option<bool> = tx
        .row("SELECT members_can_add FROM group_policy WHERE group_id=?", [m.group_id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let Some(members_can_add) = policy else { return Ok(()) };
    let admin: bool = tx
        .row(
            "SELECT EXISTS(SELECT 1 FROM group_admins WHERE group_id=? AND handle=?)",
            params![m.group_id, m.sender.handle],
            |r| r.get(0),
        )
        .map_err(backend)?;
    crate::store::roles::commit_allowed(m, members, admin, members_can_add)
}
