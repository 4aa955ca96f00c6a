//! The chat screen's state, driven by keys and events without a terminal.

use super::*;
use sotto_core::{Body, StoredMessage};

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
}

pub(crate) fn msg(conv: &str, from: &str, text: &str, id: u8) -> StoredMessage {
    StoredMessage {
        id: vec![id],
        conversation: conv.into(),
        sender: from.into(),
        outgoing: from == "me",
        sent_at: 1_700_000_000_000 + i64::from(id) * 60_000,
        received_at: 0,
        body: Body::Text { text: text.into() },
        state: if from == "me" { sotto_core::MessageState::Sent } else { sotto_core::MessageState::Received },
        seq: Some(u64::from(id)),
        detail: Default::default(),
    }
}

#[test]
fn typing_editing_and_sending() {
    let mut app = App::default();
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "hi", 1))));
    assert_eq!(app.model.current.as_deref(), Some("@bob"));
    typed(&mut app, "helo");
    app.on_key(key(KeyCode::Left));
    app.on_key(key(KeyCode::Char('l')));
    assert_eq!(app.input, "hello");
    app.on_key(key(KeyCode::Home));
    app.on_key(key(KeyCode::Delete));
    assert_eq!(app.input, "ello");
    app.on_key(key(KeyCode::End));
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
    typed(&mut app, "ö");
    app.on_key(key(KeyCode::Backspace));
    typed(&mut app, "x");
    assert_eq!(app.input, "ello\nx");
    let cmd = app.on_key(key(KeyCode::Enter));
    assert_eq!(cmd, Some(Command::Send { to: "@bob".into(), text: "ello\nx".into() }));
    assert!(app.input.is_empty());
    // Up brings the sent line back.
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.input, "ello\nx");
    app.on_key(key(KeyCode::Down));
    assert!(app.input.is_empty());
}

#[test]
fn unread_counts_and_switching() {
    let mut app = App::default();
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "one", 1))));
    app.on_net(Event::Message(Box::new(msg("@carol", "carol", "two", 2))));
    app.on_net(Event::Message(Box::new(msg("@carol", "carol", "three", 3))));
    assert_eq!(app.model.conversations["@carol"].unread, 2);
    assert_eq!(app.model.conversations["@bob"].unread, 0, "the open one counts nothing");
    assert_eq!(app.model.order, vec!["@carol", "@bob"]);
    assert_eq!(app.model.current.as_deref(), Some("@bob"));
    app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL));
    assert_eq!(app.model.current.as_deref(), Some("@carol"));
    assert_eq!(app.model.conversations["@carol"].unread, 0, "opening clears the count");
    app.on_key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL));
    assert_eq!(app.model.current.as_deref(), Some("@bob"));
    app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL));
    // The same message again (its acknowledgement) replaces, not adds.
    app.on_net(Event::Message(Box::new(msg("@carol", "carol", "three", 3))));
    assert_eq!(app.model.conversations["@carol"].messages.len(), 2);
}

#[test]
fn slash_commands_and_completion() {
    let mut app = App::default();
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "hi", 1))));
    app.on_net(Event::Message(Box::new(msg("#crew", "bob", "hey", 2))));
    typed(&mut app, "/ms");
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.input, "/msg ");
    typed(&mut app, "@b");
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.input, "/msg @bob ");
    typed(&mut app, "hello there");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Send { to: "@bob".into(), text: "hello there".into() }));
    typed(&mut app, "/send #cr");
    app.on_key(key(KeyCode::Tab));
    typed(&mut app, "/tmp/a b.txt");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Command::SendFile { to: "#crew".into(), path: "/tmp/a b.txt".into() })
    );
    assert_eq!(app.model.current.as_deref(), Some("#crew"));
    typed(&mut app, "/bmsg all of you");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Broadcast { text: "all of you".into() }));
    typed(&mut app, "/group add crew @dave");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Command::Group(GroupChange::Add { name: "crew".into(), people: vec!["dave".into()] }))
    );
    typed(&mut app, "/verify @bob");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Verify { handle: "bob".into() }));
    typed(&mut app, "/requests");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Requests));
    typed(&mut app, "/accept @mallory");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::AcceptRequest { conversation: "@mallory".into() }));
    typed(&mut app, "/decline #deals");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::DeclineRequest { conversation: "#deals".into() }));
    typed(&mut app, "/accept");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    assert!(app.model.info.starts_with("usage"), "{}", app.model.info);
    typed(&mut app, "/nonsense");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    assert!(app.model.info.contains("unknown command"));
    typed(&mut app, "/msg");
    app.on_key(key(KeyCode::Enter));
    assert!(app.model.info.starts_with("usage"));
    app.profiles = vec![("work".into(), "@me sotto://x:1".into())];
    typed(&mut app, "/profile");
    app.on_key(key(KeyCode::Enter));
    assert!(app.model.info.contains("work (@me sotto://x:1)"), "{}", app.model.info);
    assert!(!app.quit);
    typed(&mut app, "/profile work");
    app.on_key(key(KeyCode::Enter));
    assert!(app.quit);
    assert_eq!(app.switch_to.as_deref(), Some("work"));
    let mut app = App::default();
    typed(&mut app, "/exit");
    app.on_key(key(KeyCode::Enter));
    assert!(app.quit && app.switch_to.is_none());
}

