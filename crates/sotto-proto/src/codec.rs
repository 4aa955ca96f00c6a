//! CBOR encoding of frames. Decoding refuses an oversized frame before it
//! reads a byte of it, and never trusts a length inside the frame beyond the
//! bytes actually present.

use serde::{de::DeserializeOwned, Serialize};

use crate::limits::MAX_FRAME_BYTES;
use crate::messages::{ClientMessage, ServerMessage};

/// Why bytes could not become a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a valid message.
    #[error("frame is not a valid sotto message: {0}")]
    Malformed(String),
}

/// Why a value could not be encoded (only possible for a broken value).
#[derive(Debug, thiserror::Error)]
#[error("could not encode frame: {0}")]
pub struct EncodeError(String);

/// Encodes any protocol value as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    encode_with_capacity(value, 128)
}

/// The same, into a buffer of `capacity` bytes to begin with: a frame that
/// carries a payload is sized for it once instead of growing (and being
/// copied) four or five times on the relay's hot path.
pub fn encode_with_capacity<T: Serialize>(value: &T, capacity: usize) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(capacity);
    ciborium::into_writer(value, &mut out).map_err(|e| EncodeError(e.to_string()))?;
    Ok(out)
}

/// Room for a frame's fields besides its payload (ids, sender, numbers
/// and CBOR headers).
pub const FRAME_OVERHEAD: usize = 256;

/// Decodes a value from a frame, checking the size limit first and refusing
/// trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge { size: bytes.len(), limit: MAX_FRAME_BYTES });
    }
    let mut reader = bytes;
    let value = ciborium::from_reader(&mut reader).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes after the message", reader.len())));
    }
    Ok(value)
}

/// Decodes a client-to-server frame.
pub fn decode_client(bytes: &[u8]) -> Result<ClientMessage, DecodeError> {
    // Nearly every frame is a `send`. Read as an internally tagged enum,
    // serde first copies the whole request (payload included) into a
    // buffer to find its tag, then reads that again: 15 % of the relay's
    // instructions (docs/performance.md, issue 22). A struct of exactly
    // that shape is read in one pass; anything else takes the general way.
    if let Ok(send) = decode::<SendFrame>(bytes) {
        let SendBody { kind: SendTag::Send, group_id, epoch, client_id, payload } = send.request;
        return Ok(ClientMessage {
            id: send.id,
            request: crate::messages::Request::Send { group_id, epoch, client_id, payload },
        });
    }
    decode(bytes)
}

/// A client frame carrying a `send` (see [`decode_client`]).
#[derive(serde::Deserialize)]
struct SendFrame {
    id: u64,
    request: SendBody,
}

#[derive(serde::Deserialize)]
struct SendBody {
    #[serde(rename = "type")]
    kind: SendTag,
    #[serde(with = "serde_bytes")]
    group_id: Vec<u8>,
    epoch: u64,
    #[serde(with = "serde_bytes")]
    client_id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum SendTag {
    Send,
}

/// Decodes a server-to-client frame.
pub fn decode_server(bytes: &[u8]) -> Result<ServerMessage, DecodeError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_fits_its_payload_and_the_frame_overhead() {
        use crate::messages::{DeviceRef, MessageKind, Push};
        use crate::responses::Delivery;
        // The largest fields besides the payload: a 16-byte group id, a
        // 32-character handle, the largest numbers.
        let delivery = Delivery {
            group_id: vec![0xff; crate::limits::GROUP_ID_LEN],
            seq: u64::MAX,
            epoch: u64::MAX,
            sender: DeviceRef { handle: "x".repeat(32), device_id: u32::MAX },
            kind: MessageKind::Application,
            payload: vec![7; 1000],
            stored_at: i64::MIN,
        };
        let push = ServerMessage::Push(Push::Deliver(delivery));
        let sized = encode_with_capacity(&push, 1000 + FRAME_OVERHEAD).unwrap();
        assert!(sized.len() <= 1000 + FRAME_OVERHEAD, "{} bytes outgrow the estimate", sized.len());
        assert_eq!(sized, encode(&push).unwrap());
    }

    #[test]
    fn a_send_reads_the_same_on_the_fast_path_and_anything_else_the_general_way() {
        let send = ClientMessage {
            id: 7,
            request: Request::Send { group_id: vec![1; 16], epoch: 3, client_id: vec![2; 16], payload: vec![3; 1000] },
        };
        let bytes = encode(&send).unwrap();
        assert!(decode::<SendFrame>(&bytes).is_ok(), "a send takes the fast path");
        assert_eq!(decode_client(&bytes).unwrap(), send);
        assert_eq!(decode::<ClientMessage>(&bytes).unwrap(), send, "the general way agrees");
        let ack = ClientMessage { id: 8, request: Request::Ack { group_id: vec![1; 16], seq: 4 } };
        let bytes = encode(&ack).unwrap();
        assert!(decode::<SendFrame>(&bytes).is_err());
        assert_eq!(decode_client(&bytes).unwrap(), ack);
        // A send with a field missing is refused either way.
        let broken = ciborium::Value::Map(vec![
            (ciborium::Value::Text("id".into()), ciborium::Value::Integer(1.into())),
            (
                ciborium::Value::Text("request".into()),
                ciborium::Value::Map(vec![(
                    ciborium::Value::Text("type".into()),
                    ciborium::Value::Text("send".into()),
                )]),
            ),
        ]);
        let bytes = encode(&broken).unwrap();
        assert!(decode_client(&bytes).is_err());
        // Trailing bytes after a send are refused too.
        let mut bytes = encode(&send).unwrap();
        bytes.push(0);
        assert!(decode_client(&bytes).is_err());
    }
    use crate::error::{ErrorBody, ErrorCode};
    use crate::messages::*;

