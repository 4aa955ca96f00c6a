//! A logged-in session: the glue between one [`Connection`] and one
//! [`Messenger`]. It logs in, keeps KeyPackages stocked, re-sends what the
//! server has not acknowledged, processes deliveries in order and
//! acknowledges each only after it is stored.

use std::time::Duration;

use sotto_core::{CoreError, Event, GroupKind, Intent, Invitee, Messenger, OutboxItem};
use sotto_proto::limits::KEY_PACKAGES_LOW_WATER;
use sotto_proto::{ErrorCode, MessageKind, Push, Request, Response, ServerAddress};

use crate::{connect_with_retry, ClientError, Connection};

/// KeyPackages uploaded when the stock is low.
const KEY_PACKAGE_BATCH: usize = 50;
/// Tries for a message whose epoch keeps going stale under it.
const STALE_RETRIES: usize = 8;
/// When the server says `rate_limited`, the first pause before sending
/// again; it doubles up to [`RATE_LIMIT_MAX_PAUSE`], after which the error
/// goes to the caller (the message stays in the outbox either way).
const RATE_LIMIT_FIRST_PAUSE: Duration = Duration::from_millis(250);
const RATE_LIMIT_MAX_PAUSE: Duration = Duration::from_secs(8);
/// A device refreshes its keys in each group at least this often, and on
/// the first session after being offline longer (post-compromise security).
pub const SELF_UPDATE_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What can go wrong in a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection or the server.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The local state.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Anything else, said plainly.
    #[error("{0}")]
    Other(String),
    /// The message is in the local outbox but the server has not
    /// acknowledged it: it goes out by itself on the next connection
    /// (de-duplicated by the server), so it must not be sent again.
    #[error("the message is saved and will be sent the next time sotto connects ({0}); do not send it again")]
    Queued(Box<SessionError>),
}

impl SessionError {
    /// Whether the message this error is about waits in the outbox.
    pub fn is_queued(&self) -> bool {
        matches!(self, Self::Queued(_))
    }
}

/// Result of a session call.
pub type SessionResult<T> = Result<T, SessionError>;

/// A logged-in connection bound to a messenger.
pub struct Session<'m> {
    messenger: &'m Messenger,
    conn: Connection,
    synced: bool,
    /// One-to-one peers whose account this session has checked against
    /// the server (once per session: a removed and re-registered handle is
    /// someone else, and must not silently swallow messages).
    checked: std::collections::HashSet<String>,
}

