//! The properties of several devices per account and of welcomes into
//! groups (a device's way in): the device list, welcome ids, the welcome
//! before the log.

use super::*;

/// Devices: a second device is added (numbers unique, the cap holds), its
/// packages can be claimed alone, and a removed device loses its packages
/// and memberships, stays revoked and its number is never reused.
pub fn devices_are_added_capped_and_revoked_for_good(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    let second = DeviceInfo { device_id: 2, device_key: vec![9; 32], certificate: vec![8; 64] };
    assert_eq!(s.add_device("nobody", &second, 8, NOW).unwrap_err(), StoreError::UnknownHandle);
    s.add_device("alice", &second, 8, NOW).unwrap();
    assert!(matches!(s.add_device("alice", &second, 8, NOW), Err(StoreError::Invalid(_))), "number in use");
    let third = DeviceInfo { device_id: 3, device_key: vec![10; 32], certificate: vec![8; 64] };
    assert_eq!(s.add_device("alice", &third, 2, NOW).unwrap_err(), StoreError::DeviceLimit(2));
    let a1 = dev("alice");
    let a2 = DeviceRef { handle: "alice".into(), device_id: 2 };
    s.add_key_packages(&a1, &[(1, b"a1-kp".to_vec())], &[]).unwrap();
    s.add_key_packages(&a2, &[(1, b"a2-kp".to_vec()), (1, b"a2-kp2".to_vec())], &[(1, b"a2-last".to_vec())]).unwrap();
    let only = s.claim_key_packages("alice", Some(&[2]), &[1]).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!((only[0].0.device_id, only[0].1.as_slice(), only[0].2), (2, &b"a2-kp"[..], 1));
    assert_eq!(s.key_package_count(&a1).unwrap(), 1, "the other device's stock is untouched");
    assert!(matches!(s.claim_key_packages("alice", Some(&[7]), &[1]), Err(StoreError::UnknownDevice(_))));
    // Both devices in a group; then device 2 is removed.
    s.create_group(b"g-devices", &a1, NOW).unwrap();
    let added = [a2.clone(), dev("bob")];
    let mut m = msg(b"g-devices", &a1, 0, b"c1", MessageKind::Commit);
    m.added = &added;
    m.welcome = Some(b"welcome");
    s.append(&m, NOW).unwrap();
    assert_eq!(s.group(b"g-devices").unwrap().unwrap().members.len(), 3);
    assert_eq!(s.welcomes(&a2).unwrap().len(), 1);
    s.device_seen(&a2, NOW + 5).unwrap();
    let records = s.device_records("alice").unwrap();
    assert_eq!(records.iter().map(|r| (r.device_id, r.last_seen)).collect::<Vec<_>>(), vec![(1, 0), (2, NOW + 5)]);
    assert_eq!(s.remove_device(&a2, NOW).unwrap(), vec![b"g-devices".to_vec()]);
    let account = s.account("alice").unwrap().unwrap();
    assert_eq!(account.devices.iter().map(|d| d.device_id).collect::<Vec<_>>(), vec![1]);
    assert_eq!(account.revoked, vec![2]);
    assert!(!s.group(b"g-devices").unwrap().unwrap().members.contains(&a2), "routed nothing more");
    assert!(s.welcomes(&a2).unwrap().is_empty());
    assert_eq!(s.key_package_count(&a2).unwrap(), 0);
    assert!(matches!(s.fetch(b"g-devices", &a2, 0, 10), Err(StoreError::NotMember)));
    assert!(matches!(s.remove_device(&a2, NOW), Err(StoreError::UnknownDevice(_))));
    assert!(matches!(s.add_device("alice", &second, 8, NOW), Err(StoreError::Invalid(_))), "never reused");
    s.add_device("alice", &third, 8, NOW).unwrap();
    // A new account under the handle starts with nothing revoked.
    s.remove_account("alice", Removal::ByOperator).unwrap();
    register(s, "alice");
    assert!(s.account("alice").unwrap().unwrap().revoked.is_empty());
}

/// A welcome's id is larger than every earlier one, also after the newest
/// was acknowledged and deleted (a connection pushes welcomes above the
/// last id it pushed: a reused id would never reach a device online).
pub fn welcome_ids_are_never_handed_out_twice(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    let bob = [dev("bob")];
    let mut last = 0;
    let alice = dev("alice");
    for (i, g) in [b"g-welcome-1", b"g-welcome-2", b"g-welcome-3"].iter().enumerate() {
        s.create_group(*g, &alice, NOW).unwrap();
        let cid = [i as u8 + 1];
        let mut m = msg(*g, &alice, 0, &cid, MessageKind::Commit);
        m.added = &bob;
        m.welcome = Some(b"welcome");
        s.append(&m, NOW).unwrap();
        let w = s.welcomes(&dev("bob")).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].id > last, "welcome id {} after {last}", w[0].id);
        last = w[0].id;
        s.ack_welcome(&dev("bob"), last).unwrap();
    }
}