    fn dev(h: &str) -> DeviceRef {
        DeviceRef { handle: h.into(), device_id: 1 }
    }

    fn info() -> DeviceInfo {
        DeviceInfo { device_id: 1, device_key: vec![1; 32], certificate: vec![2; 64] }
    }

    fn delivery() -> Delivery {
        Delivery {
            group_id: vec![9; 16],
            seq: 3,
            epoch: 2,
            sender: dev("a"),
            kind: MessageKind::Application,
            payload: vec![0, 255, 7],
            stored_at: 1_700_000_000_000,
        }
    }

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Register {
                handle: "alice".into(),
                account_key: vec![1; 32],
                device: info(),
                invite: Some("code".into()),
                signature: vec![3; 64],
            },
            Request::Login {
                handle: "alice".into(),
                device_id: 1,
                signature: vec![3; 64],
                copy: None,
                takeover: false,
            },
            Request::UploadKeyPackages {
                packages: vec![serde_bytes::ByteBuf::from(vec![1, 2])],
                last_resort: Some(serde_bytes::ByteBuf::from(vec![3])),
                other_last_resorts: vec![serde_bytes::ByteBuf::from(vec![5])],
            },
            Request::ClaimKeyPackages { handle: "bob".into(), devices: None, suites: vec![] },
            Request::ClaimKeyPackages {
                handle: "bob".into(),
                devices: Some(vec![2]),
                suites: vec![crate::suites::SUITE_XWING, crate::suites::SUITE_CLASSICAL],
            },
            Request::LookupUser { handle: "bob".into() },
            Request::CreateGroup { group_id: vec![4; 16], roles: false },
            Request::Commit {
                group_id: vec![4; 16],
                epoch: 0,
                client_id: vec![5; 16],
                commit: vec![6; 10],
                welcome: Some(serde_bytes::ByteBuf::from(vec![7; 3])),
                added: vec![dev("bob")],
                removed: vec![dev("carol")],
            },
            Request::Send { group_id: vec![4; 16], epoch: 1, client_id: vec![5; 16], payload: vec![8; 4] },
            Request::Ack { group_id: vec![4; 16], seq: 9 },
            Request::AckWelcome { welcome_id: 4 },
            Request::Fetch { group_id: vec![4; 16], after_seq: 0, limit: 10 },
            Request::GroupState { group_id: vec![4; 16] },
            Request::Sync,
            Request::Leave { group_id: vec![4; 16] },
            Request::AcceptGroup { group_id: vec![4; 16], accepted: false },
            Request::Presence { handles: vec!["a".into(), "b".into()] },
            Request::PutGroupInfo { group_id: vec![4; 16], epoch: 3, group_info: vec![1, 2, 3] },
            Request::GetGroupInfo { group_id: vec![4; 16] },
            Request::BlobToken,
            Request::ShareBlob { blob_id: vec![1; 16], group_id: vec![4; 16] },
            Request::BlobFetched { blob_id: vec![1; 16] },
        ]
    }

    fn all_server_messages() -> Vec<ServerMessage> {
        let responses = vec![
            Response::Done,
            Response::LoggedIn { device: dev("a"), key_packages: 3 },
            Response::KeyPackagesStored { key_packages: 5 },
            Response::KeyPackages {
                handle: "b".into(),
                account_key: vec![1; 32],
                packages: vec![ClaimedKeyPackage { device: info(), package: vec![1, 2, 3] }],
            },
            Response::User(UserInfo { handle: "b".into(), account_key: vec![1; 32], devices: vec![info()] }),
            Response::Appended { seq: 1, epoch: 2, duplicate: false },
            Response::Messages { messages: vec![delivery()] },
            Response::Group {
                epoch: 3,
                members: vec![dev("a"), dev("b")],
                last_seq: 7,
                admins: vec!["a".into()],
                members_can_add: false,
            },
            Response::GroupInfo { epoch: 3, group_info: vec![9, 9] },
            Response::BlobToken { token: vec![7; 32], expires_in: 3600 },
            Response::Presence { enabled: true, online: vec![("a".into(), true), ("b".into(), false)] },
        ];
        let mut out: Vec<ServerMessage> = responses
            .into_iter()
            .enumerate()
            .map(|(i, r)| ServerMessage::Response { id: i as u64, result: Ok(r) })
            .collect();
        for code in ErrorCode::ALL {
            let mut body = ErrorBody::new(code);
            if code == ErrorCode::StaleEpoch {
                body.current_epoch = Some(4);
            }
            out.push(ServerMessage::Response { id: 99, result: Err(body) });
        }
        out.push(ServerMessage::Hello(Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            server_id: vec![1; 32],
            challenge: vec![2; 32],
            invite_only: true,
            max_blob_bytes: 1 << 31,
            notices: true,
        }));
        out.push(ServerMessage::Push(Push::Deliver(delivery())));
        out.push(ServerMessage::Push(Push::Welcome {
            welcome_id: 1,
            group_id: vec![4; 16],
            sender: dev("a"),
            welcome: vec![1, 2],
        }));
        out.push(ServerMessage::Push(Push::SyncDone));
        out.push(ServerMessage::Push(Push::KeyPackagesLow { remaining: 2 }));
        out.push(ServerMessage::Push(Push::Notice(crate::Notice {
            id: 3,
            text: "maintenance at 22:00".into(),
            sent_at: 5,
        })));
        out.push(ServerMessage::Goodbye(ErrorBody::new(ErrorCode::Banned)));
        out
    }

    #[test]
    fn every_request_round_trips() {
        for (i, request) in all_requests().into_iter().enumerate() {
            let msg = ClientMessage { id: i as u64, request };
            let bytes = encode(&msg).unwrap();
            assert_eq!(decode_client(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn every_server_message_round_trips() {
        for msg in all_server_messages() {
            let bytes = encode(&msg).unwrap();
            assert_eq!(decode_server(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn byte_fields_are_cbor_byte_strings() {
        // A 1000-byte payload must cost about 1000 bytes, not one CBOR
        // integer per byte (which a missing serde_bytes would give).
        let msg = ClientMessage {
            id: 1,
            request: Request::Send {
                group_id: vec![0; 16],
                epoch: 0,
                client_id: vec![0; 16],
                payload: vec![200; 1000],
            },
        };
        assert!(encode(&msg).unwrap().len() < 1150);
    }

    /// What docs/protocol.md says of types: unknown fields are ignored (so
    /// a newer client can add one), a field of the wrong type is malformed,
    /// and a byte field also takes an array of small integers (serde_bytes
    /// accepts both).
    #[test]
    fn unknown_fields_are_ignored_and_wrong_types_are_malformed() {
        use ciborium::Value;
        let frame = |limit: Value, group_id: Value| {
            let request = Value::Map(vec![
                (Value::Text("type".into()), Value::Text("fetch".into())),
                (Value::Text("group_id".into()), group_id),
                (Value::Text("after_seq".into()), Value::Integer(0.into())),
                (Value::Text("limit".into()), limit),
                (Value::Text("from_the_future".into()), Value::Bool(true)),
            ]);
            let msg = Value::Map(vec![
                (Value::Text("id".into()), Value::Integer(7.into())),
                (Value::Text("request".into()), request),
            ]);
            let mut out = Vec::new();
            ciborium::into_writer(&msg, &mut out).unwrap();
            decode_client(&out)
        };
        let bytes = Value::Bytes(vec![1; 16]);
        let m = frame(Value::Integer(10.into()), bytes.clone()).expect("an unknown field is ignored");
        assert_eq!(m.request, Request::Fetch { group_id: vec![1; 16], after_seq: 0, limit: 10 });
        for wrong in [Value::Text("10".into()), Value::Integer((-1).into()), Value::Float(10.0), Value::Null] {
            assert!(matches!(frame(wrong.clone(), bytes.clone()), Err(DecodeError::Malformed(_))), "{wrong:?}");
        }
        let as_array = Value::Array(vec![Value::Integer(1.into()); 16]);
        let m = frame(Value::Integer(10.into()), as_array).expect("serde_bytes takes an array of u8 too");
        assert_eq!(m.request, Request::Fetch { group_id: vec![1; 16], after_seq: 0, limit: 10 });
        let too_big = Value::Array(vec![Value::Integer(256.into()); 16]);
        assert!(frame(Value::Integer(10.into()), too_big).is_err());
    }

    #[test]
    fn oversized_frame_is_refused_before_decoding() {
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(decode_client(&big), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn garbage_and_truncation_are_malformed_not_panics() {
        let good = encode(&ClientMessage { id: 1, request: Request::Sync }).unwrap();
        for cut in 0..good.len() {
            assert!(matches!(decode_client(&good[..cut]), Err(DecodeError::Malformed(_))));
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_client(&trailing).is_err());
        // A byte string that claims 4 GiB but carries three bytes.
        assert!(decode_client(&[0x5a, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]).is_err());
        // Deep nesting must not overflow the stack.
        let deep = vec![0x81u8; 100_000];
        assert!(decode_client(&deep).is_err());
        assert!(decode_server(b"\xff\x00 not cbor").is_err());
    }
}
