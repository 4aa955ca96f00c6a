//! The PostgreSQL store's writer: this node's appends, queued by every
//! session, committed together in one transaction. Each group's row is
//! locked for the batch (in a fixed order, so two nodes' batches cannot
//! deadlock): one sequence per group and first-commit-wins hold across
//! nodes. Nobody hears "stored" before the commit.

#[allow(unused_imports)]
use super::*;
use crate::store::Change;

/// An append waiting for the writer.
pub(super) struct Job {
    pub(super) msg: crate::store::queued::OwnedMessage,
    pub(super) now: i64,
    pub(super) reply: tokio::sync::oneshot::Sender<StoreResult<Appended>>,
}

/// Most appends committed together.
const MAX_BATCH: usize = 512;

pub(super) fn run(mut client: ::postgres::Client, config: ::postgres::Config, node: &str, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        // A connection that broke (the database restarted) is made again;
        // this batch then fails as "retry" and the clients send it again.
        if client.is_closed() {
            if let Ok(c) = config.connect(NoTls) {
                client = c;
            }
        }
        let results = commit_batch(&mut client, &batch);
        // After the commit, ring the other nodes: one notification per
        // group that moved, and one for the devices that got welcomes.
        let mut rings: Vec<String> = Vec::new();
        let mut groups = std::collections::HashSet::new();
        for (job, r) in batch.iter().zip(&results) {
            if let Ok(a) = r {
                if a.duplicate {
                    continue;
                }
                if groups.insert(job.msg.group_id.as_slice()) {
                    rings.extend(Change::Group(job.msg.group_id.clone()).payloads(node));
                }
                if !job.msg.added.is_empty() {
                    rings.extend(Change::Inbox(job.msg.added.clone()).payloads(node));
                }
            }
        }
        if !rings.is_empty() {
            let sent =
                client.execute(&format!("SELECT pg_notify('{CHANNEL}', x) FROM unnest($1::text[]) x"), &[&rings]);
            if let Err(e) = sent {
                // The others find the entries when anything else wakes
                // their connections; nothing is lost.
                tracing::warn!(error = %e, "could not ring the other nodes");
            }
        }
        for (job, r) in batch.into_iter().zip(results) {
            let _ = job.reply.send(r);
        }
    }
}

/// The batch in one transaction, each append in a savepoint so a refused
/// or failed one leaves no trace and does not take the others with it.
fn commit_batch(client: &mut ::postgres::Client, batch: &[Job]) -> Vec<StoreResult<Appended>> {
    let all_fail = |e: &dyn std::fmt::Display| batch.iter().map(|_| Err(backend(e))).collect::<Vec<_>>();
    let mut tx = match client.transaction() {
        Ok(tx) => tx,
        Err(e) => return all_fail(&e),
    };
    let mut groups: Vec<&[u8]> = batch.iter().map(|j| j.msg.group_id.as_slice()).collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        if let Err(e) = tx.execute("SELECT 1 FROM groups WHERE group_id=$1 FOR UPDATE", &[&g]) {
            return all_fail(&e);
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let r = match tx.savepoint("one") {
            Ok(mut sp) => match append_in(&mut sp, &job.msg.view(), job.now) {
                Ok(a) => sp.commit().map(|_| a).map_err(backend),
                // Dropping the savepoint rolls back what it did.
                Err(e) => Err(e),
            },
            Err(e) => Err(backend(e)),
        };
        results.push(r);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => all_fail(&e),
    }
}

