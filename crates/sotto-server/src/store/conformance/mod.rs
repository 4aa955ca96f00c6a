//! The behaviour every [`Store`] backend must show, one public function per
//! property. A backend's tests write one named test per property with
//! [`store_conformance!`](crate::store_conformance), and check
//! [`durability`] across reopening.

use std::collections::HashSet;
use std::sync::Arc;

use sotto_proto::{DeviceInfo, DeviceRef, MessageKind};

use super::*;

mod devices;
mod group_log;
mod membership;
pub use devices::*;
pub use group_log::*;
pub use membership::*;

const NOW: i64 = 1_700_000_000_000;

pub(crate) fn dev(h: &str) -> DeviceRef {
    DeviceRef { handle: h.into(), device_id: 1 }
}

pub(crate) fn info() -> DeviceInfo {
    DeviceInfo { device_id: 1, device_key: vec![7; 32], certificate: vec![8; 64] }
}

pub(crate) fn register(s: &impl Store, h: &str) {
    s.register(h, &[1; 32], &info(), None, false, NOW).unwrap();
}

pub(crate) fn msg<'a>(
    g: &'a [u8],
    sender: &'a DeviceRef,
    epoch: u64,
    cid: &'a [u8],
    kind: MessageKind,
) -> NewMessage<'a> {
    NewMessage {
        group_id: g,
        sender,
        epoch,
        kind,
        client_id: cid,
        payload: b"ciphertext",
        added: &[],
        removed: &[],
        welcome: None,
    }
}

