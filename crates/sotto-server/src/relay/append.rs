//! Appends to a group's log (commits and application messages): checked
//! here, queued to the store in order, members woken once durable.

#[allow(unused_imports)]
use super::*;

impl Relay {
    /// Queues a `Send` or `Commit` with the store and returns the future of
    /// its answer, which resolves once the append is durable. Any other
    /// request is given back. Queuing happens before this returns, so a
    /// session that submits a client's requests in order has them appended
    /// in that order, however many it keeps in flight.
    pub fn submit<'a>(&'a self, me: &DeviceRef, request: Request) -> Submitted<'a> {
        let ready = |r: Result<Response, ErrorBody>| Submitted::Queued(Box::pin(std::future::ready(r)));
        if let Err(e) = check_integers(&request) {
            return ready(Err(e));
        }
        let now = now_ms();
        let (group_id, added, ticket, (epoch, kind, payload)) = match request {
            Request::Commit { group_id, epoch, client_id, commit, welcome, added, removed } => {
                if let Err(e) = check_group_id(&group_id).and_then(|_| check_client_id(&client_id)) {
                    return ready(Err(e));
                }
                if commit.len() > MAX_HANDSHAKE_BYTES || welcome.as_ref().is_some_and(|w| w.len() > MAX_HANDSHAKE_BYTES)
                {
                    return ready(Err(ErrorBody::new(ErrorCode::FrameTooLarge)));
                }
                if added.len() + removed.len() > MAX_MEMBERSHIP_CHANGE {
                    return ready(Err(bad("too many membership changes in one commit")));
                }
                let mut targets: Vec<&str> =
                    added.iter().map(|d| d.handle.as_str()).filter(|h| *h != me.handle).collect();
                targets.sort_unstable();
                targets.dedup();
                let when = std::time::Instant::now();
                if let Some(t) = targets.iter().find(|t| !self.adds.allow(&me.handle, t, when)) {
                    return ready(Err(ErrorBody::with_message(
                        ErrorCode::RateLimited,
                        format!("@{t} was added to groups too often this hour; try again later"),
                    )));
                }
                if !added.is_empty() && welcome.is_none() {
                    return ready(Err(bad("a commit that adds devices must carry a welcome")));
                }
                let ticket = self.store.append_queued(
                    &NewMessage {
                        group_id: &group_id,
                        sender: me,
                        epoch,
                        kind: MessageKind::Commit,
                        client_id: &client_id,
                        payload: &commit,
                        added: &added,
                        removed: &removed,
                        welcome: welcome.as_deref().map(|v| &v[..]),
                    },
                    now,
                );
                (group_id, added, ticket, (epoch, MessageKind::Commit, commit))
            }
            Request::Send { group_id, epoch, client_id, payload } => {
                if let Err(e) = check_group_id(&group_id).and_then(|_| check_client_id(&client_id)) {
                    return ready(Err(e));
                }
                if payload.len() > MAX_PAYLOAD_BYTES {
                    return ready(Err(ErrorBody::new(ErrorCode::FrameTooLarge)));
                }
                let ticket = self.store.append_queued(
                    &NewMessage {
                        group_id: &group_id,
                        sender: me,
                        epoch,
                        kind: MessageKind::Application,
                        client_id: &client_id,
                        payload: &payload,
                        added: &[],
                        removed: &[],
                        welcome: None,
                    },
                    now,
                );
                (group_id, Vec::new(), ticket, (epoch, MessageKind::Application, payload))
            }
            other => return Submitted::Other(other),
        };
        let started = std::time::Instant::now();
        let sender = me.clone();
        Submitted::Queued(Box::pin(async move {
            let appended = match ticket.await {
                Ok(r) => r.map_err(ErrorBody::from)?,
                Err(_) => return Err(ErrorBody::new(ErrorCode::Internal)),
            };
            self.metrics.store_time(started.elapsed());
            if !appended.duplicate {
                self.metrics.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let delivery = Delivery {
                    group_id: group_id.clone(),
                    seq: appended.seq,
                    epoch,
                    sender: sender.clone(),
                    kind,
                    payload,
                    stored_at: now,
                };
                // A new member's welcome first: it must reach the device
                // before any entry of the group it opens.
                if !added.is_empty() {
                    self.hub.wake_inbox(&added);
                }
                // The entry exactly as the store would give it back, encoded
                // once for every recipient.
                let size = delivery.payload.len() + codec::FRAME_OVERHEAD;
                match codec::encode_with_capacity(&ServerMessage::Push(Push::Deliver(delivery)), size) {
                    Ok(frame) => {
                        let fresh = Fresh { seq: appended.seq, frame: frame.into() };
                        if added.is_empty() {
                            self.hub.deliver(&appended.members, &group_id, &fresh);
                        } else {
                            // New members read from after the commit that
                            // adds them: they look in the store.
                            let (new, old): (Vec<DeviceRef>, Vec<DeviceRef>) =
                                appended.members.iter().cloned().partition(|m| added.contains(m));
                            self.hub.deliver(&old, &group_id, &fresh);
                            self.hub.wake_group(&new, &group_id);
                        }
                    }
                    Err(_) => self.hub.wake_group(&appended.members, &group_id),
                }
            }
            Ok(Response::Appended { seq: appended.seq, epoch: appended.epoch, duplicate: appended.duplicate })
        }))
    }
}
