//! The client's sending and catching-up policy, without I/O.
//!
//! Every decision about what to post next lives here: send the outbox in
//! the order it was encrypted, create a group on the server before its
//! first commit, catch up and re-encrypt (or rebuild a commit) when the
//! server says the epoch is stale, rejoin from the newest GroupInfo, publish
//! GroupInfo after our commits, announce a group's name to new members, slow
//! down when the server asks, acknowledge only what is stored. A driver
//! (`sotto-client::Session` over a WebSocket, the deterministic simulation
//! over an in-process relay, a unit test with scripted answers) only moves
//! requests and answers:
//!
//! ```text
//! let mut policy = Policy::new([Task::Flush]);
//! let mut answer = None;
//! loop {
//!     match policy.step(&messenger, answer.take())? {
//!         Step::Request(r) => answer = Some(send_and_wait(r)),
//!         Step::Pause(d) => sleep(d),
//!         Step::Done(events) => break events,
//!     }
//! }
//! ```
//!
//! Nothing here reads a clock or a socket, so a driver that replays the
//! same answers replays the same decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use sotto_proto::limits::{KEY_PACKAGES_LOW_WATER, MAX_FETCH};
use sotto_proto::{Delivery, ErrorBody, ErrorCode, MessageKind, Push, Request, Response};

use crate::error::CoreError;
use crate::messenger::{Event, GroupKind, Intent, Messenger, OutboxItem};

/// KeyPackages uploaded when the stock is low.
pub const KEY_PACKAGE_BATCH: usize = 50;
/// Tries for a message whose epoch keeps going stale under it.
const STALE_RETRIES: usize = 8;
/// When the server says `rate_limited`, the first pause before sending
/// again; it doubles up to [`RATE_LIMIT_MAX_PAUSE`], after which the error
/// goes to the caller (the message stays in the outbox either way).
const RATE_LIMIT_FIRST_PAUSE: Duration = Duration::from_millis(250);
const RATE_LIMIT_MAX_PAUSE: Duration = Duration::from_secs(8);
/// Rounds of a flush: posting may process deliveries that queue more (a
/// departure queues a removal), so a flush goes until the outbox is empty,
/// but not forever.
const FLUSH_ROUNDS: usize = 16;

mod answers;

/// The server's answer to the last request: a response or its error.
pub type Answer = Result<Response, ErrorBody>;

/// What the driver does next.
#[derive(Debug)]
pub enum Step {
    /// Send this request and pass its answer to the next [`Policy::step`].
    Request(Request),
    /// Wait this long (the server asked to slow down), then call
    /// [`Policy::step`] with no answer.
    Pause(Duration),
    /// Finished; this is what the person should see.
    Done(Vec<Event>),
}

/// Something the driver asks the policy to do.
#[derive(Debug, Clone)]
pub enum Task {
    /// Post everything in the outbox, oldest first, until it is empty.
    Flush,
    /// Post one item; if it had to be re-encrypted behind older ones, flush.
    Post(OutboxItem),
    /// Rejoin every group this device fell out of step with.
    Repair,
    /// Refresh this device's keys in every group where they are older.
    UpdateKeysOlderThan(Duration),
    /// Refresh this device's keys in one group (after catching up).
    UpdateKeys(Vec<u8>),
    /// Read and process a group's log from the local cursor.
    CatchUp(Vec<u8>),
    /// Process something the server pushed.
    Push(Push),
    /// Process a run of deliveries in one local transaction, then
    /// acknowledge the highest sequence number of each group once.
    Batch(Vec<Delivery>),
}

/// Why the policy stopped.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The local state.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The server refused a request in a way the policy does not handle.
    #[error("{0}")]
    Server(ErrorBody),
    /// The server answered with something that does not fit the request.
    #[error("the server gave an answer that does not fit a {0} request; it may run another version of sotto")]
    Unexpected(&'static str),
    /// The group changed under a message more often than it is retried.
    #[error("the conversation kept changing while sending; try again")]
    KeptChanging,
    /// The driver passed an answer when none was asked for, or none when one was.
    #[error("the client's driver lost track of its requests")]
    Driver,
}

