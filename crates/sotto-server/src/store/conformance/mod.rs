//! The behaviour every [`Store`] backend must show, one public function per
//! property. A backend's tests write one named test per property with
//! [`store_conformance!`](crate::store_conformance), and check
//! [`durability`] across reopening.

use std::collections::HashSet;
use std::sync::Arc;

use sotto_proto::{DeviceInfo, DeviceRef, MessageKind};

use super::*;

mod devices;
mod membership;
pub use devices::*;
pub use membership::*;

const NOW: i64 = 1_700_000_000_000;

pub(crate) fn dev(h: &str) -> DeviceRef {
    DeviceRef { handle: h.into(), device_id: 1 }
}

fn info() -> DeviceInfo {
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
    assert_eq!(s.claim_key_packages("nobody", None).unwrap_err(), StoreError::UnknownHandle);
    assert_eq!(s.claim_key_packages("bob", None).unwrap_err(), StoreError::NoKeyPackages);
    let packages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 8]).collect();
    assert_eq!(s.add_key_packages(&dev("bob"), &packages, Some(b"last")).unwrap(), 40);
    // 8 threads race for 40 packages, 6 claims each: 48 claims, so exactly
    // 40 distinct one-time packages and 8 last-resort answers.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..6).map(|_| s.claim_key_packages("bob", None).unwrap()[0].1.clone()).collect::<Vec<_>>()
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

/// Only members append; an old epoch is refused; a retried client id stores
/// nothing new.
pub fn group_log_rules(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    register(s, "eve");
    let (alice, bob, eve) = (dev("alice"), dev("bob"), dev("eve"));
    let g: &[u8] = b"group-one";
    s.create_group(g, &alice, NOW).unwrap();
    assert_eq!(s.create_group(g, &eve, NOW), Err(StoreError::GroupExists));
    let added = [bob.clone()];
    let mut commit = msg(g, &alice, 0, b"c1", MessageKind::Commit);
    commit.added = &added;
    commit.welcome = Some(b"welcome-bytes");
    let a = s.append(&commit, NOW).unwrap();
    assert_eq!((a.seq, a.epoch, a.duplicate), (1, 1, false));
    assert_eq!(*a.members, [alice.clone(), bob.clone()]);
    // Retrying the same client id is answered with the first result.
    let again = s.append(&commit, NOW).unwrap();
    assert_eq!((again.seq, again.epoch, again.duplicate), (1, 1, true));
    // A second commit for epoch 0 loses.
    let mut late = msg(g, &bob, 0, b"c2", MessageKind::Commit);
    late.added = &[];
    assert_eq!(s.append(&late, NOW), Err(StoreError::StaleEpoch { current: 1 }));
    assert_eq!(
        s.append(&msg(g, &alice, 0, b"m0", MessageKind::Application), NOW),
        Err(StoreError::StaleEpoch { current: 1 })
    );
    // Outsiders can neither post nor read.
    assert_eq!(s.append(&msg(g, &eve, 1, b"e", MessageKind::Application), NOW), Err(StoreError::NotMember));
    assert_eq!(s.fetch(g, &eve, 0, 10), Err(StoreError::NotMember));
    assert_eq!(s.append(&msg(b"nope", &eve, 0, b"e", MessageKind::Application), NOW), Err(StoreError::UnknownGroup));
    let m = s.append(&msg(g, &bob, 1, b"m1", MessageKind::Application), NOW).unwrap();
    assert_eq!((m.seq, m.epoch), (2, 1));
    // Bob reads only from after his join; alice reads everything.
    assert_eq!(s.fetch(g, &bob, 0, 10).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(), vec![2]);
    assert_eq!(s.fetch(g, &alice, 0, 10).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(s.fetch(g, &alice, 1, 10).unwrap()[0].sender, bob);
    let w = s.welcomes(&bob).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].group_id.as_slice(), w[0].welcome.as_slice(), &w[0].sender), (g, &b"welcome-bytes"[..], &alice));
    s.ack_welcome(&eve, w[0].id).unwrap();
    assert_eq!(s.welcomes(&bob).unwrap().len(), 1, "another device cannot delete bob's welcome");
    s.ack_welcome(&bob, w[0].id).unwrap();
    assert!(s.welcomes(&bob).unwrap().is_empty());
    let unknown = [DeviceRef { handle: "ghost".into(), device_id: 1 }];
    let mut bad = msg(g, &alice, 1, b"c3", MessageKind::Commit);
    bad.added = &unknown;
    assert!(matches!(s.append(&bad, NOW), Err(StoreError::UnknownDevice(_))));
    let state = s.group(g).unwrap().unwrap();
    assert_eq!((state.epoch, state.last_seq), (1, 2), "a failed append changes nothing");
    assert_eq!(s.memberships(&bob).unwrap(), vec![Membership { group_id: g.to_vec(), cursor: 1 }]);
    // GroupInfo: members store it for the current epoch only, members read it.
    assert_eq!(s.group_info(g, &bob).unwrap(), None);
    assert_eq!(s.put_group_info(g, &bob, 0, b"old"), Err(StoreError::StaleEpoch { current: 1 }));
    assert_eq!(s.put_group_info(g, &eve, 1, b"gi"), Err(StoreError::NotMember));
    s.put_group_info(g, &bob, 1, b"gi").unwrap();
    assert_eq!(s.group_info(g, &alice).unwrap(), Some((1, b"gi".to_vec())));
    assert_eq!(s.group_info(g, &eve), Err(StoreError::NotMember));
}

