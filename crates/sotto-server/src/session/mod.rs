//! One WebSocket connection: hello, authentication within the deadline,
//! then requests, pushes and liveness. The only code that owns the socket.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use rand::RngCore;
use sotto_proto::{DeviceRef, ErrorBody, ErrorCode, Hello, Push, Request, Response, ServerMessage, PROTOCOL_VERSION};
use tokio::time::{interval, timeout_at, Instant, MissedTickBehavior};

use crate::budget::Budget;
use crate::relay::{Relay, Submitted};

mod frames;

use frames::{
    classify, close_too_large, feed_counted, feed_frame, flush, goodbye, malformed_error, respond, send, send_counted,
    Gone, Incoming, NO_COUNTER,
};

/// A queued request's id and answer.
type Answer<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Result<Response, ErrorBody>)> + Send + 'a>>;

/// Most appends one connection may have in flight; beyond, the server stops
/// reading from it until some are answered (backpressure).
const MAX_INFLIGHT: usize = 256;

/// Malformed frames tolerated before the connection is closed.
const MAX_MALFORMED: u32 = 3;

/// Serves one WebSocket until it closes. The socket comes boxed: an async
/// function's argument is stored in its future more than once (rustc does
/// not overlap a moved argument with its local copy), and every idle
/// connection keeps this future.
pub async fn serve(
    mut socket: Box<WebSocket>,
    relay: Arc<Relay>,
    remote: std::net::SocketAddr,
    admission: Option<crate::admission::Admission>,
) {
    let mut challenge = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        server_id: relay.server_id.clone(),
        challenge: challenge.to_vec(),
        invite_only: !relay.config.open_registration,
        max_blob_bytes: relay.config.max_blob_bytes,
        notices: true,
    };
    // Boxed: the handshake's futures are freed once it is over, so they do
    // not stay part of the session future every idle connection keeps.
    let me = Box::pin(async {
        send(&mut socket, &ServerMessage::Hello(hello)).await.ok()?;
        // Until login, the server may close this connection to make room
        // for a newer one (see admission::Unauthenticated).
        let evicted = async {
            match &admission {
                Some(a) => a.evicted().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            me = authenticate(&mut socket, &relay, &challenge) => me,
            _ = evicted => None,
        }
    })
    .await;
    let Some(me) = me else { return };
    if let Some(a) = &admission {
        a.authenticated();
    }
    tracing::debug!(device = %me, "logged in");
    let _ = Session {
        relay: &relay,
        me,
        synced: false,
        sent_upto: HashMap::new(),
        welcome_upto: 0,
        notices_upto: None,
        remote,
        budget: Budget::new(&relay.config),
        last_heard: Instant::now(),
        malformed: 0,
    }
    .run(&mut socket)
    .await;
}

async fn authenticate(socket: &mut WebSocket, relay: &Relay, challenge: &[u8]) -> Option<DeviceRef> {
    let deadline = Instant::now() + relay.config.auth_timeout;
    let mut malformed = 0;
    loop {
        let Ok(msg) = timeout_at(deadline, socket.recv()).await else {
            goodbye(socket, ErrorBody::with_message(ErrorCode::NotAuthenticated, "authentication timed out")).await;
            return None;
        };
        match classify(msg) {
            Incoming::Closed => return None,
            Incoming::TooLarge => {
                close_too_large(socket).await;
                return None;
            }
            Incoming::Other => {}
            Incoming::Malformed(e) => {
                malformed += 1;
                if malformed >= MAX_MALFORMED {
                    goodbye(socket, malformed_error(&e)).await;
                    return None;
                }
                respond(socket, 0, Err(malformed_error(&e))).await.ok()?;
            }
            Incoming::Request(
                id,
                req @ (Request::Register { .. } | Request::Login { .. } | Request::EnrollDevice { .. }),
            ) => match relay.authenticate(challenge, req).await {
                Ok((me, response)) => {
                    respond(socket, id, Ok(response)).await.ok()?;
                    return Some(me);
                }
                Err(e) => respond(socket, id, Err(e)).await.ok()?,
            },
            // A device waiting to be linked has no account yet: it may
            // only offer its link package (within this same deadline).
            Incoming::Request(id, Request::LinkOffer { key_package }) => {
                respond(socket, id, relay.links.offer(key_package)).await.ok()?
            }
            Incoming::Request(id, _) => {
                respond(socket, id, Err(ErrorBody::new(ErrorCode::NotAuthenticated))).await.ok()?
            }
        }
    }
}

