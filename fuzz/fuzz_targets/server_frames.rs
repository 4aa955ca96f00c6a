//! What a malicious server can hand a client: any frame, decoded by the
//! client's decoder, and any welcome or delivery fed to the sans-I/O core
//! (`Messenger`) the way `Session` feeds it. No input may panic the
//! client, and a profile that refused garbage still works afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_core::Messenger;
use sotto_proto::{codec, Delivery, DeviceRef, MessageKind, Push, ServerMessage};

fuzz_target!(|data: &[u8]| {
    let m = Messenger::create_ephemeral("probe", "sotto://x:1").expect("ephemeral profile");
    // The frame as the client's connection would decode it.
    if let Ok(ServerMessage::Push(push)) = codec::decode_server(data) {
        match push {
            Push::Welcome { group_id, welcome, .. } => {
                let _ = m.handle_welcome(&group_id, &welcome);
            }
            Push::Deliver(d) => {
                let _ = m.handle_deliveries(&[d]);
            }
            Push::Signal { group_id, sender, payload } => {
                let _ = m.open_signal(&group_id, &sender, &payload);
            }
            _ => {}
        }
    }
    // The same bytes as a welcome and as a delivery's payload, with group
    // ids of every short length (the server chooses them).
    let cut = data.first().map(|b| (*b as usize) % 20).unwrap_or(0).min(data.len());
    let (group_id, rest) = data.split_at(cut);
    let _ = m.handle_welcome(group_id, rest);
    let d = Delivery {
        group_id: group_id.to_vec(),
        seq: u64::from_le_bytes(rest.get(..8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8])),
        epoch: 0,
        sender: DeviceRef { handle: "x".into(), device_id: 1 },
        kind: if cut % 2 == 0 { MessageKind::Application } else { MessageKind::Commit },
        payload: rest.to_vec(),
        stored_at: 0,
    };
    let _ = m.handle_deliveries(&[d]);
    // Still usable: it can make key packages and lists its conversations.
    m.key_package_upload(1).expect("the profile still works");
    m.conversations().expect("the profile still reads");
});