/// Writes one named `#[test]` per property of the suite for a backend, so
/// a failure names the property. `$make` is an expression that gives a
/// fresh, empty store; it is evaluated once in each test:
///
/// ```ignore
/// mod in_memory {
///     sotto_server::store_conformance!(SqliteStore::open_in_memory().unwrap());
/// }
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        #[test]
        fn registration_and_invites() {
            $crate::store::conformance::registration_and_invites(&$make);
        }
        #[test]
        fn key_packages_are_claimed_once() {
            $crate::store::conformance::key_packages_are_claimed_once(std::sync::Arc::new($make));
        }
        #[test]
        fn concurrent_appends() {
            $crate::store::conformance::concurrent_appends(std::sync::Arc::new($make));
        }
        #[test]
        fn group_log_rules() {
            $crate::store::conformance::group_log_rules(&$make);
        }
        #[test]
        fn ack_then_delete() {
            $crate::store::conformance::ack_then_delete(&$make);
        }
        #[test]
        fn removed_member_reads_nothing() {
            $crate::store::conformance::removed_member_reads_nothing(&$make);
        }
        #[test]
        fn presence_follows_acceptance() {
            $crate::store::conformance::presence_follows_acceptance(&$make);
        }
        #[test]
        fn leaving() {
            $crate::store::conformance::leaving(&$make);
        }
        #[test]
        fn who_is_woken_follows_membership() {
            $crate::store::conformance::who_is_woken_follows_membership(&$make);
        }
        #[test]
        fn blobs() {
            $crate::store::conformance::blobs(&$make);
        }
        #[test]
        fn one_copy_of_a_device_at_a_time() {
            $crate::store::conformance::one_copy_of_a_device_at_a_time(&$make);
        }
        #[test]
        fn operator_views() {
            $crate::store::conformance::operator_views(&$make);
        }
        #[test]
        fn retention() {
            $crate::store::conformance::retention(&$make);
        }
        #[test]
        fn roles_in_named_groups() {
            $crate::store::conformance::roles_in_named_groups(&$make);
        }
        #[test]
        fn group_retention() {
            $crate::store::conformance::group_retention(&$make);
        }
        #[test]
        fn welcome_ids_are_never_handed_out_twice() {
            $crate::store::conformance::welcome_ids_are_never_handed_out_twice(&$make);
        }
        #[test]
        fn a_fetch_waits_for_the_welcome_into_the_group() {
            $crate::store::conformance::a_fetch_waits_for_the_welcome_into_the_group(&$make);
        }
        #[test]
        fn operator_notices() {
            $crate::store::conformance::operator_notices(&$make);
        }
        #[test]
        fn key_packages_are_handed_out_by_suite() {
            $crate::store::conformance::key_packages_are_handed_out_by_suite(&$make);
        }
        #[test]
        fn devices_are_added_capped_and_revoked_for_good() {
            $crate::store::conformance::devices_are_added_capped_and_revoked_for_good(&$make);
        }
        #[test]
        fn retries_are_answered_with_the_first_result() {
            $crate::store::conformance::retries_are_answered_with_the_first_result(&$make);
        }
    };
    // A backend that may be missing on this machine: each test first asks
    // `$ready` (which says why it skips).
    ($make:expr, if $ready:expr) => {
        #[test]
        fn registration_and_invites() {
            if !$ready {
                return;
            }
            $crate::store::conformance::registration_and_invites(&$make);
        }
        #[test]
        fn key_packages_are_claimed_once() {
            if !$ready {
                return;
            }
            $crate::store::conformance::key_packages_are_claimed_once(std::sync::Arc::new($make));
        }
        #[test]
        fn concurrent_appends() {
            if !$ready {
                return;
            }
            $crate::store::conformance::concurrent_appends(std::sync::Arc::new($make));
        }
        #[test]
        fn group_log_rules() {
            if !$ready {
                return;
            }
            $crate::store::conformance::group_log_rules(&$make);
        }
        #[test]
        fn ack_then_delete() {
            if !$ready {
                return;
            }
            $crate::store::conformance::ack_then_delete(&$make);
        }
        #[test]
        fn removed_member_reads_nothing() {
            if !$ready {
                return;
            }
            $crate::store::conformance::removed_member_reads_nothing(&$make);
        }
        #[test]
        fn presence_follows_acceptance() {
            if !$ready {
                return;
            }
            $crate::store::conformance::presence_follows_acceptance(&$make);
        }
        #[test]
        fn leaving() {
            if !$ready {
                return;
            }
            $crate::store::conformance::leaving(&$make);
        }
        #[test]
        fn who_is_woken_follows_membership() {
            if !$ready {
                return;
            }
            $crate::store::conformance::who_is_woken_follows_membership(&$make);
        }
        #[test]
        fn blobs() {
            if !$ready {
                return;
            }
            $crate::store::conformance::blobs(&$make);
        }
        #[test]
        fn one_copy_of_a_device_at_a_time() {
            if !$ready {
                return;
            }
            $crate::store::conformance::one_copy_of_a_device_at_a_time(&$make);
        }
        #[test]
        fn operator_views() {
            if !$ready {
                return;
            }
            $crate::store::conformance::operator_views(&$make);
        }
        #[test]
        fn retention() {
            if !$ready {
                return;
            }
            $crate::store::conformance::retention(&$make);
        }
        #[test]
        fn roles_in_named_groups() {
            if !$ready {
                return;
            }
            $crate::store::conformance::roles_in_named_groups(&$make);
        }
        #[test]
        fn group_retention() {
            if !$ready {
                return;
            }
            $crate::store::conformance::group_retention(&$make);
        }
        #[test]
        fn welcome_ids_are_never_handed_out_twice() {
            if !$ready {
                return;
            }
            $crate::store::conformance::welcome_ids_are_never_handed_out_twice(&$make);
        }
        #[test]
        fn a_fetch_waits_for_the_welcome_into_the_group() {
            if !$ready {
                return;
            }
            $crate::store::conformance::a_fetch_waits_for_the_welcome_into_the_group(&$make);
        }
        #[test]
        fn operator_notices() {
            if !$ready {
                return;
            }
            $crate::store::conformance::operator_notices(&$make);
        }
        #[test]
        fn key_packages_are_handed_out_by_suite() {
            if !$ready {
                return;
            }
            $crate::store::conformance::key_packages_are_handed_out_by_suite(&$make);
        }
        #[test]
        fn devices_are_added_capped_and_revoked_for_good() {
            if !$ready {
                return;
            }
            $crate::store::conformance::devices_are_added_capped_and_revoked_for_good(&$make);
        }
        #[test]
        fn retries_are_answered_with_the_first_result() {
            if !$ready {
                return;
            }
            $crate::store::conformance::retries_are_answered_with_the_first_result(&$make);
        }
    };
}

