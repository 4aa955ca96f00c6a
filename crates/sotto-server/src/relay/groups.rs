//! Group requests other than appends: creating, reading the log,
//! acknowledging, GroupInfo, leaving, state.

#[allow(unused_imports)]
use super::*;

impl Relay {
    /// `CreateGroup`.
    pub(super) async fn create_group(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        roles: bool,
    ) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        check_group_id(&group_id)?;
        let (s2, me2) = (store.clone(), me.clone());
        let created = blocking_timed(&self.metrics, move || s2.groups_created(&me2)).await?;
        if created >= self.config.max_groups_per_device {
            return Err(ErrorBody::with_message(
                ErrorCode::LimitExceeded,
                format!("a device may create at most {} groups on this server", self.config.max_groups_per_device),
            ));
        }
        let me = me.clone();
        blocking_timed(&self.metrics, move || {
            store.create_group_with(&group_id, &me, roles || legacy_named(&group_id), now_ms())
        })
        .await?;
        Ok(Response::Done)
    }

    /// `Ack`.
    pub(super) async fn ack(&self, me: &DeviceRef, group_id: Vec<u8>, seq: u64) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let me = me.clone();
        blocking_timed(&self.metrics, move || store.ack(&group_id, &me, seq)).await?;
        Ok(Response::Done)
    }

    /// `AckWelcome`.
    pub(super) async fn ack_welcome(&self, me: &DeviceRef, welcome_id: u64) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let me = me.clone();
        let device = me.clone();
        let group = blocking_timed(&self.metrics, move || store.ack_welcome(&me, welcome_id)).await?;
        if let Some(group_id) = group {
            // Entries held back until the welcome was taken (a device added
            // again, see `fetch`) can go out now.
            self.hub.wake_group(std::slice::from_ref(&device), &group_id);
        }
        Ok(Response::Done)
    }

    /// `Fetch`.
    pub(super) async fn fetch(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        after_seq: u64,
        limit: u32,
    ) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let me = me.clone();
        let messages = blocking_timed(&self.metrics, move || store.fetch(&group_id, &me, after_seq, limit)).await?;
        Ok(Response::Messages { messages: within_frame(messages) })
    }

    /// `PutGroupInfo`.
    pub(super) async fn put_group_info(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        epoch: u64,
        group_info: Vec<u8>,
    ) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        check_group_id(&group_id)?;
        if group_info.len() > MAX_HANDSHAKE_BYTES {
            return Err(ErrorBody::new(ErrorCode::FrameTooLarge));
        }
        let me = me.clone();
        blocking_timed(&self.metrics, move || store.put_group_info(&group_id, &me, epoch, &group_info)).await?;
        Ok(Response::Done)
    }

    /// `GetGroupInfo`.
    pub(super) async fn get_group_info(&self, me: &DeviceRef, group_id: Vec<u8>) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let me = me.clone();
        match blocking_timed(&self.metrics, move || store.group_info(&group_id, &me)).await? {
            Some((epoch, group_info)) => Ok(Response::GroupInfo { epoch, group_info }),
            None => Err(ErrorBody::with_message(ErrorCode::UnknownGroup, "no group info stored for this group yet")),
        }
    }

    /// `Leave`.
    pub(super) async fn leave(&self, me: &DeviceRef, group_id: Vec<u8>) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        check_group_id(&group_id)?;
        let me = me.clone();
        blocking_timed(&self.metrics, move || store.leave(&group_id, &me)).await?;
        Ok(Response::Done)
    }

    /// `AcceptGroup`.
    pub(super) async fn accept_group(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        accepted: bool,
    ) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        check_group_id(&group_id)?;
        let me = me.clone();
        blocking_timed(&self.metrics, move || store.set_accepted(&group_id, &me, accepted)).await?;
        Ok(Response::Done)
    }

    /// `SetRole`.
    pub(super) async fn set_role(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        handle: String,
        admin: bool,
    ) -> Result<Response, ErrorBody> {
        check_group_id(&group_id)?;
        let (store, me) = (self.store.clone(), me.clone());
        blocking_timed(&self.metrics, move || store.set_role(&group_id, &me, &handle, admin)).await?;
        Ok(Response::Done)
    }

    /// `SetGroupPolicy`.
    pub(super) async fn set_group_policy(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        members_can_add: bool,
    ) -> Result<Response, ErrorBody> {
        check_group_id(&group_id)?;
        let (store, me) = (self.store.clone(), me.clone());
        blocking_timed(&self.metrics, move || store.set_group_policy(&group_id, &me, members_can_add)).await?;
        Ok(Response::Done)
    }

    /// `SetRetention`.
    pub(super) async fn set_retention(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        secs: u64,
    ) -> Result<Response, ErrorBody> {
        check_group_id(&group_id)?;
        // Never longer than the server's own retention.
        let ms = (secs > 0).then(|| (secs.saturating_mul(1000)).min(self.config.retention.as_millis() as u64) as i64);
        let (store, me) = (self.store.clone(), me.clone());
        blocking_timed(&self.metrics, move || store.set_retention(&group_id, &me, ms)).await?;
        Ok(Response::Done)
    }

    /// `GroupState`.
    pub(super) async fn group_state(&self, me: &DeviceRef, group_id: Vec<u8>) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let me = me.clone();
        let group = blocking_timed(&self.metrics, move || {
            let g = store.group(&group_id)?.ok_or(StoreError::UnknownGroup)?;
            if !g.members.contains(&me) {
                return Err(StoreError::NotMember);
            }
            Ok(g)
        })
        .await?;
        Ok(Response::Group {
            epoch: group.epoch,
            members: group.members,
            last_seq: group.last_seq,
            admins: group.admins,
            members_can_add: group.members_can_add,
        })
    }
}

/// A group id from an app before `CreateGroup` said whether the group has
/// roles: such apps marked a named group by a first byte of 2.
fn legacy_named(group_id: &[u8]) -> bool {
    group_id.first() == Some(&2)
}