#[test]
fn select_to_reply_react_up_to_edit_and_delete_after_a_yes() {
    let mut app = App::default();
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "lunch?", 1))));
    app.on_net(Event::Message(Box::new(msg("@bob", "me", "maybe", 2))));
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "noon", 3))));
    let ctrl = |c| KeyEvent::new(c, KeyModifiers::CONTROL);
    // Ctrl-↑ twice selects "maybe", a third time "lunch?"; typing replies.
    app.on_key(ctrl(KeyCode::Up));
    app.on_key(ctrl(KeyCode::Up));
    app.on_key(ctrl(KeyCode::Up));
    assert_eq!(app.selected, Some(vec![1]));
    typed(&mut app, "yes");
    let cmd = app.on_key(key(KeyCode::Enter));
    assert_eq!(cmd, Some(Command::Reply { to: "@bob".into(), text: "yes".into(), reply_to: "01".into() }));
    assert_eq!(app.selected, None, "a reply ends selecting");
    // /react acts on the newest message when none is selected.
    typed(&mut app, "/react 🎉");
    let cmd = app.on_key(key(KeyCode::Enter));
    assert_eq!(cmd, Some(Command::React { id: "03".into(), emoji: "🎉".into(), remove: false }));
    // ↑ in an empty line edits the last own message.
    app.on_key(key(KeyCode::Up));
    assert_eq!((app.input.as_str(), app.editing.clone()), ("maybe", Some(vec![2])));
    app.on_key(key(KeyCode::Backspace));
    typed(&mut app, "e!");
    let cmd = app.on_key(key(KeyCode::Enter));
    assert_eq!(cmd, Some(Command::Edit { id: "02".into(), text: "maybe!".into() }));
    // A delete for everyone asks first; anything but y keeps it.
    typed(&mut app, "/delete");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    assert!(app.model.info.contains("for everyone?"), "{}", app.model.info);
    assert_eq!(app.on_key(key(KeyCode::Char('n'))), None);
    typed(&mut app, "/delete");
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.on_key(key(KeyCode::Char('y'))), Some(Command::Delete { id: "02".into(), for_me: false }));
    typed(&mut app, "/timer 1h");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Timer { conversation: "@bob".into(), secs: 3600 }));
    // Typing tells the others once per message written ("yes", then the
    // edit), not at every key; what is shown is read.
    let queued = app.take_queued();
    assert!(queued.contains(&Command::Read { conversation: "@bob".into() }), "{queued:?}");
    assert_eq!(queued.iter().filter(|c| matches!(c, Command::Typing { .. })).count(), 2, "{queued:?}");
}

#[test]
fn search_results_show_over_the_screen_and_enter_opens_the_message_in_its_conversation() {
    use crate::frontend::event::SearchHit;
    use crate::frontend::Outcome;
    let mut app = App::default();
    for i in 1..=60u8 {
        app.on_net(Event::Message(Box::new(msg("@bob", "bob", &format!("line {i}"), i))));
    }
    app.on_net(Event::Message(Box::new(msg("#crew", "carol", "latest", 61))));
    app.open("#crew");
    typed(&mut app, "/search");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None, "no words: a usage line");
    assert!(app.model.info.starts_with("usage: /search"), "{}", app.model.info);
    typed(&mut app, "/search line 3");
    let cmd = app.on_key(key(KeyCode::Enter));
    assert_eq!(cmd, Some(Command::Search { text: "line 3".into(), conversation: None }));
    let hit = |id: u8| SearchHit {
        conversation: "@bob".into(),
        id: hex::encode([id]),
        from: "bob".into(),
        sent_at: 0,
        text: format!("line {id}"),
    };
    let found = Outcome::Found { query: "line 3".into(), hits: vec![hit(30), hit(3)] };
    app.on_net(Event::Outcome { request: 1, outcome: found });
    assert_eq!(app.model.info, "2 found for \"line 3\"");
    let view = app.search.as_ref().expect("results shown");
    assert_eq!(view.hits.len(), 2);
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    assert!(app.search.is_none());
    assert_eq!(app.model.current.as_deref(), Some("@bob"));
    assert_eq!(app.selected, Some(vec![3]), "the older hit, chosen with ↓");
    // Drawn, the selected message is in view although 57 newer ones follow.
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    t.draw(|f| crate::chat::ui::draw(f, &app)).unwrap();
    let buf = t.backend().buffer().clone();
    let screen: String =
        (0..24).map(|y| (0..80).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>()).collect();
    assert!(screen.contains("line 3 ") || screen.contains("line 3│"), "{screen}");
    // Nothing found shows no overlay, only the status line.
    let none = Outcome::Found { query: "zebra".into(), hits: vec![] };
    app.on_net(Event::Outcome { request: 2, outcome: none });
    assert!(app.search.is_none());
    assert_eq!(app.model.info, "nothing found for \"zebra\"");
}

