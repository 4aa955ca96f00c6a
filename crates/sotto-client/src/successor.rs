//! Moving one-to-one conversations from before the post-quantum suite onto
//! it, when this device is the one to do it (see `sotto-core`'s
//! `messenger/successor.rs`): claim post-quantum packages for every device
//! in the conversation, start the successor group, carry the timer over.

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
        let mut moved = 0;
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
}
