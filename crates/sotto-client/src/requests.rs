//! Message requests over a session: accepting one (the server then shows
//! this account's presence through it), declining one (the server stops
//! routing it here), and withdrawing acceptance from a one-to-one when its
//! peer is blocked, which the blocked person does not see.

use sotto_proto::{ErrorCode, Request};

use crate::{Session, SessionResult};

impl Session<'_> {
    /// Accepts a message request on the server, then here (in that order:
    /// if the server cannot be told, nothing changes and the person can try
    /// again).
    pub async fn accept_request(&mut self, conversation: &str) -> SessionResult<()> {
        let (from, group_id) = self.messenger.request_group(conversation)?;
        self.set_accepted(group_id.clone(), true).await?;
        self.messenger.clear_request(&group_id, &from)?;
        // This account's other devices accept it too when they read this
        // (sealed by MLS, from this account: the server cannot forge it).
        // In the outbox, so a failure now only delays it.
        match self.messenger.accepted_notice(conversation) {
            Ok(_) => {
                if let Err(e) = self.flush_outbox().await {
                    tracing::warn!(error = %e, "the acceptance goes to this account's other devices later");
                }
            }
            Err(e) => tracing::warn!(error = %e, "this account's other devices were not told of the acceptance"),
        }
        // Own devices linked while it waited were kept out of it; now they
        // belong in it.
        let me = self.messenger.identity().handle.clone();
        if let Err(e) = self.add_missing_devices(&me).await {
            tracing::warn!(error = %e, "this account's other devices join the conversation at the next connection");
        }
        Ok(())
    }

    /// Declines a message request: its messages are deleted and the server
    /// routes nothing more of it to this device.
    pub async fn decline_request(&mut self, conversation: &str) -> SessionResult<()> {
        let group_id = self.messenger.decline_request(conversation)?;
        match self.conn.request(Request::Leave { group_id }).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::NotMember) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Tells the server whether this account accepts the one-to-one with
    /// `handle` (if there is one): blocking someone withdraws it, so they
    /// no longer see this account's presence, without the visible departure
    /// that leaving would be; unblocking gives it back.
    pub async fn accept_direct(&mut self, handle: &str, accepted: bool) -> SessionResult<bool> {
        let Some(group_id) = self.messenger.conversation_group(&format!("@{handle}"))? else { return Ok(false) };
        self.set_accepted(group_id, accepted).await?;
        Ok(true)
    }

    async fn set_accepted(&mut self, group_id: Vec<u8>, accepted: bool) -> SessionResult<()> {
        match self.conn.request(Request::AcceptGroup { group_id, accepted }).await {
            Ok(_) => Ok(()),
            // Already out of the group: there is nothing to show or hide.
            Err(e) if matches!(e.code(), Some(ErrorCode::NotMember | ErrorCode::UnknownGroup)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
