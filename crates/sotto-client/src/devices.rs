//! Several devices per account, over a session: linking a new device (on
//! the device holding the account key), adding every device of every
//! member to every conversation, removing a device, listing them; and the
//! new device's side of a link, before it has an account.

use std::time::Duration;

use sotto_core::link::{Handover, LinkRequest};
use sotto_core::{GroupKind, Identity, LinkCandidate, Messenger};
use sotto_proto::{DeviceRecord, ErrorCode, Request, Response, ServerAddress, UserInfo};

use crate::{ClientError, Connection, Session, SessionError, SessionResult};

/// Days of history a newly linked device gets unless the person says
/// otherwise.
pub const DEFAULT_HISTORY_DAYS: u32 = 30;

/// How a link ended on the linking device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The new device's number.
    pub device_id: u32,
    /// Conversations it was added to now.
    pub conversations: usize,
    /// False when the new device had not come online (and uploaded its
    /// keys) in time: it is added to the conversations at this device's
    /// next connection instead.
    pub complete: bool,
    /// The history handed over now (`None`: none asked for, or owed until
    /// the device is online).
    pub history: Option<sotto_core::archive::ArchiveSummary>,
}

fn unexpected(what: &str, r: Response) -> SessionError {
    SessionError::Other(format!("the server gave an unexpected answer to {what}: {}", response_name(&r)))
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Done => "done",
        Response::User(_) => "user",
        _ => "another kind of answer",
    }
}

