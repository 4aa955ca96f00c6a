//! Moving conversations from before the post-quantum suite onto it, when
//! this device is the one to do it (see `sotto-core`'s
//! `messenger/successor.rs` and `messenger/group_successor.rs`): claim
//! post-quantum packages for every device in the conversation, start the
//! successor group, carry the timer (and a group's roles) over.

use sotto_proto::Request;

use crate::{Session, SessionResult};

impl Session<'_> {
    /// Moves what can be moved now; returns how many conversations moved.
    /// A conversation that cannot move yet (someone's device has no
    /// post-quantum keys) is tried again an hour later. Never fatal: the
    /// conversations work as they are.
    pub async fn move_to_post_quantum(&mut self) -> usize {
        let candidates = match self.messenger().conversations_to_move() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the conversations to move to post-quantum encryption");
                return 0;
            }
        };
        let mut moved = self.move_groups().await;
        self.bring_along().await;
        for candidate in candidates {
            if let Err(e) = self.messenger().note_move_tried(&candidate.group_id) {
                tracing::warn!(error = %e, "could not record a move");
                continue;
            }
            match self.move_one(&candidate).await {
                Ok(()) => moved += 1,
                Err(e) => tracing::info!(
                    conversation = %candidate.conversation,
                    reason = %e,
                    "conversation stays on classical encryption for now"
                ),
            }
        }
        moved
    }

    async fn move_one(&mut self, candidate: &sotto_core::messenger::MoveCandidate) -> SessionResult<()> {
        let xwing = sotto_proto::suites::SUITE_XWING;
        let peer = self.claim_devices(&candidate.peer, Some(candidate.peer_devices.clone()), vec![xwing]).await?;
        let mut invitees = vec![peer];
        if !candidate.own_devices.is_empty() {
            let me = self.messenger().identity().handle.clone();
            invitees.push(self.claim_devices(&me, Some(candidate.own_devices.clone()), vec![xwing]).await?);
        }
        let timer = self.messenger().timer(&candidate.conversation)?;
        let commit = self.messenger().start_successor(candidate, invitees)?;
        self.post_item(commit).await?;
        if timer > 0 {
            let item = self.messenger().prepare_timer(&candidate.conversation, timer)?;
            self.post_item(item).await?;
        }
        Ok(())
    }

    /// Adds to moved groups' successors whoever was added to the old group
    /// while it moved. Never fatal: tried again at the next connection.
    async fn bring_along(&mut self) {
        let behind = match self.messenger().left_behind() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "could not check moved groups for people left behind");
                return;
            }
        };
        for (conversation, handles) in behind {
            let added = async {
                self.add_to_group(&conversation, &handles).await?;
                // They joined the old group after its `Moved`: they hear it now.
                let item = self.messenger().remind_moved(&conversation)?;
                self.post_item(item).await
            };
            if let Err(e) = added.await {
                tracing::info!(%conversation, reason = %e, "people added while the group moved wait for the next try");
            }
        }
    }

    /// Moves the named groups this device is the one to move.
    async fn move_groups(&mut self) -> usize {
        let moves = match self.messenger().groups_to_move() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the groups to move to post-quantum encryption");
                return 0;
            }
        };
        let mut moved = 0;
        for mv in moves {
            if let Err(e) = self.messenger().note_move_tried(&mv.group_id) {
                tracing::warn!(error = %e, "could not record a move");
                continue;
            }
            match self.move_group(&mv).await {
                Ok(()) => moved += 1,
                Err(e) => tracing::info!(
                    conversation = %mv.conversation,
                    reason = %e,
                    "group stays on classical encryption for now"
                ),
            }
        }
        moved
    }

    async fn move_group(&mut self, mv: &sotto_core::messenger::GroupMove) -> SessionResult<()> {
        let xwing = sotto_proto::suites::SUITE_XWING;
        let mut invitees = Vec::new();
        for (handle, devices) in &mv.devices {
            invitees.push(self.claim_devices(handle, Some(devices.clone()), vec![xwing]).await?);
        }
        let (commit, moved) = self.messenger().start_group_successor(mv, invitees)?;
        let successor = commit.group_id.clone();
        // The new group first, then the word in the old one: a member who
        // reads the `Moved` first finds the group it names soon after.
        self.post_item(commit).await?;
        self.post_item(moved).await?;
        let me = self.messenger().identity().handle.clone();
        for admin in mv.roles.admins.iter().filter(|a| **a != me) {
            let request = Request::SetRole { group_id: successor.clone(), handle: admin.clone(), admin: true };
            if let Err(e) = self.conn.request(request).await {
                tracing::warn!(%admin, error = %e, "the server did not take an admin of a moved group");
            }
        }
        if !mv.roles.members_can_add {
            let request = Request::SetGroupPolicy { group_id: successor.clone(), members_can_add: false };
            if let Err(e) = self.conn.request(request).await {
                tracing::warn!(error = %e, "the server did not take a moved group's policy");
            }
        }
        // The name goes out on its own: the policy announces it after every
        // commit that adds people.
        self.tell_retention().await;
        Ok(())
    }
}
