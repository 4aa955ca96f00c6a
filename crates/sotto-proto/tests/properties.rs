//! Property tests of the codec: any bytes decode to a value or an error
//! (never a panic), and generated messages round-trip. This is the stable
//! toolchain's stand-in for the cargo-fuzz target in `fuzz/` (which needs
//! nightly); it runs in CI on every change.

use proptest::prelude::*;
use sotto_proto::codec::{decode_client, decode_server, encode};
use sotto_proto::{ClientMessage, Delivery, DeviceRef, MessageKind, Push, Request, ServerMessage};

fn device() -> impl Strategy<Value = DeviceRef> {
    ("[a-z0-9_.-]{1,32}", any::<u32>()).prop_map(|(handle, device_id)| DeviceRef { handle, device_id })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (bytes(32), any::<u64>(), bytes(32), bytes(2048))
            .prop_map(|(group_id, epoch, client_id, payload)| Request::Send { group_id, epoch, client_id, payload }),
        (bytes(32), any::<u64>()).prop_map(|(group_id, seq)| Request::Ack { group_id, seq }),
        ("[a-z]{0,40}", any::<u32>(), bytes(80), prop::option::of(bytes(32)), any::<bool>()).prop_map(
            |(handle, device_id, signature, copy, takeover)| Request::Login {
                handle,
                device_id,
                signature,
                copy: copy.map(serde_bytes::ByteBuf::from),
                takeover,
            }
        ),
        prop::collection::vec("\\PC{0,20}", 0..5).prop_map(|handles| Request::Presence { handles }),
        (bytes(32), any::<u64>(), any::<u32>()).prop_map(|(group_id, after_seq, limit)| Request::Fetch {
            group_id,
            after_seq,
            limit
        }),
        Just(Request::Sync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(4096)) {
        let _ = decode_client(&data);
        let _ = decode_server(&data);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_prefix_never_panic(id in any::<u64>(), tail in bytes(512)) {
        let mut data = encode(&ClientMessage { id, request: Request::Sync }).unwrap();
        data.truncate(data.len() / 2);
        data.extend(tail);
        let _ = decode_client(&data);
    }

    #[test]
    fn requests_round_trip(id in any::<u64>(), request in request()) {
        let msg = ClientMessage { id, request };
        prop_assert_eq!(decode_client(&encode(&msg).unwrap()).unwrap(), msg);
    }

    #[test]
    fn deliveries_round_trip(group_id in bytes(32), seq in any::<u64>(), epoch in any::<u64>(), sender in device(),
                             commit in any::<bool>(), payload in bytes(4096), stored_at in any::<i64>()) {
        let kind = if commit { MessageKind::Commit } else { MessageKind::Application };
        let msg = ServerMessage::Push(Push::Deliver(Delivery { group_id, seq, epoch, sender, kind, payload, stored_at }));
        prop_assert_eq!(decode_server(&encode(&msg).unwrap()).unwrap(), msg);
    }
}