impl<'m> Session<'m> {
    /// Connects (retrying while the server is unreachable), logs in, refills
    /// KeyPackages if low and re-sends the outbox.
    pub async fn open(messenger: &'m Messenger) -> SessionResult<Self> {
        let address = ServerAddress::parse(&messenger.server()?).map_err(|e| SessionError::Other(e.to_string()))?;
        let mut conn = connect_with_retry(&address, 4).await?;
        let login = messenger.login_request(&conn.login_payload());
        let stock = match conn.request(login).await {
            Ok(Response::LoggedIn { key_packages, .. }) => {
                messenger.copy_confirmed()?;
                key_packages
            }
            Err(ClientError::Server(b)) if b.code == ErrorCode::StaleCopy => {
                return Err(SessionError::Other(b.message));
            }
            Ok(other) => return Err(SessionError::Other(format!("unexpected answer to login: {other:?}"))),
            Err(e) if e.code() == Some(ErrorCode::AuthFailed) => {
                return Err(SessionError::Other(format!(
                    "the server at {address} does not know this device as @{}; was the profile registered on this server? (`sotto init`)",
                    messenger.identity().handle
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let mut session = Self { messenger, conn, synced: false, checked: Default::default() };
        if (stock as usize) < KEY_PACKAGE_BATCH / 2 {
            session.upload_key_packages().await?;
        }
        session.flush_outbox().await?;
        session.update_keys_older_than(SELF_UPDATE_INTERVAL).await?;
        Ok(session)
    }

    /// Registers a freshly created profile on its server.
    pub async fn register(messenger: &'m Messenger, invite: Option<String>) -> SessionResult<Self> {
        let address = ServerAddress::parse(&messenger.server()?).map_err(|e| SessionError::Other(e.to_string()))?;
        let mut conn = connect_with_retry(&address, 2).await?;
        let req = messenger.register_request(&conn.login_payload(), invite);
        conn.request(req).await?;
        messenger.mark_registered()?;
        let mut session = Self { messenger, conn, synced: false, checked: Default::default() };
        session.upload_key_packages().await?;
        Ok(session)
    }

    /// The underlying connection.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The messenger this session drives.
    pub fn messenger(&self) -> &'m Messenger {
        self.messenger
    }

    /// Posts one outbox item (re-encrypting or re-committing if the epoch
    /// moved on).
    pub async fn post_item(&mut self, item: OutboxItem) -> SessionResult<()> {
        if !self.post_with_retry(item).await? {
            // Re-encrypted behind older items: send them all, in order.
            self.flush_outbox().await?;
        }
        Ok(())
    }

    async fn upload_key_packages(&mut self) -> SessionResult<()> {
        let req = self.messenger.key_package_upload(KEY_PACKAGE_BATCH)?;
        self.conn.request(req).await?;
        Ok(())
    }

    /// Posts one outbox item; returns false if the server says its epoch is
    /// stale (the caller catches up and retries).
    async fn post(&mut self, item: &OutboxItem) -> SessionResult<bool> {
        if item.create_group {
            match self.conn.request(Request::CreateGroup { group_id: item.group_id.clone() }).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(ErrorCode::GroupExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut pause = RATE_LIMIT_FIRST_PAUSE;
        loop {
            match self.conn.request(item.to_request()).await {
                Ok(Response::Appended { seq, .. }) => {
                    self.messenger.accepted(&item.client_id, seq)?;
                    return Ok(true);
                }
                Ok(other) => return Err(SessionError::Other(format!("unexpected answer: {other:?}"))),
                Err(e) if e.code() == Some(ErrorCode::StaleEpoch) => return Ok(false),
                // A long outbox (or large messages) can exceed what the
                // server takes from one connection per second.
                Err(e) if e.code() == Some(ErrorCode::RateLimited) && pause <= RATE_LIMIT_MAX_PAUSE => {
                    tracing::debug!(?pause, "the server asked to slow down");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Re-sends everything the server has not acknowledged, catching up and
    /// re-encrypting (or re-committing) where the epoch moved on.
    pub async fn flush_outbox(&mut self) -> SessionResult<()> {
        // Posting may process deliveries that queue more (a departure
        // queues a removal), so go until the outbox is empty.
        for _ in 0..16 {
            let items = self.messenger.outbox()?;
            if items.is_empty() {
                return Ok(());
            }
            for item in items {
                // One re-encrypted to the back of the outbox goes out in the
                // next round, after the rest of this one: everything leaves
                // in the order it was encrypted.
                self.post_with_retry(item).await?;
            }
        }
        Ok(())
    }

    /// Issues an update commit in every group where this device's keys are
    /// older than `max_age`.
    pub async fn update_keys_older_than(&mut self, max_age: Duration) -> SessionResult<()> {
        for group_id in self.messenger.updates_due(max_age.as_millis() as i64)? {
            self.catch_up(&group_id).await?;
            if let Some(item) = self.messenger.update_keys(&group_id)? {
                self.post_item(item).await?;
            }
        }
        Ok(())
    }

    /// Posts an item, catching up and rebuilding a commit as often as the
    /// group moves under it. Returns false when an application message was
    /// re-encrypted instead: it joined the back of the outbox, behind
    /// messages encrypted before it in the new epoch, and must be posted
    /// after them. MLS lets receivers take a sender's messages only slightly
    /// out of the order they were encrypted in (a few generations); posting
    /// the re-encrypted one first broke the group for every receiver once
    /// more than that many waited behind it (found by the simulation test).
    async fn post_with_retry(&mut self, mut item: OutboxItem) -> SessionResult<bool> {
        for _ in 0..STALE_RETRIES {
            if self.post(&item).await? {
                if item.kind == MessageKind::Commit {
                    self.publish_group_info(&item.group_id).await?;
                }
                if item.kind == MessageKind::Commit
                    && matches!(item.intent, Some(Intent::Add(_)))
                    && GroupKind::of(&item.group_id) == GroupKind::Group
                {
                    // New members learn the group's name from this.
                    let conversation = self.messenger.conversation_of(&item.group_id)?;
                    let announce = self.messenger.announce(&conversation)?;
                    Box::pin(self.post_item(announce)).await?;
                }
                return Ok(true);
            }
            if item.intent == Some(Intent::Rejoin) {
                // The group moved on while we rejoined: start from its
                // newest GroupInfo again.
                match self.fresh_rejoin(&item.group_id).await? {
                    Some(next) => {
                        item = next;
                        continue;
                    }
                    None => return Ok(true),
                }
            }
            // Someone else changed the group first: catch up, then make the
            // message (or commit) again on the new epoch.
            self.catch_up(&item.group_id).await?;
            let next = match item.kind {
                MessageKind::Commit => self.messenger.redo_commit(&item.client_id)?,
                MessageKind::Application => {
                    return Ok(self.messenger.reencrypt(&item.client_id)?.is_none());
                }
            };
            match next {
                Some(next) => item = next,
                None => return Ok(true),
            }
        }
        Err(SessionError::Other("the conversation kept changing while sending; try again".into()))
    }

    /// Stores the group's GroupInfo on the server after a commit of ours, so
    /// a member that loses step can rejoin.
    async fn publish_group_info(&mut self, group_id: &[u8]) -> SessionResult<()> {
        let (epoch, group_info) = self.messenger.export_group_info(group_id)?;
        let req = Request::PutGroupInfo { group_id: group_id.to_vec(), epoch, group_info };
        match self.conn.request(req).await {
            Ok(_) => Ok(()),
            // Someone committed meanwhile; they publish theirs.
            Err(e) if e.code() == Some(ErrorCode::StaleEpoch) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// An external commit from the group's latest GroupInfo, or `None` if
    /// the server has none.
    async fn fresh_rejoin(&mut self, group_id: &[u8]) -> SessionResult<Option<OutboxItem>> {
        match self.conn.request(Request::GetGroupInfo { group_id: group_id.to_vec() }).await {
            Ok(Response::GroupInfo { epoch, group_info }) => {
                Ok(Some(self.messenger.rejoin(group_id, epoch, &group_info)?))
            }
            Ok(other) => Err(SessionError::Other(format!("unexpected answer: {other:?}"))),
            Err(e) if matches!(e.code(), Some(ErrorCode::UnknownGroup | ErrorCode::NotMember)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Rejoins every group this device fell out of step with.
    pub async fn repair(&mut self) -> SessionResult<()> {
        for group_id in self.messenger.broken_groups()? {
            if let Some(item) = self.fresh_rejoin(&group_id).await? {
                self.post_item(item).await?;
            }
        }
        Ok(())
    }

    /// Reads and processes a group's log from the local cursor.
    async fn catch_up(&mut self, group_id: &[u8]) -> SessionResult<Vec<Event>> {
        let mut events = Vec::new();
        loop {
            let after = self.messenger.cursor(group_id)?.unwrap_or(0);
            let req =
                Request::Fetch { group_id: group_id.to_vec(), after_seq: after, limit: sotto_proto::limits::MAX_FETCH };
            let Response::Messages { messages } = self.conn.request(req).await? else {
                return Err(SessionError::Other("unexpected answer to fetch".into()));
            };
            let Some(last) = messages.last().map(|d| d.seq) else { return Ok(events) };
            events.extend(self.messenger.handle_deliveries(&messages)?);
            self.conn.request(Request::Ack { group_id: group_id.to_vec(), seq: last }).await?;
        }
    }

    async fn handle_push(&mut self, push: Push) -> SessionResult<Vec<Event>> {
        match push {
            Push::Welcome { welcome_id, group_id, welcome, sender } => {
                let events = match self.messenger.handle_welcome_from(Some(&sender.handle), &group_id, &welcome) {
                    Ok(ev) => ev,
                    Err(CoreError::Blocked(_)) => {
                        // Not joined, and not routed either: the server
                        // stops delivering it and showing presence.
                        let _ = self.conn.request(Request::Leave { group_id: group_id.clone() }).await;
                        vec![]
                    }
                    // A welcome we cannot use stays unusable; say so and
                    // drop it rather than stall every later delivery.
                    Err(e) => vec![Event::Warning {
                        conversation: None,
                        text: format!("could not join a conversation started by @{}: {e}", sender.handle),
                    }],
                };
                self.conn.request(Request::AckWelcome { welcome_id }).await?;
                Ok(events)
            }
            Push::Deliver(d) => {
                let events = self.messenger.handle_delivery(&d)?;
                self.ack(d.group_id.clone(), d.seq).await?;
                Ok(events)
            }
            Push::KeyPackagesLow { remaining } => {
                if (remaining as usize) < KEY_PACKAGES_LOW_WATER {
                    self.upload_key_packages().await?;
                }
                Ok(vec![])
            }
            Push::SyncDone => Ok(vec![]),
        }
    }

    /// Processes a run of deliveries in one local transaction, then
    /// acknowledges the highest sequence number of each group once.
    async fn process_batch(&mut self, batch: &mut Vec<sotto_proto::Delivery>) -> SessionResult<Vec<Event>> {
        if batch.is_empty() {
            return Ok(vec![]);
        }
        let events = self.messenger.handle_deliveries(batch)?;
        let mut highest: std::collections::BTreeMap<Vec<u8>, u64> = std::collections::BTreeMap::new();
        for d in batch.iter() {
            let e = highest.entry(d.group_id.clone()).or_default();
            *e = (*e).max(d.seq);
        }
        for (group_id, seq) in highest {
            self.ack(group_id, seq).await?;
        }
        batch.clear();
        Ok(events)
    }

    /// Acknowledges a group's log up to `seq`. A group this device left
    /// meanwhile (a welcome it refused, for one) has nothing to acknowledge.
    async fn ack(&mut self, group_id: Vec<u8>, seq: u64) -> SessionResult<()> {
        match self.conn.request(Request::Ack { group_id, seq }).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some(ErrorCode::NotMember | ErrorCode::UnknownGroup)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Processes everything pending on the server, then switches to live
    /// delivery. Returns what happened. A backlog is processed in batches
    /// (one local commit and one acknowledgement per group per batch).
    pub async fn sync(&mut self) -> SessionResult<Vec<Event>> {
        const BATCH: usize = 256;
        self.conn.request(Request::Sync).await?;
        self.synced = true;
        let mut events = Vec::new();
        let mut batch = Vec::new();
        loop {
            let push = tokio::time::timeout(Duration::from_secs(60), self.conn.next_push())
                .await
                .map_err(|_| ClientError::Timeout)??;
            match push {
                Push::Deliver(d) => {
                    batch.push(d);
                    if batch.len() >= BATCH {
                        events.extend(self.process_batch(&mut batch).await?);
                    }
                }
                Push::SyncDone => {
                    events.extend(self.process_batch(&mut batch).await?);
                    self.flush_outbox().await?;
                    self.repair().await?;
                    return Ok(events);
                }
                other => {
                    // Keep order: what came before (a welcome's group may
                    // follow) is processed first.
                    events.extend(self.process_batch(&mut batch).await?);
                    events.extend(self.handle_push(other).await?);
                }
            }
        }
    }

    /// Waits up to `wait` for live deliveries and processes what comes.
    /// Returns as soon as something produced events.
    pub async fn pump(&mut self, wait: Duration) -> SessionResult<Vec<Event>> {
        if !self.synced {
            return self.sync().await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(push) = self.conn.next_push_within(left).await? else { return Ok(vec![]) };
            let events = self.handle_push(push).await?;
            self.flush_outbox().await?;
            self.repair().await?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Claims KeyPackages for every device of `handle`.
    pub async fn claim(&mut self, handle: &str) -> SessionResult<Invitee> {
        match self.conn.request(Request::ClaimKeyPackages { handle: handle.to_owned() }).await {
            Ok(Response::KeyPackages { account_key, packages, .. }) => {
                Ok(Invitee { handle: handle.to_owned(), account_key, packages })
            }
            Ok(other) => Err(SessionError::Other(format!("unexpected answer: {other:?}"))),
            Err(e) if e.code() == Some(ErrorCode::UnknownHandle) => {
                Err(SessionError::Other(format!("there is no @{handle} on this server; check the spelling")))
            }
            Err(e) if e.code() == Some(ErrorCode::NoKeyPackages) => Err(SessionError::Other(format!(
                "@{handle} cannot be reached yet: their device has no key packages left; it refills when they come online"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes sure a one-to-one conversation with `handle` exists, starting
    /// it if needed.
    pub async fn ensure_direct(&mut self, handle: &str) -> SessionResult<()> {
        // Before anything goes to the server (no claim, no new group).
        if self.messenger.is_blocked(handle)? {
            return Err(CoreError::Blocked(handle.to_owned()).into());
        }
        let conversation = format!("@{handle}");
        if self.messenger.conversation_group(&conversation)?.is_some() {
            return Ok(());
        }
        let invitee = self.claim(handle).await?;
        let commit = self.messenger.start_direct(invitee)?;
        self.post_item(commit).await
    }

    /// Creates the group `#name` with these people.
    pub async fn create_group(&mut self, name: &str, handles: &[String]) -> SessionResult<()> {
        sotto_core::validate_group_name(name)?;
        let mut invitees = Vec::new();
        for h in handles {
            invitees.push(self.claim(h).await?);
        }
        let commit = self.messenger.create_group(name, invitees)?;
        self.post_item(commit).await
    }

    /// Adds people to a group.
    pub async fn add_to_group(&mut self, conversation: &str, handles: &[String]) -> SessionResult<()> {
        let mut invitees = Vec::new();
        for h in handles {
            invitees.push(self.claim(h).await?);
        }
        if let Some(commit) = self.messenger.add_to_group(conversation, invitees)? {
            self.post_item(commit).await?;
        }
        Ok(())
    }

    /// Removes people from a group.
    pub async fn remove_from_group(&mut self, conversation: &str, handles: &[String]) -> SessionResult<()> {
        match self.messenger.remove_from_group(conversation, handles.to_vec())? {
            Some(commit) => self.post_item(commit).await,
            None => Err(SessionError::Other(format!("none of them is in {conversation}"))),
        }
    }

    /// Renames a group for everyone in it.
    pub async fn rename_group(&mut self, conversation: &str, new_name: &str) -> SessionResult<()> {
        let item = self.messenger.rename_group(conversation, new_name)?;
        self.post_item(item).await
    }

    /// Leaves a group: tells the members, stops the server routing to this
    /// device, and marks it left here.
    pub async fn leave_group(&mut self, conversation: &str) -> SessionResult<()> {
        let item = self.messenger.leave_message(conversation)?;
        self.post_item(item).await?;
        let group_id = self.messenger.mark_left(conversation)?;
        match self.conn.request(Request::Leave { group_id }).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::NotMember) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes this account: leaves every conversation (the others see it
    /// leave, and their clients remove its devices), then asks the server
    /// to forget the account. Returns the conversations left.
    pub async fn delete_account(&mut self) -> SessionResult<Vec<String>> {
        let mut left = Vec::new();
        for c in self.messenger.conversations()? {
            // A one-to-one conversation may have two groups (both started
            // it at once): leave each.
            for _ in 0..4 {
                if self.messenger.conversation_group(&c)?.is_none() {
                    break;
                }
                match self.leave_group(&c).await {
                    Ok(()) => {}
                    // Nobody else there, or already out: nothing to tell.
                    Err(SessionError::Core(CoreError::Invalid(_))) => {
                        self.messenger.mark_left(&c)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            left.push(c);
        }
        self.conn.request(Request::DeleteAccount).await?;
        Ok(left)
    }

    /// Which of these people are online now (only those you share a
    /// conversation with are answered). `None` when the server keeps
    /// presence private.
    pub async fn presence(&mut self, handles: &[String]) -> SessionResult<Option<Vec<(String, bool)>>> {
        match self.conn.request(Request::Presence { handles: handles.to_vec() }).await? {
            Response::Presence { enabled: true, online } => Ok(Some(online)),
            Response::Presence { enabled: false, .. } => Ok(None),
            other => Err(SessionError::Other(format!("unexpected answer: {other:?}"))),
        }
    }

    /// Asks the server who `handle` is now, before the first message of
    /// this session to them: an account removed by the operator has no
    /// one left to read the conversation, and a handle registered again by
    /// someone else carries another account key, which holds sending as
    /// any key change does (the next `prepare` refuses until `sotto trust`).
    pub async fn check_peer(&mut self, handle: &str) -> SessionResult<()> {
        if self.checked.contains(handle) {
            return Ok(());
        }
        match self.conn.request(Request::LookupUser { handle: handle.to_owned() }).await {
            Ok(Response::User(info)) => {
                self.messenger.observe_account_key(handle, &info.account_key)?;
                // Is the peer still in our one-to-one group on the server?
                let conversation = format!("@{handle}");
                if let Some(group_id) = self.messenger.conversation_group(&conversation)? {
                    let gone = match self.conn.request(Request::GroupState { group_id: group_id.clone() }).await {
                        Ok(Response::Group { members, .. }) => !members.iter().any(|d| d.handle == handle),
                        Err(e) if matches!(e.code(), Some(ErrorCode::NotMember | ErrorCode::UnknownGroup)) => true,
                        _ => false,
                    };
                    if gone {
                        self.messenger.close_dead_direct(&group_id, handle)?;
                    }
                }
                self.checked.insert(handle.to_owned());
                Ok(())
            }
            Ok(other) => Err(SessionError::Other(format!("unexpected answer: {other:?}"))),
            Err(e) if e.code() == Some(ErrorCode::UnknownHandle) => Err(SessionError::Other(format!(
                "@{handle} has no account on this server any more, so nobody can read this conversation; nothing was sent"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a text to a conversation (`@handle` starts one if needed) and
    /// returns once the server acknowledged it.
    pub async fn send_text(&mut self, conversation: &str, text: &str) -> SessionResult<()> {
        if let Some(handle) = conversation.strip_prefix('@') {
            if self.messenger.conversation_group(conversation)?.is_some() {
                self.check_peer(handle).await?;
            }
            self.ensure_direct(handle).await?;
        } else if self.messenger.conversation_group(conversation)?.is_none() {
            return Err(SessionError::Other(format!("no conversation {conversation}; see `sotto groups`")));
        }
        let item = self.messenger.prepare_text(conversation, text)?;
        self.post_item(item).await.map_err(|e| SessionError::Queued(Box::new(e)))
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.conn.close().await;
    }
}
