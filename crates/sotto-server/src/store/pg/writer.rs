//! The PostgreSQL store's writer: this node's appends, queued by every
//! session, committed together in one transaction. Each group's row is
//! locked for the batch (in a fixed order, so two nodes' batches cannot
//! deadlock): one sequence per group and first-commit-wins hold across
//! nodes. Nobody hears "stored" before the commit.

#[allow(unused_imports)]
use super::*;
use crate::store::stage_timings::StageTimings;
use crate::store::Change;

/// An append waiting for the writer.
pub(super) struct Job {
    pub(super) msg: crate::store::queued::OwnedMessage,
    pub(super) now: i64,
    pub(super) reply: tokio::sync::oneshot::Sender<StoreResult<Appended>>,
    /// When it was queued (`StageTimings`).
    pub(super) queued: std::time::Instant,
}

/// Most appends committed together.
const MAX_BATCH: usize = 2048;

/// The writer thread. `timings` gets the queue, the commit (PostgreSQL's
/// own sync included: there is no separate sync stage) and each append's
/// whole time.
pub(super) fn run(
    mut client: ::postgres::Client,
    config: ::postgres::Config,
    node: &str,
    jobs: mpsc::Receiver<Job>,
    timings: Arc<StageTimings>,
) {
    let mut prepared = Prepared::new(&mut client).ok();
    // The statements append_in prepares on this connection.
    let mut cache = std::collections::HashMap::new();
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
                prepared = None;
                cache.clear();
            }
        }
        if prepared.is_none() {
            prepared = Prepared::new(&mut client).ok();
        }
        let started = std::time::Instant::now();
        for job in &batch {
            timings.queue.observe(started.saturating_duration_since(job.queued));
        }
        let results = match &prepared {
            Some(p) => commit_batch(&mut client, &mut cache, p, &batch),
            None => batch.iter().map(|_| Err(backend("the database cannot be reached"))).collect(),
        };
        let committed = std::time::Instant::now();
        timings.commit.observe(committed - started);
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
            timings.durable.observe(committed.saturating_duration_since(job.queued));
            let _ = job.reply.send(r);
        }
    }
}

/// The writer's statements, prepared once per connection (parsing and
/// planning each time cost more than the work itself).
struct Prepared {
    lock: ::postgres::Statement,
    members: ::postgres::Statement,
    insert_messages: ::postgres::Statement,
    insert_sent: ::postgres::Statement,
    update_groups: ::postgres::Statement,
}

impl Prepared {
    fn new(c: &mut ::postgres::Client) -> Result<Self, ::postgres::Error> {
        Ok(Self {
            // Locked in one fixed order, so two nodes' batches cannot
            // deadlock.
            lock: c.prepare(
                "SELECT group_id, epoch, last_seq FROM groups WHERE group_id = ANY($1) ORDER BY group_id FOR UPDATE",
            )?,
            members: c.prepare(
                "SELECT group_id, handle, device_id FROM members WHERE group_id = ANY($1) AND until_seq IS NULL
                 ORDER BY handle, device_id",
            )?,
            insert_messages: c.prepare(
                "INSERT INTO messages(group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at)
                 SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[],
                                      $6::smallint[], $7::bytea[], $8::bigint[])",
            )?,
            insert_sent: c.prepare(
                "INSERT INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at)
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bytea[], $5::bigint[],
                                      $6::bigint[], $7::bigint[])
                 ON CONFLICT DO NOTHING",
            )?,
            update_groups: c.prepare(
                "UPDATE groups g SET epoch = u.e, last_seq = u.s
                 FROM unnest($1::bytea[], $2::bigint[], $3::bigint[]) AS u(id, e, s) WHERE g.group_id = u.id",
            )?,
        })
    }
}

/// A locked group as the batch sees it.
struct GroupState {
    epoch: u64,
    last_seq: u64,
    members: Arc<[DeviceRef]>,
    /// Appended to in this batch and not yet written back.
    moved: bool,
}

/// (group, sender handle, sender device, client id): an append's identity.
type SentKey = (Vec<u8>, String, u32, Vec<u8>);

/// Application messages accepted in this batch, not yet written.
#[derive(Default)]
struct Pending<'a> {
    groups: Vec<&'a [u8]>,
    seqs: Vec<i64>,
    epochs: Vec<i64>,
    handles: Vec<&'a str>,
    devices: Vec<i64>,
    kinds: Vec<i16>,
    payloads: Vec<&'a [u8]>,
    client_ids: Vec<&'a [u8]>,
    stored_at: Vec<i64>,
}