/// Data written through one store value is there after reopening with `open`.
pub fn durability<S: Store>(open: impl Fn() -> S) {
    {
        let s = open();
        register(&s, "alice");
        register(&s, "bob");
        s.create_group(b"g-durable", &dev("alice"), NOW).unwrap();
        let bob = [dev("bob")];
        let alice = dev("alice");
        let mut commit = msg(b"g-durable", &alice, 0, b"c1", MessageKind::Commit);
        commit.added = &bob;
        commit.welcome = Some(b"welcome");
        s.append(&commit, NOW).unwrap();
        s.append(&msg(b"g-durable", &alice, 1, b"m1", MessageKind::Application), NOW).unwrap();
    }
    let s = open();
    let got = s.fetch(b"g-durable", &dev("bob"), 0, 100).unwrap();
    assert_eq!(got.len(), 1, "bob sees the message after the commit that added him");
    assert_eq!(got[0].payload, b"ciphertext");
    assert_eq!(s.welcomes(&dev("bob")).unwrap().len(), 1);
}

/// Handles are unique, invites are hashed, used up and expire; an account
/// its owner deletes gives its invite's use back.
pub fn registration_and_invites(s: &impl Store) {
    assert_eq!(s.register("a", &[1; 32], &info(), None, true, NOW), Err(StoreError::InviteRequired));
    assert_eq!(s.register("a", &[1; 32], &info(), Some("nope"), true, NOW), Err(StoreError::InviteInvalid));
    s.create_invite("twice", 2, None, NOW).unwrap();
    s.register("a", &[1; 32], &info(), Some("twice"), true, NOW).unwrap();
    assert_eq!(s.register("a", &[1; 32], &info(), Some("twice"), true, NOW), Err(StoreError::HandleTaken));
    s.register("b", &[1; 32], &info(), Some("twice"), true, NOW).unwrap();
    assert_eq!(
        s.register("c", &[1; 32], &info(), Some("twice"), true, NOW),
        Err(StoreError::InviteInvalid),
        "an invite is used up after its count"
    );
    s.create_invite("old", 5, Some(NOW - 1), NOW).unwrap();
    assert_eq!(s.register("c", &[1; 32], &info(), Some("old"), true, NOW), Err(StoreError::InviteInvalid));
    // An account its owner deletes gives the use back (an ephemeral
    // identity ends, someone leaves); one an operator removes does not.
    s.remove_account("b", Removal::ByOwner).unwrap();
    s.register("c", &[1; 32], &info(), Some("twice"), true, NOW).unwrap();
    s.remove_account("c", Removal::ByOperator).unwrap();
    assert_eq!(
        s.register("d", &[1; 32], &info(), Some("twice"), true, NOW),
        Err(StoreError::InviteInvalid),
        "an operator's removal keeps the invite used"
    );
    let acc = s.account("a").unwrap().unwrap();
    assert_eq!(acc.devices, vec![info()]);
    assert!(!acc.banned);
    s.set_banned("a", true).unwrap();
    assert!(s.account("a").unwrap().unwrap().banned);
    assert_eq!(s.set_banned("zz", true), Err(StoreError::UnknownHandle));
    assert!(s.account("zz").unwrap().is_none());
}