impl Session<'_> {
    /// The account key and certified devices the server reports.
    pub async fn lookup(&mut self, handle: &str) -> SessionResult<UserInfo> {
        match self.conn.request(Request::LookupUser { handle: handle.to_owned() }).await? {
            Response::User(info) => Ok(info),
            other => Err(unexpected("a lookup", other)),
        }
    }

    /// Adds every certified device of `handle` (this account included)
    /// that is missing from a conversation with them. Returns how many
    /// conversations changed.
    pub async fn add_missing_devices(&mut self, handle: &str) -> SessionResult<usize> {
        let info = self.lookup(handle).await?;
        self.add_devices_of(&info).await
    }

    pub(crate) async fn add_devices_of(&mut self, info: &UserInfo) -> SessionResult<usize> {
        let (good, forged) = self.messenger.certified_devices(&info.handle, &info.account_key, &info.devices)?;
        if !forged.is_empty() {
            tracing::warn!(handle = %info.handle, ?forged, "the server lists devices the account key never certified; they are left out");
        }
        let me = self.messenger.me();
        let mut changed = 0;
        if info.handle == me.handle {
            // Own devices the account no longer has, still in a group
            // (their removal commit never went out): take them out now.
            for (group_id, stale) in self.messenger.groups_with_removed_own_devices(&good)? {
                for device_id in stale {
                    if let Some(commit) = self.messenger.queue_remove_own_device(&group_id, device_id)? {
                        self.post_item(commit).await?;
                        changed += 1;
                    }
                }
            }
        }
        let good: Vec<u32> = good.into_iter().filter(|d| !(info.handle == me.handle && *d == me.device_id)).collect();
        if good.is_empty() {
            return Ok(changed);
        }
        // The account's own group, made by the device holding the account
        // key (one maker, so two devices do not each start one) once there
        // is another device to tell things.
        if info.handle == me.handle && self.messenger.identity().can_certify() && self.messenger.own_group()?.is_none()
        {
            match self.claim_devices(&me.handle, Some(good.clone()), sotto_core::suite::wanted()).await {
                Ok(invitee) => {
                    let commit = self.messenger.start_own_group(invitee)?;
                    self.post_item(commit).await?;
                }
                // No keys yet (not online since it was linked): later.
                Err(SessionError::Other(_)) | Err(SessionError::Client(ClientError::Server(_))) => {}
                Err(e) => return Err(e),
            }
        }
        for (group_id, missing) in self.messenger.groups_missing_devices(&info.handle, &good)? {
            let suite = sotto_core::suite::wire(self.messenger.group_suite(&group_id)?);
            let invitee = match self.claim_devices(&info.handle, Some(missing), vec![suite]).await {
                Ok(i) => i,
                // Not online since it was linked: no keys yet. The next
                // connection tries again.
                Err(SessionError::Other(_)) | Err(SessionError::Client(ClientError::Server(_))) => break,
                Err(e) => return Err(e),
            };
            if let Some(commit) = self.messenger.queue_add_devices(&group_id, invitee)? {
                self.post_item(commit).await?;
                // The own group is no conversation of the person's.
                changed += usize::from(self.messenger.group_kind(&group_id) != GroupKind::Own);
            }
        }
        Ok(changed)
    }

    /// Before a message to a named group: a device of a member that is on
    /// their account's signed list but missing from the group (its own
    /// devices did not add it: offline since the link, say) is added now,
    /// so it reads this message. A member's list is looked at once an hour
    /// at most, 16 members per send; not fatal (the message goes anyway).
    pub(crate) async fn add_members_missing_devices(&mut self, group_id: &[u8]) {
        let due = match self.messenger.members_due_device_check(group_id, 16) {
            Ok(d) => d,
            Err(e) => return tracing::warn!(error = %e, "could not read the group's members"),
        };
        for handle in due {
            let added = match self.lookup(&handle).await {
                Ok(info) => self.add_devices_of(&info).await,
                Err(e) => Err(e),
            };
            if let Err(e) = added {
                tracing::warn!(handle, error = %e, "could not add a new device of theirs yet");
            }
        }
    }

    /// Fetches the device waiting under `code` (its package must match the
    /// code).
    pub async fn fetch_link(&mut self, code: &str) -> SessionResult<LinkCandidate> {
        let (slot, _) = sotto_core::link::parse_code(code)?;
        match self.conn.request(Request::LinkFetch { slot: slot.to_vec() }).await {
            Ok(Response::LinkPackage { key_package }) => Ok(self.messenger.inspect_link(code, &key_package)?),
            Ok(other) => Err(unexpected("a link fetch", other)),
            Err(e) => Err(e.into()),
        }
    }

    /// Links the candidate: certifies it under the next free device
    /// number, adds it to the account on the server, leaves the handover
    /// in its slot, then waits up to `wait` for it to come online and adds
    /// it to every conversation.
    /// With `history_days` above 0, it then hands over that many days of
    /// history (or owes it, if the device did not come online in time).
    pub async fn complete_link(
        &mut self,
        candidate: &LinkCandidate,
        wait: Duration,
        history_days: u32,
    ) -> SessionResult<Linked> {
        if !self.messenger.identity().can_certify() {
            return Err(SessionError::Other(
                "only the account's first device (it holds the account key) can link new devices; run `sotto device add` there".into(),
            ));
        }
        let handle = self.messenger.identity().handle.clone();
        let info = self.lookup(&handle).await?;
        let known = self.messenger.own_devices()?;
        let mut device_id =
            info.devices.iter().map(|d| d.device_id).chain(known.iter().map(|d| d.device_id)).max().unwrap_or(0) + 1;
        // A number once revoked is never reused; the server says so, and
        // the next one is tried.
        let device = loop {
            let (device, answer) = self.messenger.approve_link(candidate, device_id, history_days)?;
            match self.conn.request(Request::AddDevice { device: device.clone() }).await {
                Ok(_) => {
                    self.messenger.record_own_device(device_id, &candidate.name)?;
                    match self.conn.request(Request::LinkAnswer { slot: candidate.slot.to_vec(), answer }).await {
                        Ok(_) => break device,
                        Err(e) => {
                            // The new device will never get its handover:
                            // take the device off the account again.
                            let _ = self.conn.request(Request::RemoveDevice { device_id }).await;
                            self.messenger.forget_own_device(device_id)?;
                            return Err(e.into());
                        }
                    }
                }
                Err(e) if e.code() == Some(ErrorCode::BadRequest) && device_id < 10_000 => device_id += 1,
                Err(e) if e.code() == Some(ErrorCode::DeviceLimit) => {
                    return Err(SessionError::Other(format!(
                        "{}: see `sotto devices`, then `sotto device remove ID`",
                        e.server_message().unwrap_or("the account has as many devices as this server allows")
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut conversations = 0;
        loop {
            conversations += self.add_missing_devices(&handle).await?;
            let missing = self.messenger.groups_missing_devices(&handle, &[device.device_id])?;
            // The own group too: the history and what this device tells
            // the others go through it.
            let in_own_group = match self.messenger.own_group()? {
                Some(g) => self.messenger.groups_with_own_device(device_id)?.contains(&g),
                None => false,
            };
            let done = missing.is_empty() && in_own_group;
            if done || tokio::time::Instant::now() >= deadline {
                let history = match history_days {
                    0 => None,
                    days => self.hand_over_history(device_id, days).await?,
                };
                return Ok(Linked { device_id, conversations, complete: done, history });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Removes a device of this account for good: the server forgets it at
    /// once (it can no longer log in, and is routed nothing), then it is
    /// removed from every conversation's MLS group, so what is sent from
    /// now on is encrypted to keys it does not have. Returns the number of
    /// conversations it was removed from.
    pub async fn remove_device(&mut self, device_id: u32) -> SessionResult<usize> {
        if device_id == self.messenger.identity().device_id {
            return Err(SessionError::Other(
                "that is this device; remove it from another of your devices (or delete the profile here)".into(),
            ));
        }
        match self.conn.request(Request::RemoveDevice { device_id }).await {
            Ok(_) => {}
            // Already gone on the server (a removal cut short): still take
            // it out of the conversations.
            Err(e) if e.code() == Some(ErrorCode::UnknownHandle) => {}
            Err(e) => return Err(e.into()),
        }
        self.messenger.forget_own_device(device_id)?;
        // What waits in the outbox goes first: a commit of ours waiting in
        // a group would hold the removal back there.
        self.flush_outbox().await?;
        let mut removed = 0;
        for group_id in self.messenger.groups_with_own_device(device_id)? {
            if let Some(commit) = self.messenger.queue_remove_own_device(&group_id, device_id)? {
                self.post_item(commit).await?;
                removed += usize::from(self.messenger.group_kind(&group_id) != GroupKind::Own);
            }
        }
        Ok(removed)
    }

    /// This account's devices as the server knows them.
    pub async fn list_devices(&mut self) -> SessionResult<Vec<DeviceRecord>> {
        match self.conn.request(Request::ListDevices).await? {
            Response::Devices { devices } => Ok(devices),
            other => Err(unexpected("the device list", other)),
        }
    }
}

/// The new device's side: offers the link package at `address` until an
/// answer comes or `wait` passes, then reads it. Before login, a
/// connection lives only seconds, so it reconnects as needed. `None` when
/// nobody answered in time.
pub async fn wait_for_link(
    address: &ServerAddress,
    request: LinkRequest,
    wait: Duration,
) -> SessionResult<Option<(Identity, Handover)>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut conn: Option<Connection> = None;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => conn.insert(crate::connect_with_retry(address, 4).await?),
        };
        match c.request(Request::LinkOffer { key_package: request.key_package().to_vec() }).await {
            Ok(Response::LinkSlot { answer: Some(answer), .. }) => {
                return Ok(Some(request.accept(&answer)?));
            }
            Ok(Response::LinkSlot { answer: None, .. }) => {}
            Ok(other) => return Err(unexpected("a link offer", other)),
            Err(ClientError::Server(b)) if b.code == ErrorCode::RateLimited => {}
            Err(ClientError::Server(b)) => return Err(ClientError::Server(b).into()),
            // The server closed the short-lived connection: a new one.
            Err(_) => conn = None,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Joins a profile restored as a new device
/// ([`sotto_core::Messenger::restore_as_new_device`]) to its account: the
/// server checks the certificate the account key made and adds the device,
/// trying the next number while one is taken, then gets its KeyPackages.
/// Returns the device's number.
pub async fn enroll(messenger: &mut Messenger) -> SessionResult<u32> {
    let address = ServerAddress::parse(&messenger.server()?).map_err(|e| SessionError::Other(e.to_string()))?;
    let mut conn = crate::connect_with_retry(&address, 2).await?;
    for _ in 0..64 {
        let request = messenger.enroll_request(&conn.login_payload());
        match conn.request(request).await {
            Ok(Response::LoggedIn { .. }) => {
                messenger.copy_confirmed()?;
                let id = messenger.identity().device_id;
                let mut session = Session::logged_in(messenger, conn);
                session.upload_key_packages().await?;
                session.close().await;
                return Ok(id);
            }
            Ok(other) => return Err(unexpected("enrolling the device", other)),
            Err(e) if e.code() == Some(ErrorCode::BadRequest) => {
                messenger.renumber_device()?;
            }
            Err(e) if e.code() == Some(ErrorCode::DeviceLimit) => {
                return Err(SessionError::Other(format!(
                    "{}: remove one with `sotto device remove ID` on another device, then restore again",
                    e.server_message().unwrap_or("the account has as many devices as this server allows")
                )))
            }
            Err(e) if e.code() == Some(ErrorCode::BadCertificate) => {
                return Err(SessionError::Other(format!(
                    "the server holds another account key for @{} than this backup: the account was deleted and registered again since",
                    messenger.identity().handle
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SessionError::Other("the server refused every device number tried; try again later".into()))
}
