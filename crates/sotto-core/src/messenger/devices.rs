//! Several devices per account: approving a link (on the device that holds
//! the account key), the new device's profile, keeping every device of
//! every member in every group, removing a device.

#[allow(unused_imports)]
use super::*;
use crate::link::{parse_code, Handover, HandoverContact, LinkAnswer, LinkCredential};
use sotto_proto::{link_slot, DeviceInfo, LINK_SLOT_LEN};

/// A device waiting to be linked, as the linking device sees it after
/// fetching its package by the code.
pub struct LinkCandidate {
    /// The slot the answer goes to.
    pub slot: [u8; LINK_SLOT_LEN],
    secret: Vec<u8>,
    key_package: KeyPackage,
    /// The name the person gave the new device.
    pub name: String,
    /// Its device key.
    pub device_key: Vec<u8>,
}

/// A device of this account as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDevice {
    /// Number.
    pub device_id: u32,
    /// Name ("" when unknown).
    pub name: String,
}

/// How long a member's device list, once looked at before a send to a
/// named group, counts as current: an hour.
pub const DEVICE_CHECK_MS: i64 = 3600 * 1000;

impl Messenger {
    /// Checks a link package fetched by `code`: it must hash to the code's
    /// slot (so the server cannot have swapped it) and be a valid link
    /// package.
    pub fn inspect_link(&self, code: &str, key_package: &[u8]) -> CoreResult<LinkCandidate> {
        let (slot, secret) = parse_code(code)?;
        if link_slot(key_package) != slot {
            return Err(CoreError::BadCredential(
                "the server handed out a link request that does not match the code; nothing was linked".into(),
            ));
        }
        let kp = KeyPackageIn::tls_deserialize_exact(key_package)
            .map_err(|e| CoreError::decode("link request", e))?
            .validate(self.provider().crypto(), ProtocolVersion::Mls10)
            .map_err(|e| CoreError::BadCredential(format!("link request: {e}")))?;
        let leaf = kp.leaf_node();
        let basic = BasicCredential::try_from(leaf.credential().clone())
            .map_err(|e| CoreError::BadCredential(e.to_string()))?;
        let cred: LinkCredential = ciborium::from_reader(basic.identity())
            .map_err(|e| CoreError::BadCredential(format!("not a link request: {e}")))?;
        Ok(LinkCandidate {
            slot,
            secret,
            name: cred.link_device,
            device_key: leaf.signature_key().as_slice().to_vec(),
            key_package: kp,
        })
    }

    /// Certifies the candidate as device `device_id` of this account and
    /// makes the answer for its slot: a welcome into a two-member MLS group
    /// (kept in memory only) and the handover as a message in it. Returns
    /// the device as the server is to store it, and the answer.
    /// `history_days` tells the new device how much history to wait for.
    pub fn approve_link(
        &self,
        candidate: &LinkCandidate,
        device_id: u32,
        history_days: u32,
    ) -> CoreResult<(DeviceInfo, Vec<u8>)> {
        let certificate = self.identity.certify(device_id, &candidate.device_key)?;
        let device = DeviceInfo { device_id, device_key: candidate.device_key.clone(), certificate };
        let mut devices = self.own_devices()?;
        devices.retain(|d| d.device_id != device_id);
        devices.push(OwnDevice { device_id, name: candidate.name.clone() });
        let handover = Handover {
            secret: candidate.secret.clone(),
            handle: self.identity.handle.clone(),
            account_key: self.identity.account_key(),
            device_id,
            certificate: device.certificate.clone(),
            server: self.server()?,
            contacts: self
                .contacts()?
                .into_iter()
                .filter(|c| !c.key_changed)
                .map(|c| {
                    let accepted = self.is_accepted(&c.handle)?;
                    Ok(HandoverContact { handle: c.handle, account_key: c.account_key, verified: c.verified, accepted })
                })
                .collect::<CoreResult<_>>()?,
            blocked: self.blocked()?,
            devices: devices.into_iter().map(|d| (d.device_id, d.name)).collect(),
            auto_accept: self.auto_accept()?,
            history_days,
        };
        let provider = provider::new_ephemeral()?;
        let signer = self.identity.signer();
        let mut group = MlsGroup::new(
            &provider,
            &signer,
            &create_config(None, candidate.key_package.ciphersuite())?,
            self.identity.credential(),
        )
        .map_err(CoreError::mls)?;
        let (_, welcome, _) = group
            .add_members(&provider, &signer, std::slice::from_ref(&candidate.key_package))
            .map_err(CoreError::mls)?;
        group.merge_pending_commit(&provider).map_err(CoreError::mls)?;
        let message = group.create_message(&provider, &signer, &cbor(&handover)).map_err(CoreError::mls)?;
        let answer = LinkAnswer {
            welcome: welcome.tls_serialize_detached().map_err(CoreError::mls)?,
            message: message.tls_serialize_detached().map_err(CoreError::mls)?,
        };
        Ok((device, cbor(&answer)))
    }