/// Each one-time KeyPackage goes to exactly one claimer, even when many claim
/// at once; then the last-resort one.
pub fn key_packages_are_claimed_once<S: Store>(s: Arc<S>) {
    register(&*s, "bob");
    assert_eq!(s.claim_key_packages("nobody", None, &[1]).unwrap_err(), StoreError::UnknownHandle);
    assert_eq!(s.claim_key_packages("bob", None, &[1]).unwrap_err(), StoreError::NoKeyPackages);
    let packages: Vec<(u16, Vec<u8>)> = (0..40u8).map(|i| (1, vec![i; 8])).collect();
    assert_eq!(s.add_key_packages(&dev("bob"), &packages, &[(1, b"last".to_vec())]).unwrap(), 40);
    // 8 threads race for 40 packages, 6 claims each: 48 claims, so exactly
    // 40 distinct one-time packages and 8 last-resort answers.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..6).map(|_| s.claim_key_packages("bob", None, &[1]).unwrap()[0].1.clone()).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let one_time: Vec<_> = all.iter().filter(|p| p.as_slice() != b"last").collect();
    let distinct: HashSet<_> = one_time.iter().collect();
    assert_eq!(one_time.len(), 40);
    assert_eq!(distinct.len(), 40, "no one-time package was handed out twice");
    assert_eq!(s.key_package_count(&dev("bob")).unwrap(), 0);
}

