//! The rule both stores apply to a commit in a named group with roles.

use sotto_proto::DeviceRef;

use super::{NewMessage, StoreError, StoreResult};

/// In a group with roles, a commit from someone who is not an admin may
/// not remove another person who is still in the group, nor add someone
/// new unless the group lets members add. Devices of the committer's own
/// account, and new devices of people already in the group, are theirs to
/// add or remove; people who left are no longer routed, so removing their
/// leftover devices is anyone's.
pub(crate) fn commit_allowed(
    m: &NewMessage<'_>,
    members: &[DeviceRef],
    admin: bool,
    members_can_add: bool,
) -> StoreResult<()> {
    if admin {
        return Ok(());
    }
    if m.removed.iter().any(|d| d.handle != m.sender.handle && members.contains(d)) {
        return Err(StoreError::NotAdmin("only an admin of this group can remove people from it".into()));
    }
    let someone_new =
        m.added.iter().any(|d| d.handle != m.sender.handle && !members.iter().any(|x| x.handle == d.handle));
    if someone_new && !members_can_add {
        return Err(StoreError::NotAdmin("only an admin of this group can add people to it".into()));
    }
    Ok(())
}