    /// Remembers the name of a device of this account.
    pub fn record_own_device(&self, device_id: u32, name: &str) -> CoreResult<()> {
        self.conn.exec(
            "INSERT INTO own_devices(device_id, name, added_at) VALUES(?,?,?)
             ON CONFLICT(device_id) DO UPDATE SET name=excluded.name",
            params![device_id, name, self.now()],
        )?;
        Ok(())
    }

    /// Forgets a device of this account (it was removed).
    pub fn forget_own_device(&self, device_id: u32) -> CoreResult<()> {
        self.conn.exec("DELETE FROM own_devices WHERE device_id=?", [device_id])?;
        Ok(())
    }

    /// This account's devices as this device knows them (itself included).
    pub fn own_devices(&self) -> CoreResult<Vec<OwnDevice>> {
        let mut stmt = self.conn.prepare("SELECT device_id, name FROM own_devices ORDER BY device_id")?;
        let rows = stmt.query_map([], |r| Ok(OwnDevice { device_id: r.get(0)?, name: r.get(1)? }))?;
        let mut out: Vec<OwnDevice> = rows.collect::<Result<_, _>>()?;
        if !out.iter().any(|d| d.device_id == self.identity.device_id) {
            out.push(OwnDevice { device_id: self.identity.device_id, name: self.identity.name.clone() });
            out.sort_by_key(|d| d.device_id);
        }
        Ok(out)
    }

    /// The profile of a newly linked device, from the handover: its
    /// identity, the account's contacts with their trusted keys and
    /// verified marks, blocks and device names. Registered already (the
    /// linking device added it to the account).
    pub fn create_linked(dir: &Path, key: &ProfileKey, identity: Identity, handover: &Handover) -> CoreResult<Self> {
        let mut conn = db::create(dir, key)?;
        let result = Self::fill_linked(&mut conn, &identity, handover);
        if let Err(e) = result {
            drop(conn);
            db::remove(dir);
            return Err(e);
        }
        Self::assemble(conn, identity, dir.to_owned())
    }

