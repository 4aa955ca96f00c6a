//! `mls`: the client's real MLS work through `sotto-core`, for each suite
//! (post-quantum X-Wing and classical X25519): encrypt + decrypt of 1 KiB
//! messages, a backlog processed into the real SQLCipher store, the size of
//! a KeyPackage, and adding a member to (and joining) groups of various
//! sizes.

use std::time::Instant;

use anyhow::{Context, Result};
use openmls::prelude::Ciphersuite;
use sotto_core::{Invitee, Messenger, ProfileKey};
use sotto_proto::{ClaimedKeyPackage, Delivery, Request};

/// `m` as someone to add, with a KeyPackage of the post-quantum suite.
pub(crate) fn invitee(m: &Messenger) -> Result<Invitee> {
    invitee_in(m, sotto_core::suite::POST_QUANTUM)
}

/// `m` as someone to add, with a KeyPackage of `suite`.
fn invitee_in(m: &Messenger, suite: Ciphersuite) -> Result<Invitee> {
    let package = key_package(m, suite)?;
    Ok(Invitee {
        handle: m.identity().handle.clone(),
        account_key: m.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: m.identity().device_info(), package }],
    })
}

/// One fresh KeyPackage of `m` of `suite`, as uploaded.
fn key_package(m: &Messenger, suite: Ciphersuite) -> Result<Vec<u8>> {
    let Request::UploadKeyPackages { packages, .. } = m.key_package_upload(1)? else { unreachable!() };
    let wanted = sotto_core::suite::wire(suite);
    packages
        .into_iter()
        .find(|p| sotto_proto::suites::key_package_suite(p) == Some(wanted))
        .map(|p| p.into_vec())
        .context("the device publishes no KeyPackage of that suite")
}

/// A two-person conversation from `a` to `b`, with no server: the commit
/// and welcome are handed over directly.
fn pair(a: &Messenger, b: &Messenger, suite: Ciphersuite) -> Result<Vec<u8>> {
    let commit = a.start_direct(invitee_in(b, suite)?)?;
    a.accepted(&commit.client_id, 1)?;
    b.handle_welcome(&commit.group_id, commit.welcome.as_deref().unwrap_or_default())?;
    Ok(commit.group_id)
}

