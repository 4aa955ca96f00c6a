//! A logged-in session: the glue between one [`Connection`] and one
//! [`Messenger`]. It logs in, keeps KeyPackages stocked, re-sends what the
//! server has not acknowledged, processes deliveries in order and
//! acknowledges each only after it is stored.

use std::time::Duration;

use sotto_core::policy::KEY_PACKAGE_BATCH;
use sotto_core::{CoreError, Event, Messenger, OutboxItem, Policy, PolicyError, Step, Task};
use sotto_proto::{ErrorCode, Push, Request, Response, ServerAddress};

use crate::claims::offers_post_quantum;
use crate::{connect_with_retry, ClientError, Connection};
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
    /// The sending policy stopped (a refusal it does not handle, or a
    /// group that kept changing).
    #[error(transparent)]
    Policy(PolicyError),
    /// The message is in the local outbox but the server has not
    /// acknowledged it: it goes out by itself on the next connection
    /// (de-duplicated by the server), so it must not be sent again.
    #[error("the message is saved and will be sent the next time sotto connects ({0}); do not send it again")]
    Queued(Box<SessionError>),
}

impl From<PolicyError> for SessionError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Core(e) => Self::Core(e),
            // The same error a direct request would give, so exit codes
            // and retry decisions see the server's code.
            PolicyError::Server(body) => Self::Client(ClientError::Server(body)),
            other => Self::Policy(other),
        }
    }
}

impl SessionError {
    /// Whether the message this error is about waits in the outbox.
    pub fn is_queued(&self) -> bool {
        matches!(self, Self::Queued(_))
    }
}

/// Result of a session call.
pub type SessionResult<T> = Result<T, SessionError>;

/// Live deliveries get their receipt at most this often per conversation.
pub const RECEIPT_EVERY: Duration = Duration::from_secs(2);

