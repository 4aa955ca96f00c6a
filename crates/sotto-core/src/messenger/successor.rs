//! Moving a one-to-one conversation made before the post-quantum suite
//! onto it. MLS cannot change a group's suite, so the conversation gets a
//! successor: a new X-Wing group with the same people and devices, under the
//! same conversation name. History is kept per conversation, so it reads as
//! one; the new group's id is random (starting with 0), so it sorts before
//! the old one's (starting with 1) and both sides take it as the
//! conversation's group at once (`conversation_group`). The old group stays
//! open, so whatever was already on its way in it still arrives.
//!
//! One side moves: the person whose handle sorts first, once every device
//! of both (but this one) has post-quantum packages on the server; tried at
//! most once an hour.

#[allow(unused_imports)]
use super::*;

/// How long after a try that could not move a conversation (or group) the
/// next may claim packages again (a claim of someone else's packages
/// counts against a budget of 10 an hour per person).
const RETRY_MS: i64 = 60 * 60 * 1000;

/// A classical one-to-one conversation this device may move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveCandidate {
    /// `@handle`.
    pub conversation: String,
    /// Its classical group.
    pub group_id: Vec<u8>,
    /// The other person.
    pub peer: String,
    /// Their devices in the group: each must come to the new one.
    pub peer_devices: Vec<u32>,
    /// This account's other devices in the group.
    pub own_devices: Vec<u32>,
}

impl Messenger {
    /// The classical one-to-one conversations this device should move now.
    pub fn conversations_to_move(&self) -> CoreResult<Vec<MoveCandidate>> {
        let rows: Vec<(Vec<u8>, String)> = {
            let mut stmt = self.conn.prepare(
                // Post-quantum groups have ids starting with 0 (see
                // `new_group_id`): skipped here, so opening a session does not
                // load the state of every conversation that needs nothing.
                "SELECT group_id, conversation FROM groups
                 WHERE active=1 AND request_from IS NULL AND conversation LIKE '@%'
                   AND substr(group_id, 1, 1) <> x'00'",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for (group_id, conversation) in rows {
            let peer = conversation[1..].to_owned();
            if self.group_kind(&group_id) != GroupKind::Direct
                || self.conversation_group(&conversation)?.as_deref() != Some(group_id.as_slice())
                || self.identity.handle >= peer
                || self.is_blocked(&peer)?
            {
                continue;
            }
            let Some(group) = self.still_to_move(&group_id)? else { continue };
            let members = Self::member_handles(&group);
            let devices_of = |h: &str| -> Vec<u32> {
                let mut d: Vec<u32> = members.iter().filter(|(_, c)| c.handle == h).map(|(_, c)| c.device_id).collect();
                d.sort();
                d
            };
            let peer_devices = devices_of(&peer);
            if peer_devices.is_empty() {
                continue;
            }
            let own_devices =
                devices_of(&self.identity.handle).into_iter().filter(|d| *d != self.identity.device_id).collect();
            out.push(MoveCandidate { conversation, group_id, peer, peer_devices, own_devices });
        }
        Ok(out)
    }

    /// Whether `group` (post-quantum, just joined) takes over a classical
    /// group of the same conversation: the other side moved it.
    pub(crate) fn succeeds_classical(&self, conversation: &str, group_id: &[u8], group: &MlsGroup) -> CoreResult<bool> {
        if !crate::suite::is_post_quantum(group.ciphersuite()) {
            return Ok(false);
        }
        let others: Vec<Vec<u8>> = {
            let mut stmt =
                self.conn.prepare("SELECT group_id FROM groups WHERE conversation=? AND group_id<>? AND active=1")?;
            let rows = stmt.query_map(params![conversation, group_id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        Ok(others.iter().any(|g| self.load_group(g).is_ok_and(|old| !crate::suite::is_post_quantum(old.ciphersuite()))))
    }

    /// The state of a classical group (one-to-one or named) to move now:
    /// `None` when it is post-quantum already, no longer active, or a move
    /// was tried within the last [`RETRY_MS`].
    pub(super) fn still_to_move(&self, group_id: &[u8]) -> CoreResult<Option<MlsGroup>> {
        let tried = self.setting(&tried_key(group_id))?.and_then(|v| v.try_into().ok()).map(i64::from_be_bytes);
        if tried.is_some_and(|t| self.now() - t < RETRY_MS) {
            return Ok(None);
        }
        let group = self.load_group(group_id)?;
        Ok((!crate::suite::is_post_quantum(group.ciphersuite()) && group.is_active()).then_some(group))
    }

    /// Records a try at moving a conversation or group (so the next waits
    /// an hour).
    pub fn note_move_tried(&self, group_id: &[u8]) -> CoreResult<()> {
        self.set_setting(&tried_key(group_id), &self.now().to_be_bytes())
    }

    /// Starts the successor of a classical one-to-one conversation with the
    /// post-quantum packages claimed for every device in it (the peer's and
    /// this account's others). Refuses when a device of the old group has
    /// no post-quantum package: it would be left out.
    pub fn start_successor(&self, candidate: &MoveCandidate, invitees: Vec<Invitee>) -> CoreResult<PendingCommit> {
        let xwing = sotto_proto::suites::SUITE_XWING;
        let covered = |handle: &str, wanted: &[u32]| {
            let mut got: Vec<u32> = invitees
                .iter()
                .filter(|i| i.handle == handle)
                .flat_map(|i| &i.packages)
                .filter(|p| sotto_proto::suites::key_package_suite(&p.package) == Some(xwing))
                .map(|p| p.device.device_id)
                .collect();
            got.sort();
            got.dedup();
            wanted.iter().all(|d| got.contains(d))
        };
        if !covered(&candidate.peer, &candidate.peer_devices) || !covered(&self.identity.handle, &candidate.own_devices)
        {
            return Err(CoreError::Invalid(format!(
                "not every device in {} offers post-quantum keys yet",
                candidate.conversation
            )));
        }
        let item = self.start_group(GroupKind::Direct, &candidate.conversation, invitees)?;
        self.insert_system(&candidate.conversation, &item.group_id, 0, MOVED_NOTE)?;
        Ok(item)
    }
}

/// What both sides see when a conversation moved.
pub(crate) const MOVED_NOTE: &str =
    "This conversation now uses post-quantum encryption (X-Wing: ML-KEM-768 with X25519). Everything before stays here.";

fn tried_key(group_id: &[u8]) -> String {
    format!("pq_move_tried:{}", hex::encode(group_id))
}