/// One piece of work on the policy's stack.
#[derive(Debug)]
enum Job {
    Task(Task),
    /// Post `item` (attempt `tries`); `flush` when a re-encryption sent it
    /// to the back of the outbox (it must go after the items before it).
    Post {
        item: OutboxItem,
        tries: usize,
        flush: bool,
    },
    /// A flush round: post the outbox as it is now, then go again.
    FlushRound {
        left: usize,
    },
    /// After catching up on a stale item: make it again on the new epoch.
    Remake {
        item: OutboxItem,
        tries: usize,
        flush: bool,
        /// The epoch the server said the group is at.
        server_epoch: Option<u64>,
    },
    /// Tell a group's new members its name.
    Announce {
        group_id: Vec<u8>,
    },
    /// Commit a key update in a group (its log is read by now).
    UpdateNow {
        group_id: Vec<u8>,
    },
    /// Rejoin one group from its newest GroupInfo.
    Rejoin {
        group_id: Vec<u8>,
        tries: usize,
        flush: bool,
    },
    /// A request whose answer changes nothing; these error codes are fine.
    Send {
        request: Request,
        tolerate: Tolerate,
    },
}

/// What the outstanding request was for.
#[derive(Debug)]
enum Awaiting {
    Nothing,
    Created {
        item: OutboxItem,
        tries: usize,
        flush: bool,
    },
    Posted {
        item: OutboxItem,
        tries: usize,
        flush: bool,
        pause: Duration,
    },
    /// Slowing down before posting `item` again.
    Paused {
        item: OutboxItem,
        tries: usize,
        flush: bool,
        pause: Duration,
    },
    GroupInfoPut,
    Fetched {
        group_id: Vec<u8>,
    },
    CaughtUpAck {
        group_id: Vec<u8>,
    },
    GroupInfo {
        group_id: Vec<u8>,
        tries: usize,
        flush: bool,
    },
    Sent {
        tolerate: Tolerate,
    },
}

/// Codes that mean "this device is not (or no longer) in that group": an
/// acknowledgement then has nothing to do.
const GONE: &[ErrorCode] = &[ErrorCode::NotMember, ErrorCode::UnknownGroup];

/// Codes an acknowledgement may meet without failing what the person
/// asked for: the device is gone from the group, or the server could not
/// record it just now (a full disk). What was not acknowledged is simply
/// delivered again and recognised as a duplicate, so nothing is lost.
const ACK_TOLERATES: &[ErrorCode] = &[ErrorCode::NotMember, ErrorCode::UnknownGroup, ErrorCode::Internal];

/// Which refusals of a request whose answer changes nothing are fine.
#[derive(Debug, Clone, Copy)]
enum Tolerate {
    /// None: a refusal stops the policy.
    Nothing,
    /// These codes.
    Codes(&'static [ErrorCode]),
    /// Any refusal (a courtesy such as leaving a blocked person's group).
    Any,
}

impl Tolerate {
    fn allows(self, code: ErrorCode) -> bool {
        match self {
            Self::Nothing => false,
            Self::Codes(codes) => codes.contains(&code),
            Self::Any => true,
        }
    }
}

/// The sans-I/O machine; see the module documentation.
#[derive(Debug)]
pub struct Policy {
    /// Work still to do, the next on top.
    jobs: Vec<Job>,
    awaiting: Awaiting,
    events: Vec<Event>,
}

impl Policy {
    /// A policy that does these tasks, in order.
    pub fn new(tasks: impl IntoIterator<Item = Task>) -> Self {
        let mut jobs: Vec<Job> = tasks.into_iter().map(Job::Task).collect();
        jobs.reverse();
        Self { jobs, awaiting: Awaiting::Nothing, events: Vec::new() }
    }

    /// Takes the answer to the last request (`None` at the start and after
    /// a pause) and says what to do next.
    pub fn step(&mut self, m: &Messenger, answer: Option<Answer>) -> Result<Step, PolicyError> {
        let awaiting = std::mem::replace(&mut self.awaiting, Awaiting::Nothing);
        if let Some(step) = self.on_answer(m, awaiting, answer)? {
            return Ok(step);
        }
        while let Some(job) = self.jobs.pop() {
            if let Some(step) = self.start(m, job)? {
                return Ok(step);
            }
        }
        Ok(Step::Done(std::mem::take(&mut self.events)))
    }

    fn request(&mut self, request: Request, awaiting: Awaiting) -> Option<Step> {
        self.awaiting = awaiting;
        Some(Step::Request(request))
    }

    fn push(&mut self, job: Job) {
        self.jobs.push(job);
    }

