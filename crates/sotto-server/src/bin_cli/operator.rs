//! The operator commands of `sotto-server`: invites, users, sessions, bans,
//! stats, checking a configuration file.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sotto_server::relay::now_ms;
use std::sync::Arc;

use sotto_server::store::{Change, Store};
use sotto_server::{admin, config, invite};

use super::args::*;

/// The store of an existing server (operator commands never create one):
/// the deployment's PostgreSQL with `--store`, else the SQLite database in
/// the data directory.
pub(crate) fn existing_store(d: &DataArg) -> Result<Arc<dyn Store>> {
    if let Some(url) = &d.store {
        let url = sotto_server::config::store_url(url).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
        if let Some(url) = url {
            // It blocks while connecting: off the async threads when there are any.
            let open = || sotto_server::store::PgStore::open(&url);
            let opened =
                if tokio::runtime::Handle::try_current().is_ok() { tokio::task::block_in_place(open) } else { open() };
            let store = opened.map_err(|e| anyhow::anyhow!("cannot use the PostgreSQL store: {e}"))?;
            return Ok(Arc::new(store));
        }
    }
    if !d.data.join("relay.db").exists() {
        bail!("no server data in {} (start the server once, or pass --data or --store)", d.data.display());
    }
    Ok(Arc::new(sotto_server::node::open_store(&d.data)?))
}

