//! What a malicious server can answer a client's requests: any sequence of
//! answers (decoded from bytes the way the client's connection decodes a
//! response, or one of the refusals the policy handles) fed to the real
//! sending policy (`sotto_core::Policy`) while it flushes an outbox. No
//! answer may panic the client, the policy must end (it asks at most once
//! per answer), and the profile must still work afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_core::{Invitee, Messenger, Policy, Step, Task};
use sotto_proto::{codec, ClaimedKeyPackage, ErrorBody, ErrorCode, Request, ServerMessage};

const CODES: [ErrorCode; 7] = [
    ErrorCode::StaleEpoch,
    ErrorCode::RateLimited,
    ErrorCode::GroupExists,
    ErrorCode::NotMember,
    ErrorCode::UnknownGroup,
    ErrorCode::Internal,
    ErrorCode::BadRequest,
];

/// Alice with two messages waiting in a one-to-one group with Bob.
fn alice() -> Messenger {
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").expect("profile");
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").expect("profile");
    let Request::UploadKeyPackages { packages, .. } = bob.key_package_upload(1).expect("packages") else {
        unreachable!("an upload request")
    };
    let invitee = Invitee {
        handle: "bob".into(),
        account_key: bob.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: bob.identity().device_info(), package: packages[0].to_vec() }],
    };
    let commit = alice.start_direct(invitee).expect("group");
    alice.accepted(&commit.client_id, 1).expect("accepted");
    alice.prepare_text("@bob", "one").expect("queued");
    alice.prepare_text("@bob", "two").expect("queued");
    alice
}

fuzz_target!(|data: &[u8]| {
    let m = alice();
    // Length-prefixed answers: a frame the connection would decode, or (for
    // a frame that does not decode) a refusal chosen by its first byte.
    let mut answers = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, next) = tail.split_at((len as usize).min(tail.len()));
        rest = next;
        answers.push(match codec::decode_server(chunk) {
            Ok(ServerMessage::Response { result, .. }) => result,
            _ => Err(ErrorBody::new(CODES[chunk.first().copied().unwrap_or(0) as usize % CODES.len()])),
        });
    }
    let mut policy = Policy::new([Task::Flush, Task::Repair]);
    let mut answers = answers.into_iter();
    let mut answer = None;
    loop {
        match policy.step(&m, answer.take()) {
            Ok(Step::Request(_)) => match answers.next() {
                Some(a) => answer = Some(a),
                None => break,
            },
            Ok(Step::Pause(_)) => {}
            Ok(Step::Done(_)) | Err(_) => break,
        }
    }
    // Still usable, and nothing written is lost: the texts are in history.
    m.outbox().expect("the outbox still reads");
    assert!(m.history("@bob").expect("history reads").len() >= 2, "the texts stay in history");
    m.key_package_upload(1).expect("the profile still works");
});