    /// Starts a job: returns the request it makes, or `None` when it is
    /// done without one (it may have pushed more jobs).
    fn start(&mut self, m: &Messenger, job: Job) -> Result<Option<Step>, PolicyError> {
        match job {
            Job::Task(task) => self.start_task(m, task),
            Job::Post { item, tries, flush } => {
                if tries >= STALE_RETRIES {
                    return Err(PolicyError::KeptChanging);
                }
                Ok(self.post(m, item, tries, flush))
            }
            Job::FlushRound { left } => {
                let items = m.outbox()?;
                if items.is_empty() || left == 0 {
                    return Ok(None);
                }
                // One re-encrypted to the back of the outbox goes out in the
                // next round, after the rest of this one: everything leaves
                // in the order it was encrypted.
                self.push(Job::FlushRound { left: left - 1 });
                for item in items.into_iter().rev() {
                    self.push(Job::Post { item, tries: 0, flush: false });
                }
                Ok(None)
            }
            Job::Remake { item, tries, flush, server_epoch } => {
                if let Some(server) = server_epoch {
                    if m.in_group(&item.group_id)? && m.epoch_state(&item.group_id)?.0 < server {
                        // Everything there is to read is read, and this
                        // device is still behind the server's epoch: it is
                        // out of step (its commits are gone with the log,
                        // or it was added anew). Remaking on its epoch
                        // would be stale for ever; rejoin instead (queued
                        // texts are re-encrypted after it).
                        self.push(Job::Rejoin { group_id: item.group_id, tries: 0, flush: true });
                        return Ok(None);
                    }
                }
                let next = match item.kind {
                    MessageKind::Commit => m.redo_commit(&item.client_id)?,
                    MessageKind::Application => {
                        // Re-encrypted behind older items: they go first.
                        if m.reencrypt(&item.client_id)?.is_some() && flush {
                            self.push(Job::Task(Task::Flush));
                        }
                        return Ok(None);
                    }
                };
                if let Some(next) = next {
                    self.push(Job::Post { item: next, tries: tries + 1, flush });
                }
                Ok(None)
            }
            Job::Announce { group_id } => {
                let conversation = m.conversation_of(&group_id)?;
                // The name goes in the outbox behind any text encrypted
                // before it, and the whole outbox goes in order: posting it
                // alone would put a later generation ahead of earlier ones.
                m.announce(&conversation)?;
                self.push(Job::FlushRound { left: FLUSH_ROUNDS });
                Ok(None)
            }
            Job::UpdateNow { group_id } => {
                if !m.in_group(&group_id)? {
                    // Removed while catching up: no keys of ours there.
                    return Ok(None);
                }
                if let Some(item) = m.update_keys(&group_id)? {
                    self.push(Job::Post { item, tries: 0, flush: true });
                }
                Ok(None)
            }
            Job::Rejoin { group_id, tries, flush } => {
                if tries >= STALE_RETRIES {
                    return Err(PolicyError::KeptChanging);
                }
                let request = Request::GetGroupInfo { group_id: group_id.clone() };
                Ok(self.request(request, Awaiting::GroupInfo { group_id, tries, flush }))
            }
            Job::Send { request, tolerate } => Ok(self.request(request, Awaiting::Sent { tolerate })),
        }
    }

    fn start_task(&mut self, m: &Messenger, task: Task) -> Result<Option<Step>, PolicyError> {
        match task {
            Task::Flush => self.push(Job::FlushRound { left: FLUSH_ROUNDS }),
            Task::Post(item) => self.push(Job::Post { item, tries: 0, flush: true }),
            Task::Repair => {
                for group_id in m.broken_groups()?.into_iter().rev() {
                    self.push(Job::Rejoin { group_id, tries: 0, flush: true });
                }
            }
            Task::UpdateKeysOlderThan(max_age) => {
                for group_id in m.updates_due(max_age.as_millis() as i64)?.into_iter().rev() {
                    self.push(Job::Task(Task::UpdateKeys(group_id)));
                }
            }
            Task::UpdateKeys(group_id) => {
                // Catch up first, so the update is made on the newest epoch.
                self.push(Job::UpdateNow { group_id: group_id.clone() });
                return self.fetch(m, group_id);
            }
            Task::CatchUp(group_id) => return self.fetch(m, group_id),
            Task::Push(push) => self.on_push(m, push)?,
            Task::Batch(batch) => {
                if batch.is_empty() {
                    return Ok(None);
                }
                self.events.extend(m.handle_deliveries(&batch)?);
                let mut highest: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
                for d in &batch {
                    let e = highest.entry(d.group_id.clone()).or_default();
                    *e = (*e).max(d.seq);
                }
                for (group_id, seq) in highest.into_iter().rev() {
                    self.push(Job::Send {
                        request: Request::Ack { group_id, seq },
                        tolerate: Tolerate::Codes(ACK_TOLERATES),
                    });
                }
            }
        }
        Ok(None)
    }