pub(crate) fn when(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

pub(crate) fn invites(a: &InviteArgs) -> Result<()> {
    let store = existing_store(&a.data)?;
    if a.list {
        for i in store.list_invites()? {
            let exp = i.expires_at.map(when).unwrap_or_else(|| "never".into());
            println!("id {}\tuses left {}\texpires {exp}\tcreated {}", i.id, i.uses_left, when(i.created_at));
        }
        return Ok(());
    }
    if let Some(r) = &a.revoke {
        if !store.revoke_invite(r)? {
            bail!("no such invite (see `sotto-server invite --list`)");
        }
        println!("revoked");
        return Ok(());
    }
    if a.uses == 0 {
        bail!("--uses must be at least 1");
    }
    let code = invite::new_code();
    let now = now_ms();
    store.create_invite(&code, a.uses, a.expires.map(|d| now + d.as_millis() as i64), now)?;
    println!("invite: {code}");
    Ok(())
}

pub(crate) async fn users(a: UsersArgs) -> Result<()> {
    let store = existing_store(&a.data)?;
    match a.action.unwrap_or(UsersAction::List) {
        UsersAction::List => {
            for u in store.list_accounts()? {
                let banned = if u.banned { "\tBANNED" } else { "" };
                println!(
                    "@{}\tdevices {}\tgroups {}\tsince {}{banned}",
                    u.handle,
                    u.devices,
                    u.groups,
                    when(u.created_at)
                );
            }
        }
        UsersAction::Show { handle } => {
            let acct = store.account(&handle)?.with_context(|| format!("no account @{handle}"))?;
            let summary = store.list_accounts()?.into_iter().find(|s| s.handle == handle);
            println!("@{}{}", acct.handle, if acct.banned { " (banned)" } else { "" });
            println!("account key: {}", hex::encode(&acct.account_key));
            for d in &acct.devices {
                let dref = sotto_proto::DeviceRef { handle: handle.clone(), device_id: d.device_id };
                println!(
                    "device {}: key {}, key packages {}",
                    d.device_id,
                    hex::encode(&d.device_key),
                    store.key_package_count(&dref)?
                );
            }
            if let Some(s) = summary {
                println!("groups: {}\nregistered: {}", s.groups, when(s.created_at));
            }
        }
        UsersAction::Remove { handle } => {
            store
                .remove_account(&handle, sotto_server::store::Removal::ByOperator)
                .map_err(|_| anyhow::anyhow!("no account @{handle}"))?;
            store.ring(&Change::Kick(handle.clone()));
            admin::request(&a.data.data, json!({"cmd": "kick", "handle": handle})).await;
            println!("removed @{handle}");
        }
    }
    Ok(())
}

pub(crate) async fn sessions(d: &DataArg) -> Result<()> {
    // A deployment on PostgreSQL: every node publishes its connections.
    if d.store.is_some() {
        let store = existing_store(d)?;
        let view = tokio::task::block_in_place(|| store.deployment_sessions())?.unwrap_or_default();
        let (nodes, sessions) = (view.nodes, view.sessions);
        let address: std::collections::HashMap<_, _> = nodes.iter().cloned().collect();
        for s in sessions {
            println!(
                "@{}/{}\t{}\tsince {}\tin {} B\tout {} B\tnode {}",
                s.device.handle,
                s.device.device_id,
                s.remote,
                when(i64::try_from(s.since).unwrap_or(0) * 1000),
                s.bytes_in,
                s.bytes_out,
                address.get(&s.node).map(String::as_str).unwrap_or(&s.node)
            );
        }
        if nodes.is_empty() {
            println!("no node of this deployment is running");
        }
        return Ok(());
    }
    let data = &d.data;
    let answer = admin::request(data, json!({"cmd": "sessions"}))
        .await
        .with_context(|| format!("no server is running on {}", data.display()))?;
    for s in answer["sessions"].as_array().into_iter().flatten() {
        println!(
            "@{}/{}\t{}\tsince {}\tin {} B\tout {} B",
            s["handle"].as_str().unwrap_or_default(),
            s["device_id"],
            s["remote"].as_str().unwrap_or_default(),
            when(s["since"].as_i64().unwrap_or(0) * 1000),
            s["bytes_in"],
            s["bytes_out"]
        );
    }
    Ok(())
}

pub(crate) async fn ban(h: &HandleArg, banned: bool) -> Result<()> {
    let store = existing_store(&h.data)?;
    let handle = h.handle.trim_start_matches('@');
    store.set_banned(handle, banned).map_err(|_| anyhow::anyhow!("no account @{handle}"))?;
    if banned {
        // Its connections on the other nodes of a deployment close too.
        store.ring(&Change::Kick(handle.to_owned()));
        let kicked = admin::request(&h.data.data, json!({"cmd": "kick", "handle": handle})).await;
        if h.data.store.is_some() {
            println!("banned @{handle}; every node of the deployment closes its connections");
        } else {
            let n = kicked.and_then(|k| k["kicked"].as_u64()).unwrap_or(0);
            println!("banned @{handle}; {n} live connection(s) closed");
        }
    } else {
        println!("unbanned @{handle}");
    }
    Ok(())
}

pub(crate) async fn stats(d: &DataArg) -> Result<()> {
    let data = &d.data;
    let store = existing_store(d)?;
    let s = store.stats()?;
    println!(
        "accounts: {}\ngroups: {}\nmessages waiting: {}\nwelcomes waiting: {}\nfiles: {} ({} bytes)",
        s.accounts, s.groups, s.messages, s.welcomes, s.blobs, s.blob_bytes
    );
    if d.store.is_some() {
        let view = tokio::task::block_in_place(|| store.deployment_sessions())?.unwrap_or_default();
        let (nodes, sessions) = (view.nodes, view.sessions);
        println!("connected devices: {}", sessions.len());
        let addresses: Vec<&str> = nodes.iter().map(|n| n.1.as_str()).collect();
        println!("nodes running: {} {}", nodes.len(), addresses.join(" "));
        return Ok(());
    }
    match admin::request(data, json!({"cmd": "stats"})).await {
        Some(live) => println!("connected devices: {}", live["connections"]),
        None => println!("server: not running"),
    }
    Ok(())
}

pub(crate) fn check_config(file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match config::check(&text) {
        Ok(s) => {
            println!("{}: ok", file.display());
            println!("{s:#?}");
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            bail!("{} mistake(s) in {}", errors.len(), file.display())
        }
    }
}

pub(crate) async fn announce(a: &AnnounceArgs) -> Result<()> {
    let store = existing_store(&a.data)?;
    let text = a.text.trim();
    let max = sotto_proto::limits::MAX_NOTICE_BYTES;
    if text.is_empty() || text.len() > max {
        bail!("a notice has 1 to {max} bytes of text (this one has {})", text.len());
    }
    let id = store.add_notice(text, now_ms())?;
    store.ring(&Change::Notices);
    match admin::request(&a.data.data, json!({"cmd": "notices"})).await {
        Some(live) => println!(
            "notice {id} sent: {} connected devices have it now; the others get it when they connect",
            live["connections"]
        ),
        None => println!("notice {id} kept: the server is not running; users get it when they connect"),
    }
    Ok(())
}