/// State of a logged-in connection.
struct Session<'a> {
    relay: &'a Relay,
    me: DeviceRef,
    /// Whether the client asked for delivery; before that nothing is pushed.
    synced: bool,
    /// Per group, the highest sequence number pushed on this connection.
    sent_upto: HashMap<Vec<u8>, u64>,
    /// Highest welcome id pushed on this connection.
    welcome_upto: u64,
    /// Highest operator notice sent on this connection; `None` until the
    /// client asked for notices (then new ones are pushed).
    notices_upto: Option<u64>,
    /// The client's address.
    remote: std::net::SocketAddr,
    /// The connection's request and byte budgets.
    budget: Budget,
    /// When the peer last sent anything.
    last_heard: Instant,
    /// Malformed frames so far.
    malformed: u32,
}

/// What woke a logged-in session.
enum Event {
    /// The oldest append in flight was answered.
    Answered(u64, Result<Response, ErrorBody>),
    /// The server is shutting down.
    Shutdown,
    /// A frame from the peer (or the end of its stream).
    Received(Option<Result<Message, axum::Error>>),
    /// Something was left in the connection's mailbox.
    Woken,
    /// Time to check the peer is still there.
    Ping,
}

/// Whether the session goes on after an event.
enum Flow {
    Continue,
    End,
}

