//! Sequences of requests from three devices, straight into the relay's
//! request logic (the sans-I/O boundary every WebSocket session uses) over
//! a fresh in-memory store. Requests are built from the input's bytes so
//! the fuzzer spends its time on the delivery rules, not on CBOR syntax
//! (`decode_frame` covers that). Nothing may panic, every answer is a
//! response or a typed error, and what the store hands out stays ordered:
//! appended sequence numbers only grow and a fetch is strictly ascending.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_bytes::ByteBuf;
use sotto_proto::{DeviceInfo, DeviceRef, Request, Response};
use sotto_server::relay::{Relay, RelayConfig, Submitted};
use sotto_server::store::{Accounts, SqliteStore};

const HANDLES: [&str; 3] = ["alice", "bob", "carol"];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fn blob_dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir")).path()
}

fn device(u: &mut Unstructured<'_>) -> Result<DeviceRef> {
    // Mostly real devices, sometimes one that does not exist.
    let handle = if u.ratio(1, 8)? { "mallory".to_string() } else { u.choose(&HANDLES)?.to_string() };
    let device_id = if u.ratio(1, 8)? { u.arbitrary()? } else { 1 };
    Ok(DeviceRef { handle, device_id })
}

fn group(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    // A few well-formed ids to collide on, sometimes any bytes.
    if u.ratio(1, 10)? {
        let len = u.int_in_range(0..=40)?;
        return u.bytes(len).map(<[u8]>::to_vec);
    }
    let mut g = vec![u.int_in_range(0..=2u8)?; 16];
    g[0] = u.int_in_range(1..=2)?;
    Ok(g)
}

fn small(u: &mut Unstructured<'_>) -> Result<u64> {
    if u.ratio(1, 10)? {
        u.arbitrary()
    } else {
        u.int_in_range(0..=8)
    }
}

fn bytes(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=max)?;
    u.bytes(len).map(<[u8]>::to_vec)
}

fn request(u: &mut Unstructured<'_>) -> Result<Request> {
    Ok(match u.int_in_range(0..=27u8)? {
        26 => Request::Signal { group_id: group(u)?, payload: bytes(u, 600)? },
        27 => Request::SetRetention { group_id: group(u)?, secs: u.arbitrary()? },
        17 => Request::AddDevice {
            device: DeviceInfo { device_id: u.arbitrary()?, device_key: bytes(u, 33)?, certificate: bytes(u, 65)? },
        },
        18 => Request::RemoveDevice { device_id: u.int_in_range(0..=3)? },
        19 => Request::ListDevices,
        20 => Request::LinkOffer { key_package: bytes(u, 64)? },
        21 => Request::LinkFetch { slot: bytes(u, 9)? },
        22 => Request::LinkAnswer { slot: bytes(u, 9)?, answer: bytes(u, 64)? },
        23 => Request::ClaimKeyPackages {
            handle: device(u)?.handle,
            devices: Some((0..u.int_in_range(0..=3)?).map(|_| u.arbitrary()).collect::<Result<_>>()?),
            suites: (0..u.int_in_range(0..=3)?).map(|_| u.arbitrary()).collect::<Result<_>>()?,
        },
        24 => Request::AcceptGroup { group_id: group(u)?, accepted: u.arbitrary()? },
        0 => Request::CreateGroup { group_id: group(u)?, roles: u.arbitrary()? },
        1 => {
            let added: Vec<DeviceRef> = (0..u.int_in_range(0..=3)?).map(|_| device(u)).collect::<Result<_>>()?;
            let removed: Vec<DeviceRef> = (0..u.int_in_range(0..=2)?).map(|_| device(u)).collect::<Result<_>>()?;
            Request::Commit {
                group_id: group(u)?,
                epoch: small(u)?,
                client_id: bytes(u, 34)?,
                commit: bytes(u, 64)?,
                welcome: if u.arbitrary()? { Some(ByteBuf::from(bytes(u, 64)?)) } else { None },
                added,
                removed,
            }
        }
        2..=5 => {
            Request::Send { group_id: group(u)?, epoch: small(u)?, client_id: bytes(u, 34)?, payload: bytes(u, 64)? }
        }
        6 => Request::Ack { group_id: group(u)?, seq: small(u)? },
        7 => Request::AckWelcome { welcome_id: small(u)? },
        8 => Request::Fetch { group_id: group(u)?, after_seq: small(u)?, limit: u.arbitrary()? },
        9 => Request::GroupState { group_id: group(u)? },
        10 => Request::Leave { group_id: group(u)? },
        11 => Request::PutGroupInfo { group_id: group(u)?, epoch: small(u)?, group_info: bytes(u, 64)? },
        12 => Request::GetGroupInfo { group_id: group(u)? },
        13 => Request::UploadKeyPackages {
            packages: (0..u.int_in_range(0..=3)?).map(|_| key_package(u)).collect::<Result<_>>()?,
            last_resort: if u.arbitrary()? { Some(key_package(u)?) } else { None },
            other_last_resorts: (0..u.int_in_range(0..=2)?).map(|_| key_package(u)).collect::<Result<_>>()?,
        },
        14 => Request::ClaimKeyPackages { handle: device(u)?.handle, devices: None, suites: vec![] },
        15 => Request::LookupUser { handle: device(u)?.handle },
        16 => Request::ShareBlob { blob_id: bytes(u, 16)?, group_id: group(u)? },
        _ => Request::BlobFetched { blob_id: bytes(u, 16)? },
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    for h in HANDLES {
        let info = DeviceInfo { device_id: 1, device_key: vec![7; 32], certificate: vec![9; 64] };
        store.register(h, &[h.len() as u8; 32], &info, None, false, 0).expect("register");
    }
    let relay = Relay::new(store.clone(), RelayConfig::default(), vec![1; 32], blob_dir().to_path_buf());
    let mut last_seq: HashMap<Vec<u8>, u64> = HashMap::new();
    runtime().block_on(async {
        for _ in 0..64 {
            let (Ok(me), Ok(req)) = (device(&mut u), request(&mut u)) else { break };
            let group = match &req {
                Request::Send { group_id, .. } | Request::Commit { group_id, .. } => Some(group_id.clone()),
                _ => None,
            };
            let answer = match relay.submit(&me, req) {
                Submitted::Queued(pending) => pending.await,
                Submitted::Other(req) => relay.handle(&me, req).await,
            };
            match answer {
                Ok(Response::Appended { seq, duplicate: false, .. }) => {
                    let g = group.expect("only appends answer Appended");
                    let before = last_seq.insert(g, seq).unwrap_or(0);
                    assert!(seq > before, "sequence numbers only grow: {before} then {seq}");
                }
                Ok(Response::Messages { messages }) => {
                    assert!(messages.windows(2).all(|w| w[0].seq < w[1].seq), "a fetch is in log order");
                }
                _ => {}
            }
        }
    });
});

/// Bytes that pass for a KeyPackage of one of the two suites most of the
/// time (the server reads the version and suite at the front), or not.
fn key_package(u: &mut Unstructured<'_>) -> Result<ByteBuf> {
    let mut b = match u.int_in_range(0..=2)? {
        0 => vec![0, 1, 0, 1],
        1 => vec![0, 1, 0, 0x4D],
        _ => vec![],
    };
    b.extend(bytes(u, 8)?);
    Ok(ByteBuf::from(b))
}
