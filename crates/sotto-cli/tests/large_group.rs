//! A group of 100 members, created and used through the real server. Slow
//! in debug builds (a minute or so), so it runs as its own test binary.

mod common;

use std::time::Instant;

use common::*;
use sotto_client::Session;
use sotto_core::{Messenger, ProfileKey};

#[test]
fn a_message_reaches_all_100_members() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_on(&root.path().join("server"), 0, &["--open-registration"]);
    let rt = runtime();
    let names: Vec<String> = (0..100).map(|i| format!("member{i:03}")).collect();
    // Key-file profiles: Argon2 a hundred times would only test Argon2.
    let messengers: Vec<Messenger> = names
        .iter()
        .map(|n| {
            let m = Messenger::create(&root.path().join(n), &ProfileKey::KeyFile, n, &server.address).unwrap();
            m.set_auto_accept(true).unwrap();
            m
        })
        .collect();
    rt.block_on(async {
        for m in &messengers {
            Session::register(m, None).await.unwrap().close().await;
        }
        let started = Instant::now();
        let mut owner = Session::open(&messengers[0]).await.unwrap();
        owner.create_group("hundred", &names[1..]).await.unwrap();
        owner.send_text("#hundred", "one message for a hundred people").await.unwrap();
        owner.close().await;
        eprintln!("create with 99 members + send: {:?}", started.elapsed());

        let started = Instant::now();
        for (i, m) in messengers.iter().enumerate().skip(1) {
            let mut s = Session::open(m).await.unwrap();
            s.sync().await.unwrap();
            s.close().await;
            let got = m.take_unfetched().unwrap();
            let text: Vec<_> =
                got.iter().filter(|x| x.state == sotto_core::MessageState::Received && !x.detail.annotation).collect();
            assert_eq!(text.len(), 1, "member {i}: {got:?}");
            assert_eq!(text[0].conversation, "#hundred");
            assert_eq!(text[0].body, sotto_core::Body::Text { text: "one message for a hundred people".into() });
        }
        eprintln!("99 members received: {:?}", started.elapsed());
        assert_eq!(messengers[99].groups().unwrap()[0].members.len(), 100);
    });
}