fn drawn(app: &App, w: u16, h: u16) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
    t.draw(|f| crate::chat::ui::draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..h).map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>() + "\n").collect()
}

#[test]
fn messages_elsewhere_ring_the_bell_and_wait_in_the_hotlist_mentions_first() {
    use crate::frontend::Outcome;
    let mut app = App::default();
    app.on_net(Event::Identity { me: "me".into(), server: "sotto://x:1#sha256=y".into() });
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "hi", 1))));
    let mut out = Vec::new();
    app.ring(&mut out);
    assert!(out.is_empty(), "a message in the open conversation rings nothing");
    app.on_net(Event::Message(Box::new(msg("@carol", "carol", "psst", 2))));
    let mut mention = msg("#crew", "dave", "@me look", 3);
    mention.detail.mentions = vec!["me".into()];
    app.on_net(Event::Message(Box::new(mention)));
    app.ring(&mut out);
    assert_eq!(out, b"\x07", "one bell for what arrived together");
    assert_eq!(app.hotlist(), vec![("#crew".into(), 1, true), ("@carol".into(), 1, false)]);
    // At 40 columns there is no list on the left; the status bar says it.
    let screen = drawn(&app, 40, 12);
    assert!(screen.contains("#crew(1@)"), "{screen}");
    // Desktop notifications when asked for; no control characters pass.
    typed(&mut app, "/notify on");
    app.on_key(key(KeyCode::Enter));
    app.on_net(Event::Message(Box::new(msg("@carol", "carol", "evil\x1b]0;x\x07", 4))));
    let mut out = Vec::new();
    app.ring(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("\x07\x1b]9;sotto @carol: evil ]0;x \x07"), "{out:?}");
    typed(&mut app, "/bell off");
    app.on_key(key(KeyCode::Enter));
    typed(&mut app, "/notify off");
    app.on_key(key(KeyCode::Enter));
    app.on_net(Event::Message(Box::new(msg("@carol", "carol", "again", 5))));
    let mut out = Vec::new();
    app.ring(&mut out);
    assert!(out.is_empty());
    // Opening one shows where its unread messages start.
    app.open("@carol");
    assert_eq!(app.new_from, Some(vec![2]));
    let screen = drawn(&app, 80, 20);
    assert!(screen.contains("new messages"), "{screen}");
    assert!(app.hotlist().iter().all(|(n, _, _)| n != "@carol"));
    let _ = Outcome::Presence;
}

#[test]
fn a_send_to_nobody_leaves_no_conversation_and_a_new_group_takes_focus() {
    use crate::frontend::Outcome;
    let mut app = App::default();
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "hi", 1))));
    typed(&mut app, "/msg @nobody hello?");
    assert!(matches!(app.on_key(key(KeyCode::Enter)), Some(Command::Send { .. })));
    assert_eq!(app.model.current.as_deref(), Some("@nobody"));
    let error = Outcome::Error { message: "there is no @nobody on this server".into() };
    app.on_net(Event::Outcome { request: 1, outcome: error });
    assert!(!app.model.conversations.contains_key("@nobody"), "no phantom conversation");
    assert!(!app.model.order.iter().any(|n| n == "@nobody"));
    assert_eq!(app.model.current.as_deref(), Some("@bob"), "back where the person was");
    let created = Outcome::GroupChanged { conversation: "#crew".into(), change: "create" };
    app.on_net(Event::Outcome { request: 2, outcome: created });
    assert_eq!(app.model.current.as_deref(), Some("#crew"));
}

