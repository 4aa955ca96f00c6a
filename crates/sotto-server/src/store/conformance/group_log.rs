//! Conformance properties of the group log: appends, their order and
//! retries, acknowledgements, retention.

use std::sync::Arc;

use sotto_proto::{DeviceRef, MessageKind};

use super::*;

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
