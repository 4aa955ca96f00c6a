//! What a conversation is made of, for `sotto info`: its MLS suite (and so
//! whether it is post-quantum), epoch, and the member devices.

#[allow(unused_imports)]
use super::*;

/// One member device of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberDevice {
    /// The account.
    pub handle: String,
    /// The device's number within the account.
    pub device_id: u32,
}

/// A conversation's cryptographic state, as this device holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConversationInfo {
    /// `@handle` or `#group`.
    pub conversation: String,
    /// "direct" or "group".
    pub kind: &'static str,
    /// The MLS ciphersuite, as a person reads it.
    pub suite: String,
    /// Its number (RFC 9420 registry; 0x004D is X-Wing).
    pub suite_id: u16,
    /// Whether the key exchange resists a future quantum computer.
    pub post_quantum: bool,
    /// The MLS epoch (how many commits the group has seen).
    pub epoch: u64,
    /// Every device in the group, this one included.
    pub devices: Vec<MemberDevice>,
}

impl Messenger {
    /// The conversation's suite, epoch and member devices.
    pub fn conversation_info(&self, conversation: &str) -> CoreResult<ConversationInfo> {
        let group_id = self
            .conversation_group(conversation)?
            .ok_or_else(|| CoreError::NotFound(format!("no conversation {conversation} here")))?;
        let group = self.load_group(&group_id)?;
        let suite = group.ciphersuite();
        let mut devices: Vec<MemberDevice> = Self::member_handles(&group)
            .into_iter()
            .map(|(_, c)| MemberDevice { handle: c.handle, device_id: c.device_id })
            .collect();
        devices.sort_by(|a, b| (&a.handle, a.device_id).cmp(&(&b.handle, b.device_id)));
        Ok(ConversationInfo {
            conversation: conversation.to_owned(),
            kind: match self.group_kind(&group_id) {
                GroupKind::Group => "group",
                GroupKind::Direct => "direct",
                GroupKind::Own => "own",
            },
            suite: crate::suite::describe(suite),
            suite_id: crate::suite::wire(suite),
            post_quantum: crate::suite::is_post_quantum(suite),
            epoch: group.epoch().as_u64(),
            devices,
        })
    }

    /// Whether the conversation's key exchange is post-quantum (`None`
    /// when there is no such conversation or its state is missing).
    pub fn is_post_quantum(&self, conversation: &str) -> Option<bool> {
        let group_id = self.conversation_group(conversation).ok()??;
        Some(crate::suite::is_post_quantum(self.load_group(&group_id).ok()?.ciphersuite()))
    }
}
