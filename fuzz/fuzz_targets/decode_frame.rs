//! Any bytes fed to the frame decoders must give a value or an error, never
//! a panic, a hang or an allocation out of proportion to the input; and a
//! value that decodes must encode and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_proto::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = codec::decode_client(data) {
        let again = codec::encode(&msg).expect("a decoded message encodes");
        assert_eq!(codec::decode_client(&again).expect("re-decodes"), msg);
    }
    if let Ok(msg) = codec::decode_server(data) {
        let again = codec::encode(&msg).expect("a decoded message encodes");
        assert_eq!(codec::decode_server(&again).expect("re-decodes"), msg);
    }
});
