//! What the policy makes of each answer: accepted, stale (catch up and
//! remake), slow down, a GroupInfo to rejoin from, a page of the log.

#[allow(unused_imports)]
use super::*;

impl Policy {
    /// Handles the answer to the outstanding request; returns the next step
    /// when the answer itself calls for one.
    pub(super) fn on_answer(
        &mut self,
        m: &Messenger,
        awaiting: Awaiting,
        answer: Option<Answer>,
    ) -> Result<Option<Step>, PolicyError> {
        let answer = match (awaiting, answer) {
            (Awaiting::Nothing, None) => return Ok(None),
            (Awaiting::Paused { item, tries, flush, pause }, None) => {
                let request = item.to_request();
                return Ok(self.request(request, Awaiting::Posted { item, tries, flush, pause }));
            }
            (Awaiting::Nothing | Awaiting::Paused { .. }, Some(_)) => return Err(PolicyError::Driver),
            (_, None) => return Err(PolicyError::Driver),
            (awaiting, Some(answer)) => (awaiting, answer),
        };
        match answer {
            (Awaiting::Created { item, tries, flush }, result) => {
                match result {
                    Ok(_) => {}
                    Err(e) if e.code == ErrorCode::GroupExists => {}
                    Err(e) => return Err(PolicyError::Server(e)),
                }
                let request = item.to_request();
                Ok(self.request(request, Awaiting::Posted { item, tries, flush, pause: RATE_LIMIT_FIRST_PAUSE }))
            }
            (Awaiting::Posted { item, tries, flush, pause }, result) => match result {
                Ok(Response::Appended { seq, .. }) => {
                    m.accepted(&item.client_id, seq)?;
                    if item.kind == MessageKind::Commit {
                        if matches!(item.intent, Some(Intent::Add(_)))
                            && m.group_kind(&item.group_id) == GroupKind::Group
                        {
                            // New members learn the group's name from this.
                            self.push(Job::Announce { group_id: item.group_id.clone() });
                        }
                        // So a member that loses step can rejoin.
                        let (epoch, group_info) = m.export_group_info(&item.group_id)?;
                        let request = Request::PutGroupInfo { group_id: item.group_id, epoch, group_info };
                        return Ok(self.request(request, Awaiting::GroupInfoPut));
                    }
                    Ok(None)
                }
                Ok(_) => Err(PolicyError::Unexpected(request_kind(item.kind))),
                Err(e) if e.code == ErrorCode::StaleEpoch => {
                    if item.intent == Some(Intent::Rejoin) {
                        // The group moved on while we rejoined: start from
                        // its newest GroupInfo again.
                        self.push(Job::Rejoin { group_id: item.group_id, tries: tries + 1, flush });
                        return Ok(None);
                    }
                    // Someone else changed the group first: catch up, then
                    // make the message (or commit) again on the new epoch.
                    let group_id = item.group_id.clone();
                    self.push(Job::Remake { item, tries, flush, server_epoch: e.current_epoch });
                    self.fetch(m, group_id)
                }
                // Removed from the group while this was on its way (by
                // another member, or by another of our own devices): the
                // log holds the removal. Reading it empties the group's
                // outbox (its messages are marked not sent); the remake
                // then finds nothing left to do.
                Err(e) if e.code == ErrorCode::NotMember && item.intent != Some(Intent::Rejoin) => {
                    let group_id = item.group_id.clone();
                    self.push(Job::Remake { item, tries, flush, server_epoch: None });
                    self.fetch(m, group_id)
                }
                // The group's roles do not allow it (the server enforces
                // them): the change is dropped, never retried, and the
                // person is told. Nothing else waits on it.
                Err(e) if e.code == ErrorCode::NotAdmin => {
                    m.drop_refused(&item.client_id)?;
                    let conversation = m.conversation_of(&item.group_id).ok();
                    self.events.push(Event::Warning { conversation, text: e.message.clone() });
                    Ok(None)
                }
                // A long outbox (or large messages) can exceed what the
                // server takes from one connection per second.
                Err(e) if e.code == ErrorCode::RateLimited && pause <= RATE_LIMIT_MAX_PAUSE => {
                    self.awaiting = Awaiting::Paused { item, tries, flush, pause: pause * 2 };
                    Ok(Some(Step::Pause(pause)))
                }
                Err(e) => Err(PolicyError::Server(e)),
            },
            (Awaiting::GroupInfoPut, result) => match result {
                // Someone committed meanwhile; they publish theirs.
                Ok(_) => Ok(None),
                Err(e) if e.code == ErrorCode::StaleEpoch => Ok(None),
                // Removed from the group just after our commit (another
                // member's removal landed next): nothing to publish; the
                // removal reaches us with the log.
                Err(e) if e.code == ErrorCode::NotMember => Ok(None),
                Err(e) => Err(PolicyError::Server(e)),
            },
            (Awaiting::Fetched { group_id }, result) => match result {
                Ok(Response::Messages { messages }) => {
                    let Some(last) = messages.last().map(|d| d.seq) else { return Ok(None) };
                    self.events.extend(m.handle_deliveries(&messages)?);
                    let request = Request::Ack { group_id: group_id.clone(), seq: last };
                    Ok(self.request(request, Awaiting::CaughtUpAck { group_id }))
                }
                Ok(_) => Err(PolicyError::Unexpected("fetch")),
                // This device learnt of its removal from an earlier read.
                Err(e) if GONE.contains(&e.code) && !m.in_group(&group_id)? => Ok(None),
                Err(e) => Err(PolicyError::Server(e)),
            },
            (Awaiting::CaughtUpAck { group_id }, result) => match result {
                // More may follow: read on from the new cursor.
                Ok(_) => self.fetch(m, group_id),
                // Not recorded (a full disk): read on all the same; what
                // comes again is recognised as read.
                Err(e) if e.code == ErrorCode::Internal => self.fetch(m, group_id),
                Err(e) => Err(PolicyError::Server(e)),
            },
            (Awaiting::GroupInfo { group_id, tries, flush }, result) => match result {
                Ok(Response::GroupInfo { epoch, group_info }) => {
                    let item = m.rejoin(&group_id, epoch, &group_info)?;
                    self.push(Job::Post { item, tries, flush });
                    Ok(None)
                }
                Ok(_) => Err(PolicyError::Unexpected("group info")),
                // Nothing to rejoin from.
                Err(e) if GONE.contains(&e.code) => Ok(None),
                Err(e) => Err(PolicyError::Server(e)),
            },
            (Awaiting::Sent { tolerate }, result) => match result {
                Ok(_) => Ok(None),
                Err(e) if tolerate.allows(e.code) => Ok(None),
                Err(e) => Err(PolicyError::Server(e)),
            },
            (Awaiting::Nothing | Awaiting::Paused { .. }, _) => Err(PolicyError::Driver),
        }
    }
}
