//! The properties of membership as routing sees it: a removed or departed
//! device reads nothing after, presence follows acceptance, and the devices
//! an append wakes are exactly the members then.

use super::*;

/// A removed device reads nothing sent after its removal.
pub fn removed_member_reads_nothing(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    let (alice, bob) = (dev("alice"), dev("bob"));
    let g: &[u8] = b"group-rm";
    s.create_group(g, &alice, NOW).unwrap();
    let added = [bob.clone()];
    let mut commit = msg(g, &alice, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    s.append(&commit, NOW).unwrap();
    let mut remove = msg(g, &alice, 1, b"r", MessageKind::Commit);
    remove.removed = &added;
    let r = s.append(&remove, NOW).unwrap();
    assert_eq!(*r.members, [alice.clone(), bob.clone()], "bob is woken to read his removal");
    s.append(&msg(g, &alice, 2, b"secret", MessageKind::Application), NOW).unwrap();
    // Bob may read the commit that removed him, and nothing after it.
    assert_eq!(s.fetch(g, &bob, 0, 10).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(), vec![r.seq]);
    assert_eq!(s.append(&msg(g, &bob, 2, b"b", MessageKind::Application), NOW), Err(StoreError::NotMember));
    assert_eq!(s.group(g).unwrap().unwrap().members, vec![alice.clone()]);
    s.ack(g, &bob, r.seq).unwrap();
    assert_eq!(s.fetch(g, &bob, 0, 10), Err(StoreError::NotMember));
    assert!(s.memberships(&bob).unwrap().is_empty());
    assert_eq!(s.co_members(&alice, &["bob".into(), "alice".into()]).unwrap(), vec!["alice".to_owned()]);
}

/// Presence goes only through groups the asked-about account accepted: a
/// person a stranger added shows the stranger nothing until they accept,
/// and shows nothing again once they withdraw it (blocking).
pub fn presence_follows_acceptance(s: &impl Store) {
    register(s, "stranger");
    register(s, "bob");
    let (stranger, bob) = (dev("stranger"), dev("bob"));
    let g: &[u8] = b"group-accept";
    s.create_group(g, &stranger, NOW).unwrap();
    let added = [bob.clone()];
    let mut commit = msg(g, &stranger, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    commit.welcome = Some(b"welcome");
    s.append(&commit, NOW).unwrap();
    assert!(s.co_members(&stranger, &["bob".into()]).unwrap().is_empty(), "bob has not accepted");
    assert_eq!(
        s.co_members(&bob, &["stranger".into()]).unwrap(),
        vec!["stranger".to_owned()],
        "the creator accepted its own group"
    );
    s.set_accepted(g, &bob, true).unwrap();
    s.set_accepted(g, &bob, true).unwrap();
    assert_eq!(s.co_members(&stranger, &["bob".into()]).unwrap(), vec!["bob".to_owned()]);
    s.set_accepted(g, &bob, false).unwrap();
    assert!(s.co_members(&stranger, &["bob".into()]).unwrap().is_empty(), "withdrawn");
    register(s, "eve");
    assert_eq!(s.set_accepted(g, &dev("eve"), true), Err(StoreError::NotMember));
    assert_eq!(s.set_accepted(b"nope", &bob, true), Err(StoreError::UnknownGroup));
}

/// A device that left is no longer routed to and reads nothing after.
pub fn leaving(s: &impl Store) {
    register(s, "alice");
    register(s, "bob");
    register(s, "eve");
    let (alice, bob) = (dev("alice"), dev("bob"));
    let g: &[u8] = b"group-leave";
    s.create_group(g, &alice, NOW).unwrap();
    let added = [bob.clone()];
    let mut commit = msg(g, &alice, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    s.append(&commit, NOW).unwrap();
    s.set_accepted(g, &bob, true).unwrap();
    assert_eq!(s.co_members(&alice, &["bob".into(), "eve".into()]).unwrap(), vec!["bob".to_owned()]);
    s.leave(g, &bob).unwrap();
    assert_eq!(s.leave(g, &bob), Err(StoreError::NotMember));
    assert_eq!(s.leave(b"nope", &bob), Err(StoreError::UnknownGroup));
    s.append(&msg(g, &alice, 1, b"m", MessageKind::Application), NOW).unwrap();
    assert_eq!(s.fetch(g, &bob, 0, 10), Err(StoreError::NotMember));
    assert!(s.co_members(&alice, &["bob".into()]).unwrap().is_empty());
}

/// The devices an append wakes, and who may append, follow every change of
/// membership at once: commits, leaving and removed accounts (the SQLite
/// store keeps member lists between appends, so this is what proves it
/// forgets them in time).
/// The devices to wake after an append are exactly the members then.
pub fn who_is_woken_follows_membership(s: &impl Store) {
    for h in ["alice", "bob", "carol"] {
        register(s, h);
    }
    let (alice, bob, carol) = (dev("alice"), dev("bob"), dev("carol"));
    let g: &[u8] = b"group-wakes";
    s.create_group(g, &alice, NOW).unwrap();
    let send =
        |who: &DeviceRef, epoch: u64, id: &[u8]| s.append(&msg(g, who, epoch, id, MessageKind::Application), NOW);
    assert_eq!(&*send(&alice, 0, b"1").unwrap().members, std::slice::from_ref(&alice));
    let added = [bob.clone(), carol.clone()];
    let commit = NewMessage { added: &added, welcome: Some(b"w"), ..msg(g, &alice, 0, b"c1", MessageKind::Commit) };
    s.append(&commit, NOW).unwrap();
    assert_eq!(*send(&alice, 1, b"2").unwrap().members, [alice.clone(), bob.clone(), carol.clone()]);
    assert_eq!(*send(&bob, 1, b"3").unwrap().members, [alice.clone(), bob.clone(), carol.clone()]);
    s.leave(g, &bob).unwrap();
    assert_eq!(send(&bob, 1, b"4"), Err(StoreError::NotMember));
    assert_eq!(*send(&alice, 1, b"5").unwrap().members, [alice.clone(), carol.clone()]);
    s.remove_account("carol", Removal::ByOperator).unwrap();
    assert_eq!(&*send(&alice, 1, b"6").unwrap().members, std::slice::from_ref(&alice));
    // A re-sent message (same client id) still wakes today's members.
    assert_eq!(&*send(&alice, 1, b"2").unwrap().members, std::slice::from_ref(&alice));
}

/// In a named group (kind byte 2) the creator is admin: a member's commit
/// that removes someone else, or adds someone new when only admins may, is
/// refused before it is stored; admins change roles, nobody else.
pub fn roles_in_named_groups(s: &impl Store) {
    for h in ["alice", "bob", "carol", "dave"] {
        register(s, h);
    }
    let (alice, bob, carol, dave) = (dev("alice"), dev("bob"), dev("carol"), dev("dave"));
    let mut g = [2u8; 16];
    g[1] = 7;
    let g: &[u8] = &g;
    s.create_group(g, &alice, NOW).unwrap();
    let added = [bob.clone(), carol.clone()];
    let mut commit = msg(g, &alice, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    commit.welcome = Some(b"welcome");
    s.append(&commit, NOW).unwrap();
    let rec = s.group(g).unwrap().unwrap();
    assert_eq!((rec.admins.clone(), rec.members_can_add), (vec!["alice".to_owned()], true));
    // Bob removing Carol: refused, nothing stored.
    let gone = [carol.clone()];
    let mut remove = msg(g, &bob, 1, b"r", MessageKind::Commit);
    remove.removed = &gone;
    assert!(matches!(s.append(&remove, NOW), Err(StoreError::NotAdmin(_))));
    assert_eq!(s.group(g).unwrap().unwrap().epoch, 1, "nothing was appended");
    // Bob may add (members may, by default), and not once admins only may.
    let new = [dave.clone()];
    let mut add = msg(g, &bob, 1, b"a", MessageKind::Commit);
    add.added = &new;
    add.welcome = Some(b"welcome");
    assert!(matches!(s.set_group_policy(g, &bob, false), Err(StoreError::NotAdmin(_))));
    s.set_group_policy(g, &alice, false).unwrap();
    assert!(matches!(s.append(&add, NOW), Err(StoreError::NotAdmin(_))));
    // Roles: only admins change them; the last admin cannot step down.
    assert!(matches!(s.set_role(g, &bob, "bob", true), Err(StoreError::NotAdmin(_))));
    assert!(matches!(s.set_role(g, &alice, "alice", false), Err(StoreError::Invalid(_))));
    s.set_role(g, &alice, "bob", true).unwrap();
    s.append(&remove, NOW).unwrap();
    s.append(&msg(g, &bob, 2, b"x", MessageKind::Application), NOW).unwrap();
    assert_eq!(s.group(g).unwrap().unwrap().admins, vec!["alice".to_owned(), "bob".to_owned()]);
    // A group without roles (not a named group) lets anyone, as before.
    let plain: &[u8] = b"group-no-roles!!";
    s.create_group(plain, &alice, NOW).unwrap();
    let mut commit = msg(plain, &alice, 0, b"c", MessageKind::Commit);
    commit.added = &added;
    s.append(&commit, NOW).unwrap();
    let mut remove = msg(plain, &bob, 1, b"r", MessageKind::Commit);
    remove.removed = &gone;
    s.append(&remove, NOW).unwrap();
    assert!(s.group(plain).unwrap().unwrap().admins.is_empty());
}