/// Why a batch did not commit.
enum BatchError {
    /// The database failed: every append in the batch fails (nothing was
    /// stored; the clients send again).
    Db(String),
    /// An append was already stored before (a client's retry), or one was
    /// refused, which might be a retry of one stored before (the answer
    /// then is "stored", not the refusal): run the batch again, looking
    /// each append up.
    LookUp,
}

impl From<::postgres::Error> for BatchError {
    fn from(e: ::postgres::Error) -> Self {
        BatchError::Db(e.to_string())
    }
}

/// The batch in one transaction: the groups' rows locked and their
/// members read in two statements, application messages checked in memory
/// and written with one multi-row insert per table. Every check comes
/// before any write, so a refused append leaves no trace. Retries are rare,
/// so the first pass does not look each append up: it inserts the ids with
/// `ON CONFLICT DO NOTHING`, and if one was there already the batch runs
/// again, looking each up (a lookup per append cost more than all the rest).
fn commit_batch(
    client: &mut ::postgres::Client,
    cache: &mut Cache,
    p: &Prepared,
    batch: &[Job],
) -> Vec<StoreResult<Appended>> {
    let outcome = match try_batch(client, cache, p, batch, false) {
        Err(BatchError::LookUp) => try_batch(client, cache, p, batch, true),
        other => other,
    };
    match outcome {
        Ok(results) => results,
        Err(BatchError::Db(e)) => batch.iter().map(|_| Err(backend(&e))).collect(),
        Err(BatchError::LookUp) => batch.iter().map(|_| Err(backend("an append was stored twice"))).collect(),
    }
}

type Cache = std::collections::HashMap<String, ::postgres::Statement>;

fn try_batch(
    client: &mut ::postgres::Client,
    cache: &mut Cache,
    p: &Prepared,
    batch: &[Job],
    look_up_each: bool,
) -> Result<Vec<StoreResult<Appended>>, BatchError> {
    let mut tx = super::tx::begin(client, cache)?;
    let mut ids: Vec<&[u8]> = batch.iter().map(|j| j.msg.group_id.as_slice()).collect();
    ids.sort();
    ids.dedup();
    let mut groups: std::collections::HashMap<Vec<u8>, GroupState> = tx
        .tx
        .query(&p.lock, &[&ids])?
        .iter()
        .map(|r| {
            let state = GroupState {
                epoch: unsigned(r.get(1)),
                last_seq: unsigned(r.get(2)),
                members: Arc::from(Vec::new()),
                moved: false,
            };
            (r.get::<_, Vec<u8>>(0), state)
        })
        .collect();
    let mut members: std::collections::HashMap<Vec<u8>, Vec<DeviceRef>> = std::collections::HashMap::new();
    for r in tx.tx.query(&p.members, &[&ids])? {
        let d = DeviceRef { handle: r.get(1), device_id: device_number(r.get(2)) };
        members.entry(r.get(0)).or_default().push(d);
    }
    for (g, state) in groups.iter_mut() {
        state.members = members.remove(g).unwrap_or_default().into();
    }
    // Appends seen: stored before (looked up on the second pass) or earlier
    // in this batch.
    let mut seen: std::collections::HashMap<SentKey, (u64, u64)> = std::collections::HashMap::new();
    if look_up_each {
        for j in batch {
            let m = &j.msg;
            let row = tx.query_opt(
                "SELECT seq, epoch FROM sent_ids WHERE group_id=$1 AND sender_handle=$2 AND sender_device=$3 AND client_id=$4",
                &[&m.group_id, &m.sender.handle, &dev_id(&m.sender), &m.client_id],
            )?;
            if let Some(r) = row {
                let key = (m.group_id.clone(), m.sender.handle.clone(), m.sender.device_id, m.client_id.clone());
                seen.insert(key, (unsigned(r.get(0)), unsigned(r.get(1))));
            }
        }
    }
    let mut pending = Pending::default();
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let m = job.msg.view();
        let key: SentKey = (m.group_id.to_vec(), m.sender.handle.clone(), m.sender.device_id, m.client_id.to_vec());
        if m.kind == MessageKind::Commit {
            // Commits are rare and change membership: written one by one
            // after what is pending, then the group is read again.
            flush(&mut tx, p, &mut pending, &mut groups)?;
            let r = append_in(&mut tx, &m, job.now);
            match &r {
                Err(StoreError::Backend(e)) => return Err(BatchError::Db(e.clone())),
                Ok(a) if !a.duplicate => {
                    let members: Arc<[DeviceRef]> =
                        members_of(&mut tx, m.group_id).map_err(|e| BatchError::Db(e.to_string()))?.into();
                    groups.insert(
                        m.group_id.to_vec(),
                        GroupState { epoch: a.epoch, last_seq: a.seq, members, moved: false },
                    );
                    seen.insert(key, (a.seq, a.epoch));
                }
                _ => {}
            }
            results.push(r);
            continue;
        }
        let refused = |e: StoreError| if look_up_each { Ok(Err(e)) } else { Err(BatchError::LookUp) };
        let Some(state) = groups.get_mut(m.group_id) else {
            results.push(refused(StoreError::UnknownGroup)?);
            continue;
        };
        if !state.members.contains(m.sender) {
            results.push(refused(StoreError::NotMember)?);
            continue;
        }
        if let Some(&(seq, epoch)) = seen.get(&key) {
            results.push(Ok(Appended { seq, epoch, duplicate: true, members: state.members.clone() }));
            continue;
        }
        if m.epoch != state.epoch {
            results.push(refused(StoreError::StaleEpoch { current: state.epoch })?);
            continue;
        }
        state.last_seq += 1;
        state.moved = true;
        let seq = state.last_seq;
        pending.groups.push(m.group_id);
        pending.seqs.push(int(seq));
        pending.epochs.push(int(m.epoch));
        pending.handles.push(&m.sender.handle);
        pending.devices.push(dev_id(m.sender));
        pending.kinds.push(kind_code(m.kind));
        pending.payloads.push(m.payload);
        pending.client_ids.push(m.client_id);
        pending.stored_at.push(job.now);
        seen.insert(key, (seq, state.epoch));
        results.push(Ok(Appended { seq, epoch: state.epoch, duplicate: false, members: state.members.clone() }));
    }
    flush(&mut tx, p, &mut pending, &mut groups)?;
    tx.commit()?;
    Ok(results)
}

