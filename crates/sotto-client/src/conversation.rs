//! What the conversation features ask of a session: receipts for live
//! deliveries, roles in named groups, the disappearing timer told to the
//! server, typing indicators.

use sotto_proto::Request;

use crate::session::{Session, SessionError, SessionResult, RECEIPT_EVERY};

impl Session<'_> {
    /// Receipts for live deliveries, one per conversation every
    /// [`RECEIPT_EVERY`] at most.
    pub(crate) fn queue_due_receipts(&self) -> usize {
        self.messenger.queue_due_receipts(RECEIPT_EVERY.as_millis() as i64).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not queue receipts");
            0
        })
    }

    /// Sends the receipts still owed for live deliveries (before closing).
    pub async fn send_due_receipts(&mut self) -> SessionResult<()> {
        if self.messenger.queue_due_receipts(0)? > 0 {
            self.flush_outbox().await?;
        }
        Ok(())
    }

    /// Makes a member of a named group an admin, or a member again. The
    /// server (which enforces roles) decides; then the members are told.
    pub async fn set_role(&mut self, conversation: &str, handle: &str, admin: bool) -> SessionResult<()> {
        let group_id = self.group_id_of(conversation)?;
        let request = Request::SetRole { group_id, handle: handle.to_owned(), admin };
        self.conn.request(request).await?;
        self.messenger.change_roles(conversation, sotto_core::RoleChange::Admin(handle.to_owned(), admin))?;
        self.flush_outbox().await
    }

    /// Lets every member of a named group add people, or only admins.
    pub async fn set_members_can_add(&mut self, conversation: &str, yes: bool) -> SessionResult<()> {
        let group_id = self.group_id_of(conversation)?;
        self.conn.request(Request::SetGroupPolicy { group_id, members_can_add: yes }).await?;
        self.messenger.change_roles(conversation, sotto_core::RoleChange::MembersCanAdd(yes))?;
        self.flush_outbox().await
    }

    fn group_id_of(&self, conversation: &str) -> SessionResult<Vec<u8>> {
        self.messenger
            .conversation_group(conversation)?
            .ok_or_else(|| SessionError::Other(format!("no conversation {conversation}; see `sotto groups`")))
    }

    /// Tells the server the disappearing timers it has not heard of (it
    /// then keeps those groups' entries no longer than the timer). Not
    /// fatal: it is told at the next chance.
    pub async fn tell_retention(&mut self) {
        let Ok(requests) = self.messenger.retention_requests() else { return };
        for request in requests {
            let Request::SetRetention { group_id, .. } = &request else { continue };
            let group_id = group_id.clone();
            match self.conn.request(request).await {
                Ok(_) => {
                    let _ = self.messenger.retention_told(&group_id);
                }
                Err(e) => tracing::debug!(error = %e, "the server was not told a disappearing timer yet"),
            }
        }
    }

    /// Tells the conversation's other connected devices that this person
    /// is typing (or stopped). Transient: nothing is stored or retried; the
    /// server passes on at most one per second per conversation.
    pub async fn send_typing(&mut self, conversation: &str, typing: bool) -> SessionResult<()> {
        if let Some(request) = self.messenger.typing_request(conversation, typing)? {
            self.conn.request(request).await?;
        }
        Ok(())
    }
}
