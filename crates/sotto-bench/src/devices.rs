//! `devices`: what several devices per account cost on the client, through
//! `sotto-core` with no server (commits, welcomes and deliveries are handed
//! over directly, as the server would route them):
//!
//! - a one-to-one conversation where each person has 1 and then 3
//!   devices: encrypting a 1 KiB text, and every other device reading it;
//! - linking a device to an account that is in 100 conversations: the
//!   first device's 100 add commits, the new device's 100 welcomes, and
//!   each peer's reading of its commit.

use std::time::Instant;

use anyhow::{Context, Result};
use sotto_core::link::LinkRequest;
use sotto_core::{Invitee, Messenger, ProfileKey};
use sotto_proto::{ClaimedKeyPackage, Request};

/// One device's invitee entry (one fresh KeyPackage).
fn package(m: &Messenger) -> Result<ClaimedKeyPackage> {
    let Request::UploadKeyPackages { packages, .. } = m.key_package_upload(1)? else { unreachable!() };
    Ok(ClaimedKeyPackage { device: m.identity().device_info(), package: packages[0].to_vec() })
}

/// The invitee for a set of devices of one account.
fn invitee(devices: &[&Messenger]) -> Result<Invitee> {
    let first = devices[0];
    Ok(Invitee {
        handle: first.identity().handle.clone(),
        account_key: first.identity().account_key(),
        packages: devices.iter().map(|d| package(d)).collect::<Result<_>>()?,
    })
}

/// `count - 1` further devices of `first`'s account, linked for real
/// (link request, approval, handover) into profiles under `dir`.
fn link_devices(first: &Messenger, count: usize, dir: &std::path::Path) -> Result<Vec<Messenger>> {
    let mut out = Vec::new();
    for n in 2..=count as u32 {
        let request = LinkRequest::new(&format!("device {n}"))?;
        let candidate = first.inspect_link(&request.code(), request.key_package())?;
        let (_, answer) = first.approve_link(&candidate, n, 0)?;
        let (identity, handover) = request.accept(&answer)?;
        let path = dir.join(format!("{}-{n}", first.identity().handle));
        out.push(crate::bench_person(Messenger::create_linked(&path, &ProfileKey::KeyFile, identity, &handover))?);
    }
    Ok(out)
}

pub struct ConversationTiming {
    pub devices_each: usize,
    /// Encrypting one 1 KiB text at the sender.
    pub send_ms: f64,
    /// Reading it, summed over every other device of both people.
    pub read_ms_all_devices: f64,
    /// Size of the commit that started the conversation.
    pub start_commit_bytes: usize,
}

pub struct LinkTiming {
    pub groups: usize,
    /// The first device certifying and answering the link request.
    pub approve_ms: f64,
    /// The new device reading the answer and making its profile.
    pub accept_ms: f64,
    /// The first device's add commits, one per conversation, in all.
    pub commits_ms: f64,
    /// The new device joining every conversation, in all.
    pub welcomes_ms: f64,
    /// One peer reading the commit that added the device (mean).
    pub peer_commit_ms: f64,
    pub commit_bytes: usize,
    pub welcome_bytes: usize,
}

pub struct DevicesResult {
    pub conversations: Vec<ConversationTiming>,
    pub link: LinkTiming,
}

pub fn run(messages: u64, groups: usize) -> Result<DevicesResult> {
    let dir = tempfile::tempdir()?;
    let mut conversations = Vec::new();
    for each in [1, 3] {
        conversations.push(conversation(each, messages, &dir.path().join(format!("c{each}")))?);
    }
    let link = link(groups, &dir.path().join("link"))?;
    Ok(DevicesResult { conversations, link })
}