/// Writes the pending application messages, their ids and the groups'
/// new last sequence numbers. An id already stored means a retry the first
/// pass did not look for: [`BatchError::LookUp`].
fn flush(
    tx: &mut Tx<'_>,
    p: &Prepared,
    pending: &mut Pending<'_>,
    groups: &mut std::collections::HashMap<Vec<u8>, GroupState>,
) -> Result<(), BatchError> {
    if pending.groups.is_empty() {
        return Ok(());
    }
    let x = &*pending;
    let inserted = tx.tx.execute(
        &p.insert_sent,
        &[&x.groups, &x.handles, &x.devices, &x.client_ids, &x.seqs, &x.epochs, &x.stored_at],
    )?;
    if inserted != x.groups.len() as u64 {
        return Err(BatchError::LookUp);
    }
    tx.tx.execute(
        &p.insert_messages,
        &[&x.groups, &x.seqs, &x.epochs, &x.handles, &x.devices, &x.kinds, &x.payloads, &x.stored_at],
    )?;
    let (mut ids, mut epochs, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
    for (g, state) in groups.iter_mut().filter(|(_, s)| s.moved) {
        ids.push(g.as_slice());
        epochs.push(int(state.epoch));
        seqs.push(int(state.last_seq));
        state.moved = false;
    }
    tx.tx.execute(&p.update_groups, &[&ids, &epochs, &seqs])?;
    *pending = Pending::default();
    Ok(())
}

/// One append inside an open transaction whose group row is locked:
/// membership, idempotency, epoch, roles, membership change, welcomes.
pub(super) fn append_in(tx: &mut Tx<'_>, m: &NewMessage<'_>, now: i64) -> StoreResult<Appended> {
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
fn check_roles(tx: &mut Tx<'_>, m: &NewMessage<'_>, members: &[DeviceRef]) -> StoreResult<()> {
    let policy =
        tx.query_opt("SELECT members_can_add FROM group_policy WHERE group_id=$1", &[&m.group_id]).map_err(backend)?;
    let Some(policy) = policy else { return Ok(()) };
    let admin = tx
        .query_opt("SELECT 1 FROM group_admins WHERE group_id=$1 AND handle=$2", &[&m.group_id, &m.sender.handle])
        .map_err(backend)?
        .is_some();
    crate::store::roles::commit_allowed(m, members, admin, policy.get(0))
}