impl<'a> Session<'a> {
    async fn run(&mut self, socket: &mut WebSocket) -> Result<(), Gone> {
        let registration = self.relay.hub.register(self.me.clone(), self.remote);
        let info = registration.info.clone();
        let mut shutdown = self.relay.shutdown.subscribe();
        let mut ping = interval(self.relay.config.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Sends and commits in flight, answered in order as they become
        // durable; the client need not wait for one before the next. (Not
        // a field: `&self` is held across awaits, and these are not Sync.)
        let mut inflight: FuturesOrdered<Answer<'a>> = FuturesOrdered::new();
        loop {
            let event = tokio::select! {
                Some((id, result)) = inflight.next(), if !inflight.is_empty() => Event::Answered(id, result),
                _ = shutdown.changed() => Event::Shutdown,
                msg = socket.recv(), if inflight.len() < MAX_INFLIGHT => Event::Received(msg),
                _ = registration.mailbox.wait() => Event::Woken,
                _ = ping.tick() => Event::Ping,
            };
            // The work an event starts is boxed: an idle connection keeps
            // only the future that waits above (the largest part of its
            // memory was this future, sized for the deepest request).
            match Box::pin(self.on_event(socket, &info, &registration.mailbox, &mut inflight, event)).await? {
                Flow::Continue => {}
                Flow::End => return Ok(()),
            }
        }
    }

    /// Does what `event` asks: answers, pushes, a request, a ping.
    async fn on_event(
        &mut self,
        socket: &mut WebSocket,
        info: &crate::hub::ConnInfo,
        mailbox: &crate::hub::Mailbox,
        inflight: &mut FuturesOrdered<Answer<'a>>,
        event: Event,
    ) -> Result<Flow, Gone> {
        let relay: &'a Relay = self.relay;
        match event {
            Event::Answered(id, result) => {
                self.queue_answer(socket, info, id, result).await?;
                // Everything else already durable goes in the same flush.
                while let Some(Some((id, result))) = inflight.next().now_or_never() {
                    self.queue_answer(socket, info, id, result).await?;
                }
                flush(socket, relay.config.write_timeout).await?;
            }
            Event::Shutdown => {
                // Requests already taken are finished and answered first.
                while let Some((id, result)) = inflight.next().await {
                    self.answer(socket, info, id, result).await?;
                }
                goodbye(
                    socket,
                    ErrorBody::with_message(ErrorCode::Internal, "the server is shutting down; reconnect later"),
                )
                .await;
                return Ok(Flow::End);
            }
            Event::Received(msg) => {
                self.last_heard = Instant::now();
                if let Some(Ok(m)) = &msg {
                    let n = match m {
                        Message::Binary(b) => b.len(),
                        Message::Text(t) => t.len(),
                        _ => 0,
                    } as u64;
                    info.bytes_in.fetch_add(n, Ordering::Relaxed);
                    relay.metrics.bytes_in.fetch_add(n, Ordering::Relaxed);
                }
                let over = match &msg {
                    Some(Ok(Message::Binary(b))) => !self.budget.take(b.len()),
                    _ => false,
                };
                if over {
                    relay.metrics.rejected(ErrorCode::RateLimited);
                    let id = match classify(msg) {
                        Incoming::Request(id, _) => id,
                        _ => 0,
                    };
                    respond(socket, id, Err(ErrorBody::new(ErrorCode::RateLimited))).await?;
                    return Ok(Flow::Continue);
                }
                match classify(msg) {
                    Incoming::Closed => return Ok(Flow::End),
                    Incoming::TooLarge => {
                        close_too_large(socket).await;
                        return Ok(Flow::End);
                    }
                    Incoming::Other => {}
                    Incoming::Malformed(e) => {
                        self.malformed += 1;
                        if self.malformed >= MAX_MALFORMED {
                            goodbye(socket, malformed_error(&e)).await;
                            return Ok(Flow::End);
                        }
                        respond(socket, 0, Err(malformed_error(&e))).await?;
                    }
                    Incoming::Request(id, request) => match relay.submit(&self.me, request) {
                        Submitted::Queued(answer) => inflight.push_back(Box::pin(async move { (id, answer.await) })),
                        Submitted::Other(request) => {
                            // Anything else waits for the appends before it,
                            // so a client always sees its own messages.
                            while let Some((pid, result)) = inflight.next().await {
                                self.answer(socket, info, pid, result).await?;
                            }
                            if let Request::Notices { after } = request {
                                let notices = self
                                    .store(move |s| s.notices_after(after, sotto_proto::limits::MAX_NOTICES))
                                    .await?;
                                self.notices_upto = Some(notices.iter().map(|n| n.id).max().unwrap_or(after));
                                respond(socket, id, Ok(Response::Notices { notices })).await?;
                            } else if request == Request::Sync {
                                respond(socket, id, Ok(Response::Done)).await?;
                                self.synced = true;
                                self.drain_everything(socket).await?;
                                self.push(socket, &ServerMessage::Push(Push::SyncDone)).await?;
                            } else {
                                let result = relay.handle(&self.me, request).await;
                                self.answer(socket, info, id, result).await?;
                            }
                        }
                    },
                }
            }
            Event::Woken => {
                let pending = mailbox.take();
                if let Some(reason) = pending.kick {
                    goodbye(socket, reason).await;
                    return Ok(Flow::End);
                }
                if let (true, Some(after)) = (pending.notices, self.notices_upto) {
                    self.push_notices(socket, after).await?;
                }
                if let Some(remaining) = pending.key_packages_low {
                    self.push(socket, &ServerMessage::Push(Push::KeyPackagesLow { remaining })).await?;
                }
                if self.synced {
                    if pending.inbox {
                        self.drain_welcomes(socket).await?;
                    }
                    for (group, fresh) in pending.groups {
                        if !self.push_fresh(socket, &group, fresh).await? {
                            self.drain_group(socket, &group).await?;
                        }
                    }
                    if !pending.signals.is_empty() {
                        let limit = relay.config.write_timeout;
                        for frame in pending.signals {
                            feed_frame(socket, frame, &relay.metrics.bytes_out, limit).await?;
                        }
                        flush(socket, limit).await?;
                    }
                }
            }
            Event::Ping => {
                if self.last_heard.elapsed() > relay.config.idle_timeout {
                    tracing::debug!(device = %self.me, "peer silent past the idle timeout; closing");
                    return Ok(Flow::End);
                }
                socket.send(Message::Ping(Vec::new().into())).await.map_err(|_| Gone)?;
            }
        }
        Ok(Flow::Continue)
    }

    /// Pushes a frame with this relay's write deadline.
    async fn push(&self, socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), Gone> {
        send_counted(socket, msg, &NO_COUNTER, &self.relay.metrics.bytes_out, self.relay.config.write_timeout).await
    }

    async fn answer(
        &self,
        socket: &mut WebSocket,
        info: &crate::hub::ConnInfo,
        id: u64,
        result: Result<Response, ErrorBody>,
    ) -> Result<(), Gone> {
        self.queue_answer(socket, info, id, result).await?;
        flush(socket, self.relay.config.write_timeout).await
    }

    /// An answer, queued but not flushed.
    async fn queue_answer(
        &self,
        socket: &mut WebSocket,
        info: &crate::hub::ConnInfo,
        id: u64,
        result: Result<Response, ErrorBody>,
    ) -> Result<(), Gone> {
        if let Err(e) = &result {
            self.relay.metrics.rejected(e.code);
        }
        let out = ServerMessage::Response { id, result };
        feed_counted(socket, &out, &info.bytes_out, &self.relay.metrics.bytes_out, self.relay.config.write_timeout)
            .await
    }

    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn crate::store::Store) -> crate::store::StoreResult<T> + Send + 'static,
    ) -> Result<T, Gone> {
        let store = self.relay.store.clone();
        match tokio::task::spawn_blocking(move || f(&*store)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if matches!(e, crate::store::StoreError::Backend(_)) {
                    tracing::error!(error = %e, "store failure while delivering");
                }
                Err(Gone)
            }
            Err(_) => Err(Gone),
        }
    }

    async fn drain_everything(&mut self, socket: &mut WebSocket) -> Result<(), Gone> {
        // Memberships before welcomes: a membership and its welcome are
        // written in one step, so every group read here has its welcome
        // pushed before its first entry (read the other way round, a device
        // added in between got a group's messages before the welcome that
        // lets it read them, and dropped them).
        let me = self.me.clone();
        let memberships = self.store(move |s| s.memberships(&me)).await?;
        self.drain_welcomes(socket).await?;
        for m in memberships {
            let upto = self.sent_upto.entry(m.group_id.clone()).or_insert(0);
            *upto = (*upto).max(m.cursor);
            self.drain_group(socket, &m.group_id).await?;
        }
        Ok(())
    }

    /// Pushes the operator's notices this connection has not had.
    async fn push_notices(&mut self, socket: &mut WebSocket, after: u64) -> Result<(), Gone> {
        let notices = self.store(move |s| s.notices_after(after, sotto_proto::limits::MAX_NOTICES)).await?;
        for n in notices {
            self.notices_upto = Some(n.id);
            self.push(socket, &ServerMessage::Push(Push::Notice(n))).await?;
        }
        Ok(())
    }

    async fn drain_welcomes(&mut self, socket: &mut WebSocket) -> Result<(), Gone> {
        let me = self.me.clone();
        let welcomes = self.store(move |s| s.welcomes(&me)).await?;
        let upto = self.welcome_upto;
        for w in welcomes.into_iter().filter(|w| w.id > upto) {
            self.welcome_upto = w.id;
            let push = Push::Welcome { welcome_id: w.id, group_id: w.group_id, sender: w.sender, welcome: w.welcome };
            self.push(socket, &ServerMessage::Push(push)).await?;
        }
        Ok(())
    }

    /// Pushes entries carried by a wake-up when they continue exactly where
    /// this connection is in the group; false when the store must be read
    /// instead (a gap, a group this connection has not read yet, or entries
    /// that were not carried).
    async fn push_fresh(
        &mut self,
        socket: &mut WebSocket,
        group_id: &[u8],
        fresh: Option<Vec<crate::hub::Fresh>>,
    ) -> Result<bool, Gone> {
        let (Some(mut fresh), Some(&upto)) = (fresh, self.sent_upto.get(group_id)) else { return Ok(false) };
        // Wake-ups come from the tasks of different senders, so entries may
        // arrive out of order; ones already pushed (read from the store
        // meanwhile) are skipped.
        fresh.sort_unstable_by_key(|f| f.seq);
        fresh.retain(|f| f.seq > upto);
        let contiguous = fresh.iter().enumerate().all(|(i, f)| f.seq == upto + 1 + i as u64);
        let Some(last) = fresh.last().map(|f| f.seq) else { return Ok(true) };
        if !contiguous {
            return Ok(false);
        }
        let limit = self.relay.config.write_timeout;
        for f in fresh {
            self.relay.metrics.messages_out.fetch_add(1, Ordering::Relaxed);
            feed_frame(socket, f.frame, &self.relay.metrics.bytes_out, limit).await?;
        }
        flush(socket, limit).await?;
        self.sent_upto.insert(group_id.to_vec(), last);
        Ok(true)
    }

    async fn drain_group(&mut self, socket: &mut WebSocket, group_id: &[u8]) -> Result<(), Gone> {
        loop {
            let after = self.sent_upto.get(group_id).copied().unwrap_or(0);
            let (me, gid) = (self.me.clone(), group_id.to_vec());
            let batch = match self.store(move |s| s.fetch(&gid, &me, after, sotto_proto::limits::MAX_FETCH)).await {
                Ok(b) => b,
                // Removed from the group since the wake-up: nothing to send.
                Err(Gone) => return Ok(()),
            };
            let Some(last) = batch.last().map(|d| d.seq) else { return Ok(()) };
            let limit = self.relay.config.write_timeout;
            let count = batch.len();
            for delivery in batch {
                self.relay.metrics.messages_out.fetch_add(1, Ordering::Relaxed);
                let push = ServerMessage::Push(Push::Deliver(delivery));
                feed_counted(socket, &push, &NO_COUNTER, &self.relay.metrics.bytes_out, limit).await?;
            }
            flush(socket, limit).await?;
            self.sent_upto.insert(group_id.to_vec(), last);
            // A short read was the end of the log when it was read: what
            // is appended after comes with its own wake-up (carried, or
            // read then), so a second read here would only find nothing.
            if (count as u32) < sotto_proto::limits::MAX_FETCH {
                return Ok(());
            }
        }
    }
}
