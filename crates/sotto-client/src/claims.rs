//! Claiming someone's KeyPackages, with the suites this app speaks: the
//! server hands out packages of the first suite every claimed device has,
//! and a new conversation takes the suite its packages are for.

use sotto_core::Invitee;
use sotto_proto::{ErrorCode, Request, Response};

use crate::{Session, SessionError, SessionResult};

impl Session<'_> {
    /// Claims KeyPackages for every device of `handle`, post-quantum when
    /// all of them offer it.
    pub async fn claim(&mut self, handle: &str) -> SessionResult<Invitee> {
        self.claim_devices(handle, None, sotto_core::suite::wanted()).await
    }

    /// Claims KeyPackages for every device of `handle` that fit a group of
    /// `suite`.
    pub async fn claim_for(&mut self, handle: &str, suite: u16) -> SessionResult<Invitee> {
        self.claim_devices(handle, None, vec![suite]).await
    }

    /// Claims KeyPackages for some devices of `handle` (all with `None`) of
    /// one of `suites` (most wanted first).
    pub async fn claim_devices(
        &mut self,
        handle: &str,
        devices: Option<Vec<u32>>,
        suites: Vec<u16>,
    ) -> SessionResult<Invitee> {
        match self.conn.request(Request::ClaimKeyPackages { handle: handle.to_owned(), devices, suites }).await {
            Ok(Response::KeyPackages { account_key, packages, .. }) => {
                Ok(Invitee { handle: handle.to_owned(), account_key, packages })
            }
            Ok(other) => Err(SessionError::Other(format!("unexpected answer: {other:?}"))),
            Err(e) if e.code() == Some(ErrorCode::UnknownHandle) => {
                Err(SessionError::Other(format!("there is no @{handle} on this server; check the spelling")))
            }
            Err(e) if e.code() == Some(ErrorCode::NoKeyPackages) => Err(SessionError::Other(format!(
                "@{handle} cannot be reached yet: their device has no key packages left; it refills when they come online"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether every package claimed for someone is of the post-quantum suite.
pub(crate) fn offers_post_quantum(invitee: &Invitee) -> bool {
    invitee
        .packages
        .iter()
        .all(|p| sotto_proto::suites::key_package_suite(&p.package) == Some(sotto_proto::suites::SUITE_XWING))
}