/// Sends `n` 1 KiB texts from `a` and processes each at `b` as it comes;
/// msgs/s of both together.
fn exchange(a: &Messenger, b: &Messenger, group: &[u8], n: u64) -> Result<f64> {
    let t = Instant::now();
    for d in encrypt(a, b, group, n)? {
        b.handle_delivery(&d)?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// `n` 1 KiB texts from `a` to `b`, as the server would deliver them.
fn encrypt(a: &Messenger, b: &Messenger, group: &[u8], n: u64) -> Result<Vec<Delivery>> {
    let text = "x".repeat(1024);
    let mut out = Vec::with_capacity(n as usize);
    for seq in 2..n + 2 {
        let item = a.prepare_text(&format!("@{}", b.identity().handle), &text)?;
        a.accepted(&item.client_id, seq)?;
        debug_assert_eq!(item.group_id, group);
        out.push(item.delivered_as(a.me(), seq));
    }
    Ok(out)
}

pub struct GroupTiming {
    pub size: usize,
    pub add_ms: f64,
    pub join_ms: f64,
    pub commit_bytes: usize,
    /// The Welcome the new member receives (it carries the ratchet tree).
    pub welcome_bytes: usize,
    /// Encrypting one 1 KiB message to the whole group.
    pub send_ms: f64,
}

pub struct MlsResult {
    /// The suite measured.
    pub suite: Ciphersuite,
    /// Bytes of one KeyPackage as uploaded.
    pub key_package_bytes: usize,
    /// openmls alone, in memory: encrypt + decrypt of 1 KiB per second.
    pub raw_msgs_per_s: f64,
    /// The same through sotto-core: content encoding, the outbox and the
    /// group state kept in the profile's SQLite store (in memory here).
    pub msgs_per_s: f64,
    pub backlog: u64,
    pub backlog_secs: f64,
    pub groups: Vec<GroupTiming>,
}

/// Both suites, post-quantum first.
pub fn run(messages: u64, backlog: u64, sizes: &[usize]) -> Result<Vec<MlsResult>> {
    sotto_core::suite::SUITES.iter().map(|s| run_suite(*s, messages, backlog, sizes)).collect()
}

fn run_suite(suite: Ciphersuite, messages: u64, backlog: u64, sizes: &[usize]) -> Result<MlsResult> {
    // In memory (ephemeral store): the cost of the cryptography and state.
    let (a, b) = (
        crate::bench_person(Messenger::create_ephemeral("alice", "sotto://x:1"))?,
        crate::bench_person(Messenger::create_ephemeral("bob", "sotto://x:1"))?,
    );
    let key_package_bytes = key_package(&a, suite)?.len();
    let g = pair(&a, &b, suite)?;
    let msgs_per_s = exchange(&a, &b, &g, messages)?;
    let raw_msgs_per_s = raw(messages, suite)?;

    // Into a real SQLCipher profile on disk, one transaction per message.
    let dir = tempfile::tempdir()?;
    let c = crate::bench_person(Messenger::create(
        &dir.path().join("carol"),
        &ProfileKey::KeyFile,
        "carol",
        "sotto://x:1",
    ))?;
    let d = crate::bench_person(Messenger::create_ephemeral("dave", "sotto://x:1"))?;
    let g2 = pair(&d, &c, suite)?;
    // A backlog arrives on sync and is processed in batches of 256, as the
    // client does (one local commit per batch).
    let waiting = encrypt(&d, &c, &g2, backlog)?;
    let t = Instant::now();
    for chunk in waiting.chunks(256) {
        c.handle_deliveries(chunk)?;
    }
    let backlog_secs = t.elapsed().as_secs_f64();

    let mut groups = Vec::new();
    for &size in sizes {
        let owner = crate::bench_person(Messenger::create_ephemeral("owner", "sotto://x:1"))?;
        let members: Vec<Messenger> = (1..size - 1)
            .map(|i| crate::bench_person(Messenger::create_ephemeral(&format!("m{i}"), "sotto://x:1")))
            .collect::<Result<_, _>>()?;
        let invitees: Vec<Invitee> = members.iter().map(|m| invitee_in(m, suite)).collect::<Result<_>>()?;
        let commit = owner.create_group("bench", invitees)?;
        owner.accepted(&commit.client_id, 1)?;
        // The member that makes the group `size` strong.
        let last = crate::bench_person(Messenger::create_ephemeral("last", "sotto://x:1"))?;
        let t = Instant::now();
        let add = owner.add_to_group("#bench", vec![invitee_in(&last, suite)?])?.context("someone to add")?;
        owner.accepted(&add.client_id, 2)?;
        let add_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        last.handle_welcome(&add.group_id, add.welcome.as_deref().unwrap_or_default())?;
        let join_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let sent = owner.prepare_text("#bench", &"x".repeat(1024))?;
        owner.accepted(&sent.client_id, 3)?;
        let send_ms = t.elapsed().as_secs_f64() * 1000.0;
        let welcome_bytes = add.welcome.as_ref().map_or(0, Vec::len);
        groups.push(GroupTiming { size, add_ms, join_ms, commit_bytes: add.payload.len(), welcome_bytes, send_ms });
    }
    Ok(MlsResult { suite, key_package_bytes, raw_msgs_per_s, msgs_per_s, backlog, backlog_secs, groups })
}

/// openmls by itself: two members, the same ciphersuite and padding as
/// sotto, openmls's in-memory storage; one 1 KiB application message
/// created by one member and processed by the other, `n` times, on this
/// thread only.
fn raw(n: u64, suite: Ciphersuite) -> Result<f64> {
    use openmls::prelude::{tls_codec::*, *};
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_libcrux_crypto::Provider;
    let member = |name: &str| -> Result<(Provider, SignatureKeyPair, CredentialWithKey)> {
        let provider = Provider::new().map_err(|e| anyhow::anyhow!("no randomness: {e:?}"))?;
        let signer = SignatureKeyPair::new(suite.signature_algorithm())?;
        signer.store(provider.storage())?;
        let credential = BasicCredential::new(name.as_bytes().to_vec());
        let cwk = CredentialWithKey { credential: credential.into(), signature_key: signer.public().into() };
        Ok((provider, signer, cwk))
    };
    let (pa, sa, ca) = member("alice")?;
    let (pb, sb, cb) = member("bob")?;
    let kp = KeyPackage::builder().build(suite, &pb, &sb, cb)?;
    let create = MlsGroupCreateConfig::builder()
        .ciphersuite(suite)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .padding_size(32)
        .build();
    let mut alice = MlsGroup::new(&pa, &sa, &create, ca)?;
    let (_, welcome, _) = alice.add_members(&pa, &sa, std::slice::from_ref(kp.key_package()))?;
    alice.merge_pending_commit(&pa)?;
    let welcome = MlsMessageIn::tls_deserialize_exact(welcome.tls_serialize_detached()?)?;
    let MlsMessageBodyIn::Welcome(welcome) = welcome.extract() else { anyhow::bail!("not a welcome") };
    let join = MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .padding_size(32)
        .build();
    let mut bob = StagedWelcome::new_from_welcome(&pb, &join, welcome, None)?.into_group(&pb)?;
    let text = vec![b'x'; 1024];
    let t = Instant::now();
    for _ in 0..n {
        let out = alice.create_message(&pa, &sa, &text)?.tls_serialize_detached()?;
        let msg = MlsMessageIn::tls_deserialize_exact(out)?.try_into_protocol_message()?;
        let ProcessedMessageContent::ApplicationMessage(m) = bob.process_message(&pb, msg)?.into_content() else {
            anyhow::bail!("not an application message")
        };
        anyhow::ensure!(m.into_bytes() == text, "decrypted text differs");
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