/// A logged-in connection bound to a messenger.
pub struct Session<'m> {
    pub(crate) messenger: &'m Messenger,
    pub(crate) conn: Connection,
    synced: bool,
    /// One-to-one peers whose account this session has checked against
    /// the server (once per session: a removed and re-registered handle is
    /// someone else, and must not silently swallow messages).
    pub(crate) checked: std::collections::HashSet<String>,
    /// History another device handed over, imported during this session
    /// and not yet reported ([`Session::take_imported_history`]).
    pub(crate) imported: Option<sotto_core::archive::ArchiveSummary>,
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
            Err(e) if e.code() == Some(ErrorCode::DeviceRevoked) => {
                return Err(SessionError::Other(format!(
                    "this device was removed from @{}'s account on another device, so it can no longer send or receive; link it again with `sotto link` (a new profile)",
                    messenger.identity().handle
                )))
            }
            Err(e) if e.code() == Some(ErrorCode::AuthFailed) => {
                return Err(SessionError::Other(format!(
                    "the server at {address} does not know this device as @{}; was the profile registered on this server? (`sotto init`)",
                    messenger.identity().handle
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let mut session = Self::logged_in(messenger, conn);
        // Low, or from before a suite this app speaks (a profile made
        // before the post-quantum suite has only classical packages there).
        if (stock as usize) < KEY_PACKAGE_BATCH / 2 || messenger.key_package_suites_missing()? {
            session.upload_key_packages().await?;
        }
        session.flush_outbox().await?;
        session.update_keys_older_than(SELF_UPDATE_INTERVAL).await?;
        // Every device of this account in every conversation: a device
        // linked while this one was offline (or whose add was cut short)
        // is added now. Not fatal: the conversations work without it.
        let me = messenger.identity().handle.clone();
        if let Err(e) = session.add_missing_devices(&me).await {
            tracing::warn!(error = %e, "could not add this account's other devices to every conversation yet");
        }
        session.hand_over_owed_history().await;
        session.take_offered_history().await;
        // One-to-one conversations from before the post-quantum suite move
        // to it once every device in them can (at most one try an hour each).
        session.move_to_post_quantum().await;
        Ok(session)
    }

    /// A session over a connection that just logged in.
    pub(crate) fn logged_in(messenger: &'m Messenger, conn: Connection) -> Self {
        Self { messenger, conn, synced: false, checked: Default::default(), imported: None }
    }

    /// Registers a freshly created profile on its server.
    pub async fn register(messenger: &'m Messenger, invite: Option<String>) -> SessionResult<Self> {
        let address = ServerAddress::parse(&messenger.server()?).map_err(|e| SessionError::Other(e.to_string()))?;
        let mut conn = connect_with_retry(&address, 2).await?;
        let req = messenger.register_request(&conn.login_payload(), invite);
        conn.request(req).await?;
        messenger.mark_registered()?;
        let mut session = Self::logged_in(messenger, conn);
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

    /// Runs the sending policy over this connection: the policy decides
    /// every request; this only moves them and their answers.
    pub async fn run(&mut self, tasks: impl IntoIterator<Item = Task>) -> SessionResult<Vec<Event>> {
        let mut policy = Policy::new(tasks);
        let mut answer = None;
        loop {
            match policy.step(self.messenger, answer.take())? {
                Step::Request(request) => {
                    answer = Some(match self.conn.request(request).await {
                        Ok(response) => Ok(response),
                        Err(ClientError::Server(body)) => Err(body),
                        Err(e) => return Err(e.into()),
                    })
                }
                Step::Pause(pause) => {
                    tracing::debug!(?pause, "the server asked to slow down");
                    tokio::time::sleep(pause).await;
                }
                Step::Done(events) => return Ok(events),
            }
        }
    }

    /// Posts one outbox item (re-encrypting or re-committing if the epoch
    /// moved on).
    pub async fn post_item(&mut self, item: OutboxItem) -> SessionResult<()> {
        self.run([Task::Post(item)]).await.map(drop)
    }

    pub(crate) async fn upload_key_packages(&mut self) -> SessionResult<()> {
        let req = self.messenger.key_package_upload(KEY_PACKAGE_BATCH)?;
        self.conn.request(req).await?;
        self.messenger.key_package_suites_published()?;
        Ok(())
    }

    /// Re-sends everything the server has not acknowledged, catching up and
    /// re-encrypting (or re-committing) where the epoch moved on.
    pub async fn flush_outbox(&mut self) -> SessionResult<()> {
        self.queue_owed_profiles();
        self.run([Task::Flush]).await.map(drop)
    }

    /// This person's profile into conversations that lack its newest
    /// version (new ones, or after a change); the next flush sends it.
    fn queue_owed_profiles(&self) -> usize {
        self.messenger.queue_owed_profiles().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not queue this person's profile");
            0
        })
    }

    /// Issues an update commit in every group where this device's keys are
    /// older than `max_age`.
    pub async fn update_keys_older_than(&mut self, max_age: Duration) -> SessionResult<()> {
        self.run([Task::UpdateKeysOlderThan(max_age)]).await.map(drop)
    }

    /// Rejoins every group this device fell out of step with.
    pub async fn repair(&mut self) -> SessionResult<()> {
        self.run([Task::Repair]).await.map(drop)
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
                        events.extend(self.run([Task::Batch(std::mem::take(&mut batch))]).await?);
                    }
                }
                Push::SyncDone => {
                    events.extend(self.run([Task::Batch(std::mem::take(&mut batch))]).await?);
                    // Conversations joined meanwhile get this person's profile.
                    self.queue_owed_profiles();
                    events.extend(self.run([Task::Flush, Task::Repair]).await?);
                    self.take_offered_history().await;
                    self.tell_retention().await;
                    events.extend(self.ask_notices().await);
                    return Ok(events);
                }
                other => {
                    // Keep order: what came before (a welcome's group may
                    // follow) is processed first.
                    let tasks = [Task::Batch(std::mem::take(&mut batch)), Task::Push(other)];
                    events.extend(self.run(tasks).await?);
                }
            }
        }
    }

    /// The operator's notices this device has not had, and from now on new
    /// ones pushed on this connection (servers that say they have them).
    /// Nothing here is worth failing a sync for: a notice missed now comes
    /// at the next connection.
    async fn ask_notices(&mut self) -> Vec<Event> {
        if !self.conn.hello().notices {
            return vec![];
        }
        let after = self.messenger.last_notice_id().unwrap_or(0);
        match self.conn.request(Request::Notices { after }).await {
            Ok(Response::Notices { notices }) => self.messenger.receive_notices(notices).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not keep the operator's notices");
                vec![]
            }),
            Ok(other) => {
                tracing::debug!(?other, "unexpected answer to notices");
                vec![]
            }
            Err(e) => {
                tracing::debug!(error = %e, "no notices this time");
                vec![]
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
            let Some(push) = self.conn.next_push_within(left).await? else {
                // Quiet: what arrived a moment ago gets its receipt now.
                if self.queue_due_receipts() > 0 {
                    return self.run([Task::Flush]).await;
                }
                return Ok(vec![]);
            };
            let mut events = self.run([Task::Push(push), Task::Flush, Task::Repair]).await?;
            if self.queue_owed_profiles() + self.queue_due_receipts() > 0 {
                events.extend(self.run([Task::Flush]).await?);
            }
            self.take_offered_history().await;
            self.tell_retention().await;
            if !events.is_empty() {
                return Ok(events);
            }
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
        let classical = !offers_post_quantum(&invitee);
        let commit = self.messenger.start_direct(invitee)?;
        self.post_item(commit).await?;
        if classical {
            self.messenger.note_classical(&conversation, &[handle.to_owned()])?;
        }
        Ok(())
    }

    /// Creates the group `#name` with these people.
    pub async fn create_group(&mut self, name: &str, handles: &[String]) -> SessionResult<()> {
        sotto_core::validate_group_name(name)?;
        let mut invitees = Vec::new();
        for h in handles {
            invitees.push(self.claim(h).await?);
        }
        // One suite for everyone: when someone's app has only the classical
        // one, the others' packages are claimed again for it.
        let classical: Vec<String> =
            invitees.iter().filter(|i| !offers_post_quantum(i)).map(|i| i.handle.clone()).collect();
        if !classical.is_empty() {
            let old = sotto_core::suite::wire(sotto_core::suite::CLASSICAL);
            for invitee in invitees.iter_mut().filter(|i| offers_post_quantum(i)) {
                *invitee = self.claim_for(&invitee.handle.clone(), old).await?;
            }
        }
        let commit = self.messenger.create_group(name, invitees)?;
        self.post_item(commit).await?;
        if !classical.is_empty() {
            self.messenger.note_classical(&format!("#{name}"), &classical)?;
        }
        Ok(())
    }

    /// Adds people to a group (with packages of the group's suite).
    pub async fn add_to_group(&mut self, conversation: &str, handles: &[String]) -> SessionResult<()> {
        let group_id = self
            .messenger
            .conversation_group(conversation)?
            .ok_or_else(|| SessionError::Other(format!("there is no conversation {conversation} here")))?;
        let suite = sotto_core::suite::wire(self.messenger.group_suite(&group_id)?);
        let mut invitees = Vec::new();
        for h in handles {
            invitees.push(self.claim_for(h, suite).await?);
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
        // A group that moved leaves its old group behind too.
        for group_id in std::iter::once(group_id).chain(self.messenger.close_predecessors(conversation)?) {
            match self.conn.request(Request::Leave { group_id }).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(ErrorCode::NotMember) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
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
                    Err(SessionError::Core(CoreError::NotAMember | CoreError::NobodyElse)) => {
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
                // A device of theirs missing from our conversations (linked
                // since) is added before this message goes out.
                if let Err(e) = self.add_devices_of(&info).await {
                    tracing::warn!(handle, error = %e, "could not add a new device of theirs yet");
                }
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

    /// Puts a text into the outbox (one transaction with its pending
    /// history row), starting the one-to-one conversation if needed and
    /// checking the peer first; nothing is posted yet. Front ends show the
    /// pending message, then [`Session::flush_outbox`].
    pub async fn queue_text(&mut self, conversation: &str, text: &str) -> SessionResult<OutboxItem> {
        self.queue_message(conversation, text, None).await
    }

    /// [`Session::queue_text`], answering the message `reply_to` (hex id)
    /// when given.
    pub async fn queue_message(
        &mut self,
        conversation: &str,
        text: &str,
        reply_to: Option<&str>,
    ) -> SessionResult<OutboxItem> {
        if let Some(handle) = conversation.strip_prefix('@') {
            if self.messenger.conversation_group(conversation)?.is_some() {
                self.check_peer(handle).await?;
            }
            self.ensure_direct(handle).await?;
        } else if let Some(group_id) = self.messenger.conversation_group(conversation)? {
            self.add_members_missing_devices(&group_id).await;
        } else {
            return Err(SessionError::Other(format!("no conversation {conversation}; see `sotto groups`")));
        }
        Ok(match reply_to {
            Some(id) => self.messenger.prepare_reply(conversation, text, id)?,
            None => self.messenger.prepare_text(conversation, text)?,
        })
    }

    /// Sends a text to a conversation (`@handle` starts one if needed) and
    /// returns once the server acknowledged it. It leaves behind anything
    /// written before it (the whole outbox goes, in order).
    pub async fn send_text(&mut self, conversation: &str, text: &str) -> SessionResult<()> {
        self.send_message(conversation, text, None).await
    }

    /// [`Session::send_text`], answering `reply_to` (hex id) when given.
    pub async fn send_message(&mut self, conversation: &str, text: &str, reply_to: Option<&str>) -> SessionResult<()> {
        self.queue_message(conversation, text, reply_to).await?;
        self.flush_outbox().await.map_err(|e| SessionError::Queued(Box::new(e)))
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.conn.close().await;
    }
}
