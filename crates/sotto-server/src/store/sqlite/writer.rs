//! The SQLite store's single writer: appends queued by every session are
//! committed together (group commit), in the order they were queued.

#[allow(unused_imports)]
use super::*;

/// An append waiting for the writer.
pub(super) struct Job {
    pub(super) msg: crate::store::queued::OwnedMessage,
    pub(super) now: i64,
    pub(super) reply: tokio::sync::oneshot::Sender<StoreResult<Appended>>,
}

/// Most appends committed together.
pub(super) const MAX_BATCH: usize = 1024;

/// Who is in each group, as the writer last read it: an application
/// message (nearly every append) needs the member list twice, to check the
/// sender and to know whom to wake, and it only changes with a commit. The
/// writer owns this; it is dropped whenever membership may have changed
/// outside the writer (`changes` moved on) or a batch was rolled back, and
/// per group after each of its commits.
#[derive(Default)]
pub(super) struct MembersCache {
    seen_changes: u64,
    groups: HashMap<Vec<u8>, Arc<[DeviceRef]>>,
}

/// Within one batch, each group's (epoch, last sequence number) as the
/// batch's appends move them; written back once per group at the end of the
/// batch instead of one UPDATE per message.
type GroupHeads = HashMap<Vec<u8>, (u64, u64)>;

impl MembersCache {
    pub(super) fn get(&mut self, tx: &Connection, group_id: &[u8]) -> StoreResult<Arc<[DeviceRef]>> {
        if let Some(m) = self.groups.get(group_id) {
            return Ok(m.clone());
        }
        let m: Arc<[DeviceRef]> = members_of(tx, group_id)?.into();
        self.groups.insert(group_id.to_vec(), m.clone());
        Ok(m)
    }
}

pub(super) fn writer(conn: Arc<Mutex<Connection>>, jobs: mpsc::Receiver<Job>, changes: Arc<AtomicU64>) {
    let mut cache = MembersCache::default();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let results = {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            // Read under the connection lock, which every membership change
            // also holds: nothing can change between this and the batch.
            let now_changes = changes.load(Ordering::SeqCst);
            if now_changes != cache.seen_changes {
                cache = MembersCache { seen_changes: now_changes, ..Default::default() };
            }
            commit_batch(&mut conn, &batch, &mut cache)
        };
        for (job, r) in batch.into_iter().zip(results) {
            let _ = job.reply.send(r);
        }
    }
}

/// Commits a batch of appends in one transaction. Nobody hears "stored"
/// before the commit. A refused append writes nothing (see [`append_in`]),
/// so the batch runs straight through; only if a write fails is it rolled
/// back and run again with a savepoint around each append, so that one
/// failing append cannot take the others down with it.
pub(super) fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
    cache: &mut MembersCache,
) -> Vec<StoreResult<Appended>> {
    if let Some(results) = commit_straight(conn, batch, cache) {
        return results;
    }
    // Whatever the failed batch read may not be true any more.
    cache.groups.clear();
    commit_isolated(conn, batch)
}

/// The fast path: `None` when a write failed and nothing was committed.
pub(super) fn commit_straight(
    conn: &mut Connection,
    batch: &[Job],
    cache: &mut MembersCache,
) -> Option<Vec<StoreResult<Appended>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ok()?;
    let mut results = Vec::with_capacity(batch.len());
    let mut heads = GroupHeads::new();
    for job in batch {
        match append_in(&tx, &job.msg.view(), job.now, Some((&mut *cache, &mut heads))) {
            // Dropping the transaction rolls it back.
            Err(StoreError::Backend(_)) => return None,
            r => results.push(r),
        }
    }
    for (group_id, (epoch, last_seq)) in &heads {
        tx.exec("UPDATE groups SET epoch=?, last_seq=? WHERE group_id=?", params![epoch, last_seq, group_id]).ok()?;
    }
    tx.commit().ok()?;
    Some(results)
}

/// Each append in its own savepoint (a failed one leaves no trace), all
/// committed at once.
pub(super) fn commit_isolated(conn: &mut Connection, batch: &[Job]) -> Vec<StoreResult<Appended>> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            return batch.iter().map(|_| Err(StoreError::Backend(msg.clone()))).collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let r =
            tx.exec("SAVEPOINT one", []).map_err(backend).and_then(|_| append_in(&tx, &job.msg.view(), job.now, None));
        let undo = if r.is_ok() { Ok(0) } else { tx.exec("ROLLBACK TO one", []) };
        results.push(undo.and_then(|_| tx.exec("RELEASE one", [])).map_err(backend).and(r));
    }
    if let Err(e) = tx.commit() {
        let msg = e.to_string();
        return results.into_iter().map(|_| Err(StoreError::Backend(msg.clone()))).collect();
    }
    results
}

/// One append inside an open transaction: membership, idempotency, epoch,
/// membership change, welcomes.
pub(super) fn append_in(
    tx: &Connection,
    m: &NewMessage<'_>,
    now: i64,
    batch: Option<(&mut MembersCache, &mut GroupHeads)>,
) -> StoreResult<Appended> {
    let (mut cache, heads) = match batch {
        Some((c, h)) => (Some(c), Some(h)),
        None => (None, None),
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
    let seen: Option<(u64, u64)> = tx
        .row(
            "SELECT seq, epoch FROM sent_ids WHERE group_id=? AND sender_handle=? AND sender_device=? AND client_id=?",
            params![m.group_id, m.sender.handle, m.sender.device_id, m.client_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
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
    tx.exec(
        "INSERT INTO messages(group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at)
                 VALUES(?,?,?,?,?,?,?,?)",
        params![m.group_id, seq, m.epoch, m.sender.handle, m.sender.device_id, kind_code(m.kind), m.payload, now],
    )
    .map_err(backend)?;
    tx.exec(
        "INSERT INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at)
                 VALUES(?,?,?,?,?,?,?)",
        params![m.group_id, m.sender.handle, m.sender.device_id, m.client_id, seq, new_epoch, now],
    )
    .map_err(backend)?;
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