/// A device removed and added again before it read its removal must take
/// the new welcome before the log: the entries from its new join point are
/// in the welcome's epochs. Until it acknowledges the welcome, a fetch of
/// that group is empty.
pub fn a_fetch_waits_for_the_welcome_into_the_group(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    let (alice, bob) = (dev("alice"), dev("bob"));
    let g: &[u8] = b"group-readd";
    s.create_group(g, &alice, NOW).unwrap();
    let bobs = [bob.clone()];
    let mut add = msg(g, &alice, 0, b"a1", MessageKind::Commit);
    add.added = &bobs;
    add.welcome = Some(b"welcome-1");
    s.append(&add, NOW).unwrap();
    let first = s.welcomes(&bob).unwrap()[0].id;
    s.ack_welcome(&bob, first).unwrap();
    let hello = s.append(&msg(g, &alice, 1, b"m1", MessageKind::Application), NOW).unwrap();
    // Removed and added again while bob reads nothing.
    let mut remove = msg(g, &alice, 1, b"r", MessageKind::Commit);
    remove.removed = &bobs;
    s.append(&remove, NOW).unwrap();
    let mut again = msg(g, &alice, 2, b"a2", MessageKind::Commit);
    again.added = &bobs;
    again.welcome = Some(b"welcome-2");
    s.append(&again, NOW).unwrap();
    let after = s.append(&msg(g, &alice, 3, b"m2", MessageKind::Application), NOW).unwrap();
    assert!(s.fetch(g, &bob, hello.seq - 1, 10).unwrap().is_empty(), "nothing before the new welcome");
    let second = s.welcomes(&bob).unwrap();
    assert_eq!(second.len(), 1);
    s.ack_welcome(&bob, second[0].id).unwrap();
    assert_eq!(
        s.fetch(g, &bob, hello.seq - 1, 10).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(),
        vec![after.seq],
        "then the log from the new join point"
    );
}

/// Operator notices: ids grow, a device gets what it has not seen, oldest
/// first, only the newest when it asks for few; the store keeps a bounded
/// number and never reuses an id; empty or oversized text is refused.
pub fn operator_notices(s: &impl Store) {
    assert!(s.notices_after(0, 10).unwrap().is_empty());
    let a = s.add_notice("maintenance tonight at 22:00", NOW).unwrap();
    let b = s.add_notice("back up", NOW + 1).unwrap();
    assert!(b > a);
    let all = s.notices_after(0, 10).unwrap();
    assert_eq!(all.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(), ["maintenance tonight at 22:00", "back up"]);
    assert_eq!((all[1].id, all[1].sent_at), (b, NOW + 1));
    assert_eq!(s.notices_after(a, 10).unwrap().len(), 1, "only what the device has not seen");
    assert!(s.notices_after(b, 10).unwrap().is_empty());
    assert!(matches!(s.add_notice("  ", NOW), Err(StoreError::Invalid(_))));
    let long = "x".repeat(sotto_proto::limits::MAX_NOTICE_BYTES + 1);
    assert!(matches!(s.add_notice(&long, NOW), Err(StoreError::Invalid(_))));
    let mut last = b;
    for i in 0..KEPT_NOTICES + 5 {
        last = s.add_notice(&format!("n{i}"), NOW).unwrap();
    }
    let newest = s.notices_after(0, 3).unwrap();
    assert_eq!(newest.iter().map(|n| n.id).collect::<Vec<_>>(), [last - 2, last - 1, last], "the newest, oldest first");
    assert_eq!(s.notices_after(0, 1000).unwrap().len() as u64, KEPT_NOTICES, "a bounded number is kept");
}

/// KeyPackages by suite: a claim gets the suite every device has, in the
/// claimer's order; one device without the new suite takes the whole
/// account to the old one; an old client (asking for the classical suite)
/// never gets a package it cannot read; last-resort packages are kept one
/// per suite; the stock reported is the scarcest suite's.
pub fn key_packages_are_handed_out_by_suite(s: &impl Store) {
    use sotto_proto::suites::{SUITE_CLASSICAL as C, SUITE_XWING as X};
    register(s, "carol");
    let second = DeviceInfo { device_id: 2, device_key: vec![9; 32], certificate: vec![8; 64] };
    s.add_device("carol", &second, 8, NOW).unwrap();
    let c1 = dev("carol");
    let c2 = DeviceRef { handle: "carol".into(), device_id: 2 };
    let stock = s
        .add_key_packages(
            &c1,
            &[(X, b"c1-x1".to_vec()), (X, b"c1-x2".to_vec()), (C, b"c1-c1".to_vec())],
            &[(X, b"c1-x-last".to_vec()), (C, b"c1-c-last".to_vec())],
        )
        .unwrap();
    assert_eq!(stock, 1, "the classical suite is the scarcer");
    // Device 2 (an older app) has only the classical suite.
    s.add_key_packages(&c2, &[(C, b"c2-c1".to_vec())], &[(C, b"c2-c-last".to_vec())]).unwrap();

    let both = s.claim_key_packages("carol", None, &[X, C]).unwrap();
    let got: Vec<_> = both.iter().map(|(d, p, _)| (d.device_id, p.as_slice())).collect();
    assert_eq!(got, vec![(1, &b"c1-c1"[..]), (2, &b"c2-c1"[..])], "one suite for everyone: the one all have");

    let newest = s.claim_key_packages("carol", Some(&[1]), &[X, C]).unwrap();
    assert_eq!(newest[0].1, b"c1-x1", "alone, device 1 gives its post-quantum package");
    let old_client = s.claim_key_packages("carol", Some(&[1]), &[C]).unwrap();
    assert_eq!(old_client[0].1, b"c1-c-last", "the classical stock is gone: its last-resort package");
    // A new last-resort package replaces only its own suite's.
    s.add_key_packages(&c1, &[], &[(C, b"c1-c-last2".to_vec())]).unwrap();
    assert_eq!(s.claim_key_packages("carol", Some(&[1]), &[C]).unwrap()[0].1, b"c1-c-last2");
    assert_eq!(s.claim_key_packages("carol", Some(&[1]), &[X]).unwrap()[0].1, b"c1-x2");
    assert_eq!(s.claim_key_packages("carol", Some(&[1]), &[X]).unwrap()[0].1, b"c1-x-last");
    // Nothing of a suite nobody has.
    assert_eq!(s.claim_key_packages("carol", Some(&[2]), &[X]).unwrap_err(), StoreError::NoKeyPackages);
}