fn conversation(each: usize, messages: u64, dir: &std::path::Path) -> Result<ConversationTiming> {
    std::fs::create_dir_all(dir)?;
    let a1 = crate::bench_person(Messenger::create(&dir.join("alice"), &ProfileKey::KeyFile, "alice", "sotto://x:1"))?;
    let b1 = crate::bench_person(Messenger::create(&dir.join("bob"), &ProfileKey::KeyFile, "bob", "sotto://x:1"))?;
    let a_more = link_devices(&a1, each, dir)?;
    let b_more = link_devices(&b1, each, dir)?;
    let bobs: Vec<&Messenger> = std::iter::once(&b1).chain(&b_more).collect();
    let start = a1.start_direct(invitee(&bobs)?)?;
    a1.accepted(&start.client_id, 1)?;
    let mut seq = 1;
    let welcome = start.welcome.clone().unwrap_or_default();
    for b in &bobs {
        b.handle_welcome(&start.group_id, &welcome)?;
    }
    let mut readers: Vec<&Messenger> = bobs.clone();
    if !a_more.is_empty() {
        // Alice's first device adds her others, as `Session::open` does.
        let alices: Vec<&Messenger> = a_more.iter().collect();
        let add = a1.queue_add_devices(&start.group_id, invitee(&alices)?)?.context("alice's devices to add")?;
        seq += 1;
        a1.accepted(&add.client_id, seq)?;
        let d = add.delivered_as(a1.me(), seq);
        for b in &bobs {
            b.handle_deliveries(std::slice::from_ref(&d))?;
        }
        let welcome = add.welcome.clone().unwrap_or_default();
        for a in &a_more {
            a.handle_welcome(&add.group_id, &welcome)?;
        }
        readers.extend(a_more.iter());
    }
    let text = "x".repeat(1024);
    let (mut send, mut read) = (0.0, 0.0);
    for _ in 0..messages {
        let t = Instant::now();
        let item = a1.prepare_text("@bob", &text)?;
        seq += 1;
        a1.accepted(&item.client_id, seq)?;
        send += t.elapsed().as_secs_f64();
        let d = item.delivered_as(a1.me(), seq);
        let t = Instant::now();
        for r in &readers {
            r.handle_deliveries(std::slice::from_ref(&d))?;
        }
        read += t.elapsed().as_secs_f64();
    }
    // Every reader really got the last text.
    for r in &readers {
        let peer = if r.identity().handle == "bob" { "@alice" } else { "@bob" };
        let texts = r
            .history(peer)?
            .iter()
            .filter(|m| matches!(&m.body, sotto_core::Body::Text { text } if text.len() == 1024))
            .count() as u64;
        anyhow::ensure!(texts == messages, "{} device {} read {texts} of {messages}", peer, r.identity().device_id);
    }
    let n = messages as f64;
    Ok(ConversationTiming {
        devices_each: each,
        send_ms: send * 1000.0 / n,
        read_ms_all_devices: read * 1000.0 / n,
        start_commit_bytes: start.payload.len(),
    })
}

fn link(groups: usize, dir: &std::path::Path) -> Result<LinkTiming> {
    std::fs::create_dir_all(dir)?;
    let a1 = crate::bench_person(Messenger::create(&dir.join("alice"), &ProfileKey::KeyFile, "alice", "sotto://x:1"))?;
    let mut peers = Vec::new();
    let mut group_ids = Vec::new();
    for i in 0..groups {
        let peer = crate::bench_person(Messenger::create_ephemeral(&format!("p{i}"), "sotto://x:1"))?;
        let start = a1.start_direct(invitee(&[&peer])?)?;
        a1.accepted(&start.client_id, 1)?;
        peer.handle_welcome(&start.group_id, start.welcome.as_deref().unwrap_or_default())?;
        group_ids.push(start.group_id);
        peers.push(peer);
    }
    let request = LinkRequest::new("laptop")?;
    let t = Instant::now();
    let candidate = a1.inspect_link(&request.code(), request.key_package())?;
    let (_, answer) = a1.approve_link(&candidate, 2, 0)?;
    let approve_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let (identity, handover) = request.accept(&answer)?;
    let a2 =
        crate::bench_person(Messenger::create_linked(&dir.join("alice-2"), &ProfileKey::KeyFile, identity, &handover))?;
    let accept_ms = t.elapsed().as_secs_f64() * 1000.0;

    // One KeyPackage per group, as the claim hands them out.
    let mut invitees = Vec::new();
    for _ in 0..groups {
        invitees.push(invitee(&[&a2])?);
    }
    let t = Instant::now();
    let mut adds = Vec::new();
    for (g, inv) in group_ids.iter().zip(invitees) {
        let add = a1.queue_add_devices(g, inv)?.context("the new device to add")?;
        a1.accepted(&add.client_id, 2)?;
        adds.push(add);
    }
    let commits_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    for add in &adds {
        a2.handle_welcome(&add.group_id, add.welcome.as_deref().unwrap_or_default())?;
    }
    let welcomes_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    for (peer, add) in peers.iter().zip(&adds) {
        peer.handle_deliveries(&[add.delivered_as(a1.me(), 2)])?;
    }
    let peer_commit_ms = t.elapsed().as_secs_f64() * 1000.0 / groups as f64;
    Ok(LinkTiming {
        groups,
        approve_ms,
        accept_ms,
        commits_ms,
        welcomes_ms,
        peer_commit_ms,
        commit_bytes: adds[0].payload.len(),
        welcome_bytes: adds[0].welcome.as_ref().map_or(0, Vec::len),
    })
}