#[test]
fn the_whole_safety_number_shows_at_any_width_and_members_in_a_box() {
    use crate::frontend::event::MemberEntry;
    use crate::frontend::Outcome;
    let mut app = App::default();
    app.on_net(Event::Message(Box::new(msg("#crew", "bob", "hi", 1))));
    let number = "12345 67890 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890";
    let sn = Outcome::SafetyNumber { handle: "bob".into(), number: number.into(), verified: false, key_changed: false };
    app.on_net(Event::Outcome { request: 1, outcome: sn });
    for width in [40u16, 60, 100] {
        let screen = drawn(&app, width, 24);
        let digits: String = screen.chars().filter(|c| c.is_ascii_digit()).collect();
        let want: String = number.chars().filter(|c| c.is_ascii_digit()).collect();
        assert!(digits.contains(&want), "{width} columns: {screen}");
    }
    app.on_key(key(KeyCode::Esc));
    assert!(app.notice.is_none());
    typed(&mut app, "/members");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Members { conversation: "#crew".into() }));
    let members = vec![
        MemberEntry { handle: "alice".into(), admin: true, me: false },
        MemberEntry { handle: "me".into(), admin: false, me: true },
    ];
    app.on_net(Event::Outcome { request: 2, outcome: Outcome::Members { conversation: "#crew".into(), members } });
    let screen = drawn(&app, 60, 20);
    assert!(screen.contains("@alice (admin)") && screen.contains("@me (you)"), "{screen}");
    typed(&mut app, "/confirm @bob 1234 5678");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Command::Confirm { handle: "@bob".into(), digits: "1234 5678".into() })
    );
    typed(&mut app, "/trust @bob");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Trust { handle: "@bob".into() }));
}

#[test]
fn a_muted_conversation_rings_only_for_a_mention() {
    let mut app = App::default();
    app.on_net(Event::Identity { me: "me".into(), server: "sotto://x:1#sha256=y".into() });
    app.on_net(Event::Message(Box::new(msg("@bob", "bob", "hi", 1))));
    app.on_net(Event::Message(Box::new(msg("#crew", "carol", "first", 2))));
    app.open("@bob");
    app.open("#crew");
    app.ring(&mut Vec::new());
    typed(&mut app, "/mute");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Mute { conversation: "#crew".into(), muted: true }));
    app.on_net(Event::Muted { conversation: "#crew".into(), muted: true });
    app.open("@bob");
    app.on_net(Event::Message(Box::new(msg("#crew", "carol", "chatter", 3))));
    let mut out = Vec::new();
    app.ring(&mut out);
    assert!(out.is_empty(), "no bell for a muted conversation");
    assert!(app.hotlist().is_empty(), "nor a place in the hotlist");
    let mut mention = msg("#crew", "carol", "@me look", 4);
    mention.detail.mentions = vec!["me".into()];
    app.on_net(Event::Message(Box::new(mention)));
    app.ring(&mut out);
    assert_eq!(out, b"\x07", "a mention still calls");
    assert_eq!(app.hotlist(), vec![("#crew".into(), 2, true)]);
}

#[test]
fn a_text_not_sent_is_marked_and_retry_sends_it_again_and_operator_notices_show_apart() {
    let mut app = App::default();
    app.on_net(Event::Message(Box::new(msg("#crew", "bob", "hi", 1))));
    typed(&mut app, "/retry");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None, "nothing to retry");
    assert!(app.model.info.contains("nothing here waits for a retry"), "{}", app.model.info);
    let mut failed = msg("#crew", "me", "see you at eight", 2);
    failed.state = sotto_core::MessageState::NotSent;
    app.on_net(Event::Message(Box::new(failed)));
    assert!(drawn(&app, 80, 20).contains("not sent"), "{}", drawn(&app, 80, 20));
    typed(&mut app, "/retry");
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Command::Retry { id: "02".into() }));

    let notice = sotto_core::ServerNotice { id: 1, text: "Upgrade at 22:00".into(), sent_at: 1_700_000_000_000 };
    app.on_net(Event::ServerNotice { notice: notice.clone(), fresh: false });
    assert!(app.notice.is_none(), "an old notice shown before does not pop up again");
    app.on_net(Event::ServerNotice { notice: sotto_core::ServerNotice { id: 2, ..notice }, fresh: true });
    let screen = drawn(&app, 60, 20);
    assert!(screen.contains("server notice") && screen.contains("Not end-to-end encrypted"), "{screen}");
    assert!(screen.contains("Upgrade at 22:00"), "{screen}");
    app.on_key(key(KeyCode::Esc));
    typed(&mut app, "/notices");
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.model.notices.len(), 2);
    assert!(app
        .notice
        .as_ref()
        .is_some_and(|n| n.lines.iter().filter(|l| l.contains("Upgrade at 22:00")).count() == 2));
}