    fn on_push(&mut self, m: &Messenger, push: Push) -> Result<(), PolicyError> {
        match push {
            Push::Welcome { welcome_id, group_id, welcome, sender } => {
                // A welcome whose acknowledgement the server could not
                // record comes again and is recognised as joined already.
                self.push(Job::Send {
                    request: Request::AckWelcome { welcome_id },
                    tolerate: Tolerate::Codes(&[ErrorCode::Internal]),
                });
                match m.handle_welcome_from(Some(&sender.handle), &group_id, &welcome) {
                    Ok(events) => {
                        // Joined, not held as a request: others may see
                        // this account's presence through it.
                        if events.iter().any(|e| matches!(e, Event::Joined { .. })) {
                            self.push(Job::Send {
                                request: Request::AcceptGroup { group_id: group_id.clone(), accepted: true },
                                tolerate: Tolerate::Any,
                            });
                        }
                        self.events.extend(events)
                    }
                    // Not joined, and not routed either: the server stops
                    // delivering it and showing presence.
                    Err(CoreError::Blocked(_)) => {
                        self.push(Job::Send { request: Request::Leave { group_id }, tolerate: Tolerate::Any });
                    }
                    // A welcome we cannot use stays unusable; say so and
                    // drop it rather than stall every later delivery.
                    Err(e) => self.events.push(Event::Warning {
                        conversation: None,
                        text: format!("could not join a conversation started by @{}: {e}", sender.handle),
                    }),
                }
            }
            Push::Deliver(d) => {
                self.events.extend(m.handle_delivery(&d)?);
                self.push(Job::Send {
                    request: Request::Ack { group_id: d.group_id, seq: d.seq },
                    tolerate: Tolerate::Codes(ACK_TOLERATES),
                });
            }
            Push::KeyPackagesLow { remaining } => {
                if (remaining as usize) < KEY_PACKAGES_LOW_WATER {
                    let request = m.key_package_upload(KEY_PACKAGE_BATCH)?;
                    self.push(Job::Send { request, tolerate: Tolerate::Nothing });
                }
            }
            Push::SyncDone => {}
            Push::Notice(notice) => self.events.extend(m.receive_notices(vec![notice])?),
            Push::Signal { group_id, sender, payload } => {
                self.events.extend(m.open_signal(&group_id, &sender, &payload));
            }
        }
        Ok(())
    }

    /// Posts an item, creating its group on the server first if needed.
    fn post(&mut self, m: &Messenger, item: OutboxItem, tries: usize, flush: bool) -> Option<Step> {
        if item.create_group {
            // The server enforces a named group's roles; it learns which
            // groups have them from this, not from the group's id.
            let roles = m.group_kind(&item.group_id) == GroupKind::Group;
            let request = Request::CreateGroup { group_id: item.group_id.clone(), roles };
            return self.request(request, Awaiting::Created { item, tries, flush });
        }
        let request = item.to_request();
        self.request(request, Awaiting::Posted { item, tries, flush, pause: RATE_LIMIT_FIRST_PAUSE })
    }

    fn fetch(&mut self, m: &Messenger, group_id: Vec<u8>) -> Result<Option<Step>, PolicyError> {
        if m.cursor(&group_id)?.is_some() && !m.in_group(&group_id)? {
            // Removed (or left) meanwhile: nothing more to read there.
            return Ok(None);
        }
        let after_seq = m.cursor(&group_id)?.unwrap_or(0);
        let request = Request::Fetch { group_id: group_id.clone(), after_seq, limit: MAX_FETCH };
        Ok(self.request(request, Awaiting::Fetched { group_id }))
    }
}

fn request_kind(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Commit => "commit",
        MessageKind::Application => "send",
    }
}