    fn fill_linked(conn: &mut Connection, identity: &Identity, handover: &Handover) -> CoreResult<()> {
        conn.execute_batch(SCHEMA)?;
        // The search index and its triggers too, as for every new profile.
        super::schema::upgrade(conn)?;
        provider::migrate(conn).map_err(CoreError::Mls)?;
        let now = now_ms();
        let tx = conn.transaction()?;
        tx.execute("INSERT INTO settings(k, v) VALUES('identity', ?)", [identity.to_bytes()])?;
        tx.execute("INSERT INTO settings(k, v) VALUES('server', ?)", [handover.server.as_bytes()])?;
        tx.execute("INSERT INTO settings(k, v) VALUES('registered', ?)", [b"1".as_slice()])?;
        for c in &handover.contacts {
            if sotto_proto::validate_handle(&c.handle).is_err() || c.handle == identity.handle {
                continue;
            }
            tx.execute(
                "INSERT OR REPLACE INTO contacts(handle, account_key, verified, added_at, accepted) VALUES(?,?,?,?,?)",
                params![c.handle, c.account_key, c.verified, now, c.accepted],
            )?;
        }
        for h in &handover.blocked {
            tx.execute("INSERT OR IGNORE INTO blocked(handle, since) VALUES(?,?)", params![h, now])?;
        }
        if handover.auto_accept {
            tx.execute("INSERT OR REPLACE INTO settings(k, v) VALUES('auto_accept', ?)", [b"1".as_slice()])?;
        }
        for (id, name) in &handover.devices {
            tx.execute(
                "INSERT OR REPLACE INTO own_devices(device_id, name, added_at) VALUES(?,?,?)",
                params![id, name, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Each active group this device is in, with its members' credentials
    /// (from the MLS state, not the server's routing).
    fn active_group_members(&self) -> CoreResult<Vec<(Vec<u8>, Vec<SottoCredential>)>> {
        let mut out = Vec::new();
        for group_id in self.active_groups()? {
            let group = self.load_group(&group_id)?;
            if group.is_active() {
                let members = Self::member_handles(&group).into_iter().map(|(_, c)| c).collect();
                out.push((group_id, members));
            }
        }
        Ok(out)
    }

    /// The active groups where `handle` is a member but some of `devices`
    /// (the account's certified devices) is not, with the missing device
    /// numbers. For this account, every active group counts.
    pub fn groups_missing_devices(&self, handle: &str, devices: &[u32]) -> CoreResult<Vec<(Vec<u8>, Vec<u32>)>> {
        let own = handle == self.identity.handle;
        let mut out = Vec::new();
        for (group_id, members) in self.active_group_members()? {
            // A message request is not brought onto this account's other
            // devices by this one (that would let it past their screen);
            // once accepted, it is.
            if own && self.group_request_from(&group_id)?.is_some() {
                continue;
            }
            let present: Vec<u32> = members.iter().filter(|c| c.handle == handle).map(|c| c.device_id).collect();
            if present.is_empty() && !own {
                continue;
            }
            let missing: Vec<u32> = devices.iter().copied().filter(|d| !present.contains(d)).collect();
            if !missing.is_empty() {
                out.push((group_id, missing));
            }
        }
        Ok(out)
    }

    /// The active groups with a device of this account that is not among
    /// `current` (the account's devices as the server lists them, this
    /// one included): a device removed while a commit of ours waited in
    /// that group, or removed from another device whose commit never
    /// went out. With each group, the devices to take out.
    pub fn groups_with_removed_own_devices(&self, current: &[u32]) -> CoreResult<Vec<(Vec<u8>, Vec<u32>)>> {
        let me = &self.identity;
        let mut out = Vec::new();
        for (group_id, members) in self.active_group_members()? {
            let stale: Vec<u32> = members
                .iter()
                .filter(|c| c.handle == me.handle && c.device_id != me.device_id && !current.contains(&c.device_id))
                .map(|c| c.device_id)
                .collect();
            if !stale.is_empty() {
                out.push((group_id, stale));
            }
        }
        Ok(out)
    }

    /// Active groups in which `device` of this account is a member.
    pub fn groups_with_own_device(&self, device_id: u32) -> CoreResult<Vec<Vec<u8>>> {
        let me = &self.identity;
        Ok(self
            .active_group_members()?
            .into_iter()
            .filter(|(_, members)| members.iter().any(|c| c.handle == me.handle && c.device_id == device_id))
            .map(|(group_id, _)| group_id)
            .collect())
    }

    /// Queues, in one group, the commit that adds the claimed devices.
    /// `None` when they are all in it by now, or when a commit of this
    /// device waits for the server in that group (one at a time: the add
    /// is tried again at the next connection).
    pub fn queue_add_devices(&self, group_id: &[u8], invitee: Invitee) -> CoreResult<Option<PendingCommit>> {
        if self.commit_waiting(group_id)? {
            return Ok(None);
        }
        self.queue_commit(group_id, Intent::Add(vec![invitee]))
    }

    /// Whether a commit of this device waits in the outbox for the group.
    pub fn commit_waiting(&self, group_id: &[u8]) -> CoreResult<bool> {
        Ok(self
            .conn
            .row("SELECT 1 FROM outbox WHERE group_id=? AND kind='commit' LIMIT 1", [group_id], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some())
    }

    /// Queues, in one group, the commit that removes a device of this
    /// account. `None` when it is not in the group.
    pub fn queue_remove_own_device(&self, group_id: &[u8], device_id: u32) -> CoreResult<Option<PendingCommit>> {
        if device_id == self.identity.device_id {
            return Err(CoreError::Invalid("a device cannot remove itself from its conversations this way".into()));
        }
        if self.commit_waiting(group_id)? {
            return Ok(None);
        }
        self.queue_commit(
            group_id,
            Intent::RemoveDevices(vec![DeviceRef { handle: self.identity.handle.clone(), device_id }]),
        )
    }

    /// Checks a device list the server reported for `handle` against the
    /// account key this device trusts: only devices whose certificate
    /// verifies are returned; the others (a device the server added on its
    /// own) are named in the second list.
    pub fn certified_devices(
        &self,
        handle: &str,
        account_key: &[u8],
        devices: &[DeviceInfo],
    ) -> CoreResult<(Vec<u32>, Vec<u32>)> {
        if handle == self.identity.handle {
            if account_key != self.identity.account_key() {
                return Err(CoreError::BadCredential("the server reports another account key for this account".into()));
            }
        } else {
            self.note_contact(handle, account_key)?;
            self.require_trusted(handle, account_key)?;
        }
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for d in devices {
            let payload = sotto_proto::signing::device_certificate_payload(handle, d.device_id, &d.device_key);
            if crate::identity::verify(account_key, &payload, &d.certificate) {
                good.push(d.device_id);
            } else {
                bad.push(d.device_id);
            }
        }
        Ok((good, bad))
    }

    /// Members of a named group (not this account) whose device list is
    /// due a look before this device sends there: never looked at, or not
    /// within [`DEVICE_CHECK_MS`]; the longest unchecked first, at most
    /// `limit` (a large group is covered over several sends). Each is
    /// marked looked at now.
    pub fn members_due_device_check(&self, group_id: &[u8], limit: usize) -> CoreResult<Vec<String>> {
        let now = self.now();
        let mut due: Vec<(i64, String)> = Vec::new();
        for handle in self.members_of(group_id)? {
            if handle == self.identity.handle {
                continue;
            }
            let at: Option<i64> =
                self.conn.row("SELECT at FROM device_checks WHERE handle=?", [&handle], |r| r.get(0)).optional()?;
            match at {
                Some(t) if now - t < DEVICE_CHECK_MS => {}
                other => due.push((other.unwrap_or(0), handle)),
            }
        }
        due.sort();
        due.truncate(limit);
        for (_, h) in &due {
            self.conn.exec("INSERT OR REPLACE INTO device_checks(handle, at) VALUES(?,?)", params![h, now])?;
        }
        Ok(due.into_iter().map(|(_, h)| h).collect())
    }

    fn active_groups(&self) -> CoreResult<Vec<Vec<u8>>> {
        let mut stmt =
            self.conn.prepare("SELECT group_id FROM groups WHERE active=1 AND broken=0 ORDER BY group_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