/// One append inside an open transaction whose group row is locked:
/// membership, idempotency, epoch, roles, membership change, welcomes.
pub(super) fn append_in(tx: &mut Transaction<'_>, m: &NewMessage<'_>, now: i64) -> StoreResult<Appended> {
    let (epoch, last_seq) = group_row(tx, m.group_id, true)?.ok_or(StoreError::UnknownGroup)?;
    let members: Arc<[DeviceRef]> = members_of(tx, m.group_id)?.into();
    if !members.contains(m.sender) {
        return Err(StoreError::NotMember);
    }
    let seen = tx
        .query_opt(
            "SELECT seq, epoch FROM sent_ids WHERE group_id=$1 AND sender_handle=$2 AND sender_device=$3 AND client_id=$4",
            &[&m.group_id, &m.sender.handle, &dev_id(m.sender), &m.client_id],
        )
        .map_err(backend)?;
    if let Some(r) = seen {
        return Ok(Appended { seq: unsigned(r.get(0)), epoch: unsigned(r.get(1)), duplicate: true, members });
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
            let known = tx
                .query_opt("SELECT 1 FROM devices WHERE handle=$1 AND device_id=$2", &[&d.handle, &dev_id(d)])
                .map_err(backend)?;
            if known.is_none() {
                return Err(StoreError::UnknownDevice(d.clone()));
            }
        }
        for d in m.added {
            tx.execute(
                "INSERT INTO members(group_id, handle, device_id, joined_seq, cursor) VALUES($1,$2,$3,$4,$4)
                 ON CONFLICT(group_id, handle, device_id)
                 DO UPDATE SET joined_seq = excluded.joined_seq, cursor = excluded.cursor, until_seq = NULL",
                &[&m.group_id, &d.handle, &dev_id(d), &int(seq)],
            )
            .map_err(backend)?;
            if let Some(w) = m.welcome {
                tx.execute(
                    "INSERT INTO welcomes(handle, device_id, group_id, sender_handle, sender_device, welcome, stored_at)
                     VALUES($1,$2,$3,$4,$5,$6,$7)",
                    &[&d.handle, &dev_id(d), &m.group_id, &m.sender.handle, &dev_id(m.sender), &w, &now],
                )
                .map_err(backend)?;
            }
        }
        for d in m.removed {
            tx.execute(
                "UPDATE members SET until_seq=$1 WHERE group_id=$2 AND handle=$3 AND device_id=$4 AND until_seq IS NULL",
                &[&int(seq), &m.group_id, &d.handle, &dev_id(d)],
            )
            .map_err(backend)?;
        }
    }
    tx.execute(
        "INSERT INTO messages(group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at)
         VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
        &[
            &m.group_id,
            &int(seq),
            &int(m.epoch),
            &m.sender.handle,
            &dev_id(m.sender),
            &kind_code(m.kind),
            &m.payload,
            &now,
        ],
    )
    .map_err(backend)?;
    tx.execute(
        "INSERT INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at)
         VALUES($1,$2,$3,$4,$5,$6,$7)",
        &[&m.group_id, &m.sender.handle, &dev_id(m.sender), &m.client_id, &int(seq), &int(new_epoch), &now],
    )
    .map_err(backend)?;
    tx.execute("UPDATE groups SET epoch=$1, last_seq=$2 WHERE group_id=$3", &[&int(new_epoch), &int(seq), &m.group_id])
        .map_err(backend)?;
    if m.kind == MessageKind::Application {
        return Ok(Appended { seq, epoch: new_epoch, duplicate: false, members });
    }
    // Removed devices are woken too, to read the commit removing them.
    let mut wake = members_of(tx, m.group_id)?;
    wake.extend(m.removed.iter().cloned());
    Ok(Appended { seq, epoch: new_epoch, duplicate: false, members: wake.into() })
}

/// The roles of a named group, as the SQLite store applies them (see
/// `sqlite/writer.rs`): only admins remove others or (unless members may)
/// add someone new.
fn check_roles(tx: &mut Transaction<'_>, m: &NewMessage<'_>, members: &[DeviceRef]) -> StoreResult<()> {
    let policy =
        tx.query_opt("SELECT members_can_add FROM group_policy WHERE group_id=$1", &[&m.group_id]).map_err(backend)?;
    let Some(policy) = policy else { return Ok(()) };
    let admin = tx
        .query_opt("SELECT 1 FROM group_admins WHERE group_id=$1 AND handle=$2", &[&m.group_id, &m.sender.handle])
        .map_err(backend)?
        .is_some();
    crate::store::roles::commit_allowed(m, members, admin, policy.get(0))
}