/// Uploads fit the size limit and quota, are shared with members only, and go
/// when fetched, abandoned or expired.
pub fn blobs(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    register(s, "eve");
    let (alice, bob, eve) = (dev("alice"), dev("bob"), dev("eve"));
    let g: &[u8] = b"group-blob";
    s.create_group(g, &alice, NOW).unwrap();
    let added = [bob.clone()];
    let mut commit = msg(g, &alice, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    s.append(&commit, NOW).unwrap();

    assert!(matches!(s.begin_blob(b"big", &alice, 101, 100, 1000, NOW), Err(StoreError::LimitExceeded(_))));
    let b = s.begin_blob(b"b1", &alice, 100, 100, 150, NOW).unwrap();
    assert!(!b.complete);
    assert_eq!(s.begin_blob(b"b1", &alice, 100, 100, 150, NOW).unwrap(), b, "resuming finds the same blob");
    assert_eq!(s.begin_blob(b"b1", &eve, 100, 100, 150, NOW), Err(StoreError::UnknownBlob), "someone else's id");
    assert!(matches!(s.begin_blob(b"b1", &alice, 99, 100, 150, NOW), Err(StoreError::Invalid(_))), "another size");
    assert!(matches!(s.begin_blob(b"b2", &alice, 60, 100, 150, NOW), Err(StoreError::LimitExceeded(_))), "quota");
    assert!(s.may_read_blob(b"b1", &alice).unwrap());
    assert!(!s.may_read_blob(b"b1", &bob).unwrap());
    assert_eq!(s.share_blob(b"b1", &eve, g), Err(StoreError::UnknownBlob), "someone else's blob");
    assert_eq!(s.share_blob(b"nope", &alice, g), Err(StoreError::UnknownBlob), "no such blob");
    assert_eq!(s.incomplete_blobs().unwrap().iter().map(|b| b.id.clone()).collect::<Vec<_>>(), vec![b"b1".to_vec()]);
    s.share_blob(b"b1", &alice, g).unwrap();
    assert!(s.may_read_blob(b"b1", &bob).unwrap());
    assert!(!s.may_read_blob(b"b1", &eve).unwrap());
    s.complete_blob(b"b1").unwrap();
    assert!(s.blob(b"b1").unwrap().unwrap().complete);
    assert!(!s.blob_fetched(b"b1", &eve).unwrap(), "a stranger's confirmation counts for nothing");
    assert!(s.blob_fetched(b"b1", &bob).unwrap(), "every recipient fetched it");
    assert!(s.blob(b"b1").unwrap().is_none());
    s.begin_blob(b"gone", &alice, 100, 100, 150, NOW).unwrap();
    assert!(
        matches!(s.begin_blob(b"again", &alice, 60, 100, 150, NOW), Err(StoreError::LimitExceeded(_))),
        "a half-finished upload counts towards the quota"
    );
    s.remove_blob(b"gone").unwrap();
    assert!(s.blob(b"gone").unwrap().is_none(), "an abandoned upload is removed");
    s.begin_blob(b"again", &alice, 60, 100, 150, NOW).expect("and its quota is free again");
    s.remove_blob(b"again").unwrap();
    s.begin_blob(b"old", &alice, 10, 100, 150, NOW - 10).unwrap();
    assert_eq!(s.expire_blobs(NOW - 5).unwrap(), vec![b"old".to_vec()]);
    assert_eq!(s.stats().unwrap().blobs, 0);
}

/// Only the recorded copy of a profile logs in, unless a restore takes over.
pub fn one_copy_of_a_device_at_a_time(s: &impl Store) {
    register(s, "alice");
    let alice = dev("alice");
    assert_eq!(s.claim_copy(&alice, b"first", false, NOW).unwrap(), Ok(()), "the first copy seen is recorded");
    assert_eq!(s.claim_copy(&alice, b"first", false, NOW + 1).unwrap(), Ok(()));
    assert_eq!(s.claim_copy(&alice, b"other", false, NOW + 2).unwrap(), Err(NOW), "another copy is refused");
    assert_eq!(s.claim_copy(&alice, b"restored", true, NOW + 3).unwrap(), Ok(()), "a restored copy takes over");
    assert_eq!(s.claim_copy(&alice, b"first", false, NOW + 4).unwrap(), Err(NOW + 3), "and the old one is stale");
    // A new account under the same handle starts afresh.
    s.remove_account("alice", Removal::ByOperator).unwrap();
    register(s, "alice");
    assert_eq!(s.claim_copy(&alice, b"new phone", false, NOW + 5).unwrap(), Ok(()));
}

/// What operators list and count matches what is stored.
pub fn operator_views(s: &impl Store) {
    s.create_invite("code-one", 2, None, NOW).unwrap();
    s.create_invite("code-two", 1, Some(NOW + 1000), NOW).unwrap();
    let invites = s.list_invites().unwrap();
    assert_eq!(invites.len(), 2);
    assert_eq!(invites[0].uses_left, 2);
    assert!(s.revoke_invite("code-one").unwrap());
    assert!(s.revoke_invite(&invites[1].id.to_string()).unwrap());
    assert!(!s.revoke_invite("code-one").unwrap());
    assert!(s.list_invites().unwrap().is_empty());

    register(s, "alice");
    register(s, "bob");
    let (alice, bob) = (dev("alice"), dev("bob"));
    s.create_group(b"group-ops", &alice, NOW).unwrap();
    let added = [bob.clone()];
    let mut commit = msg(b"group-ops", &alice, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    commit.welcome = Some(b"w");
    s.append(&commit, NOW).unwrap();
    s.add_key_packages(&bob, &[(1, vec![1])], &[]).unwrap();
    assert_eq!(s.groups_created(&alice).unwrap(), 1);
    assert_eq!(s.groups_created(&bob).unwrap(), 0);
    let accounts = s.list_accounts().unwrap();
    assert_eq!(
        accounts.iter().map(|a| (a.handle.as_str(), a.groups)).collect::<Vec<_>>(),
        vec![("alice", 1), ("bob", 1)]
    );
    s.remove_account("bob", Removal::ByOperator).unwrap();
    assert!(s.account("bob").unwrap().is_none());
    assert!(s.welcomes(&bob).unwrap().is_empty());
    assert_eq!(s.group(b"group-ops").unwrap().unwrap().members, vec![alice.clone()]);
    assert_eq!(s.remove_account("bob", Removal::ByOperator), Err(StoreError::UnknownHandle));
    // The handle is free again.
    register(s, "bob");
}