/// A message is deleted once every member device acknowledged it, and not
/// before.
pub fn ack_then_delete(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    let (alice, bob) = (dev("alice"), dev("bob"));
    let g: &[u8] = b"group-ack";
    s.create_group(g, &alice, NOW).unwrap();
    let added = [bob.clone()];
    let mut commit = msg(g, &alice, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    s.append(&commit, NOW).unwrap();
    for i in 0..3u8 {
        s.append(&msg(g, &alice, 1, &[i], MessageKind::Application), NOW).unwrap();
    }
    assert_eq!(s.stats().unwrap().messages, 4);
    s.ack(g, &bob, 4).unwrap();
    assert_eq!(s.stats().unwrap().messages, 4, "alice has not acknowledged yet");
    s.ack(g, &alice, 3).unwrap();
    assert_eq!(s.stats().unwrap().messages, 1, "what both acknowledged is gone");
    s.ack(g, &alice, 2).unwrap();
    assert_eq!(s.memberships(&alice).unwrap()[0].cursor, 3, "cursors never move back");
    s.ack(g, &alice, 99).unwrap();
    assert_eq!(s.memberships(&alice).unwrap()[0].cursor, 4, "cursors stop at the end of the log");
    assert_eq!(s.stats().unwrap().messages, 0);
    assert_eq!(s.ack(g, &dev("nobody"), 1), Err(StoreError::NotMember));
}

/// Old messages, welcomes and keys are purged after the retention period.
pub fn retention(s: &impl Store) {
    register(s, "alice");
    let alice = dev("alice");
    let g: &[u8] = b"group-old";
    s.create_group(g, &alice, NOW).unwrap();
    s.append(&msg(g, &alice, 0, b"old", MessageKind::Application), NOW - 10_000).unwrap();
    s.append(&msg(g, &alice, 0, b"new", MessageKind::Application), NOW).unwrap();
    s.create_invite("expired", 1, Some(NOW - 1), NOW).unwrap();
    assert!(s.purge_expired(NOW, 5_000).unwrap() >= 2);
    assert_eq!(s.fetch(g, &alice, 0, 10).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(), vec![2]);
}

/// A group with its own retention (a disappearing timer) loses entries
/// older than it, whoever has not read them; other groups keep theirs.
pub fn group_retention(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    let (alice, bob) = (dev("alice"), dev("bob"));
    let (g, other): (&[u8], &[u8]) = (b"group-timer", b"group-keeps");
    for group in [g, other] {
        s.create_group(group, &alice, NOW).unwrap();
        let added = [bob.clone()];
        let mut commit = msg(group, &alice, 0, b"c", MessageKind::Commit);
        commit.added = &added;
        s.append(&commit, NOW - 60_000).unwrap();
        s.append(&msg(group, &alice, 1, b"old", MessageKind::Application), NOW - 60_000).unwrap();
        s.append(&msg(group, &alice, 1, b"new", MessageKind::Application), NOW - 1_000).unwrap();
    }
    s.set_retention(g, &bob, Some(30_000)).unwrap();
    assert!(s.purge_group_retention(NOW).unwrap() >= 2, "the commit and the old message");
    let seqs = |group: &[u8]| s.fetch(group, &alice, 0, 10).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>();
    assert_eq!(seqs(g), vec![3], "only the entry younger than the timer is left");
    assert_eq!(seqs(other), vec![1, 2, 3], "another group keeps everything");
    // Files go with the timer of the groups they were shared with.
    for (id, age, groups) in [
        (&b"timed-old"[..], 60_000, &[g][..]),
        (b"timed-new", 1_000, &[g]),
        (b"also-elsewhere", 60_000, &[g, other]),
        (b"unshared", 60_000, &[]),
    ] {
        s.begin_blob(id, &alice, 1, 100, 1000, NOW - age).unwrap();
        for group in groups {
            s.share_blob(id, &alice, group).unwrap();
        }
    }
    assert_eq!(s.expire_group_blobs(NOW).unwrap(), vec![b"timed-old".to_vec()]);
    assert!(s.blob(b"timed-old").unwrap().is_none());
    assert!(!s.may_read_blob(b"timed-old", &bob).unwrap(), "nobody reads it any more");
    for kept in [&b"timed-new"[..], b"also-elsewhere", b"unshared"] {
        assert!(s.blob(kept).unwrap().is_some(), "{}", String::from_utf8_lossy(kept));
    }
    assert!(s.expire_group_blobs(NOW).unwrap().is_empty(), "nothing twice");
    assert_eq!(
        s.expire_group_blobs(NOW + 30_000).unwrap(),
        vec![b"timed-new".to_vec()],
        "the younger one when its time comes"
    );
    s.set_retention(g, &bob, None).unwrap();
    s.append(&msg(g, &alice, 1, b"later", MessageKind::Application), NOW - 50_000).unwrap();
    assert_eq!(s.purge_group_retention(NOW).unwrap(), 0, "back to the server's retention");
    register(s, "eve");
    assert_eq!(s.set_retention(g, &dev("eve"), Some(1)), Err(StoreError::NotMember));
    assert_eq!(s.set_retention(b"nope", &bob, Some(1)), Err(StoreError::UnknownGroup));
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
    s.add_key_packages(&bob, &[vec![1]], None).unwrap();
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

/// A retried append (same client id) is answered with what the first got,
/// also when it comes after the epoch moved, or in the same batch as the
/// first or as new appends; it stores nothing.
pub fn retries_are_answered_with_the_first_result(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    let (alice, bob) = (dev("alice"), dev("bob"));
    let g: &[u8] = b"group-retries";
    s.create_group(g, &alice, NOW).unwrap();
    let added = [bob.clone()];
    let first = NewMessage { added: &added, welcome: Some(b"w"), ..msg(g, &alice, 0, b"c0", MessageKind::Commit) };
    s.append(&first, NOW).unwrap();
    let m1 = s.append(&msg(g, &bob, 1, b"m1", MessageKind::Application), NOW).unwrap();
    // The same id twice in one batch, beside a new one.
    let tickets = [
        s.append_queued(&msg(g, &alice, 1, b"m2", MessageKind::Application), NOW),
        s.append_queued(&msg(g, &alice, 1, b"m2", MessageKind::Application), NOW),
        s.append_queued(&msg(g, &bob, 1, b"m1", MessageKind::Application), NOW),
        s.append_queued(&msg(g, &bob, 1, b"m3", MessageKind::Application), NOW),
    ];
    let got: Vec<Appended> = tickets.into_iter().map(|t| t.blocking_recv().unwrap().unwrap()).collect();
    assert_eq!((got[0].seq, got[0].duplicate), (3, false));
    assert_eq!((got[1].seq, got[1].duplicate), (3, true));
    assert_eq!((got[2].seq, got[2].duplicate), (m1.seq, true));
    assert_eq!((got[3].seq, got[3].duplicate), (4, false));
    // The epoch moves; Bob's retry of m3 (for the old epoch) is still
    // "stored", not "stale".
    assert_eq!(s.append(&msg(g, &alice, 1, b"c1", MessageKind::Commit), NOW).unwrap().epoch, 2);
    let late = s.append(&msg(g, &bob, 1, b"m3", MessageKind::Application), NOW).unwrap();
    assert_eq!((late.seq, late.epoch, late.duplicate), (4, 1, true));
    assert_eq!(
        s.append(&msg(g, &bob, 1, b"m4", MessageKind::Application), NOW),
        Err(StoreError::StaleEpoch { current: 2 })
    );
    // Nothing was stored twice.
    let state = s.group(g).unwrap().unwrap();
    assert_eq!((state.epoch, state.last_seq), (2, 5));
    let seqs: Vec<u64> = s.fetch(g, &alice, 0, 100).unwrap().iter().map(|d| d.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

/// Appends from many threads get distinct, gapless sequence numbers in one
/// order.
pub fn concurrent_appends<S: Store>(s: Arc<S>) {
    register(&*s, "alice");
    register(&*s, "eve");
    register(&*s, "bob");
    let g: &[u8] = b"group-busy";
    s.create_group(g, &dev("alice"), NOW).unwrap();
    // 8 threads x 50 appends, with refused ones mixed in (eve is no member;
    // a commit adding bob and a device that does not exist): every good
    // append gets its own sequence number, none is lost, and the refused
    // ones change nothing, even when committed in the same batch as the
    // good ones (the SQLite store writes nothing before every check passed).
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let (alice, eve) = (dev("alice"), dev("eve"));
                let mut seqs = Vec::new();
                for i in 0..50u8 {
                    let id = [t, i];
                    seqs.push(
                        s.append(&msg(b"group-busy", &alice, 0, &id, MessageKind::Application), NOW).unwrap().seq,
                    );
                    assert_eq!(
                        s.append(&msg(b"group-busy", &eve, 0, &id, MessageKind::Application), NOW),
                        Err(StoreError::NotMember)
                    );
                    let added = [dev("bob"), dev("nobody")];
                    let cid = [t, i, 0xc0];
                    let commit = NewMessage {
                        added: &added,
                        welcome: Some(b"welcome"),
                        ..msg(b"group-busy", &alice, 0, &cid, MessageKind::Commit)
                    };
                    assert!(matches!(s.append(&commit, NOW), Err(StoreError::UnknownDevice(_))));
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    let group = s.group(g).unwrap().unwrap();
    assert_eq!((group.last_seq, group.epoch), (400, 0));
    assert_eq!(group.members, vec![dev("alice")], "a refused commit added nobody");
    assert!(s.welcomes(&dev("bob")).unwrap().is_empty(), "and left no welcome");
}
