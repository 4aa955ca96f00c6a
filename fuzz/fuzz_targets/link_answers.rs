//! Linking a device, both ends, on bytes from the network: the answer a
//! waiting device reads from its slot (which the server, or anyone who
//! learnt the slot, could have written), the link request a first device
//! fetches by a code, and codes as a person types them. Any of it gives a
//! clear error or a checked result, never a panic; an answer not made from
//! the code's secret never links.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_core::link::{parse_code, LinkRequest};
use sotto_core::Messenger;

thread_local! {
    static FIRST: Messenger = Messenger::create_ephemeral("alice", "sotto://x:1").expect("messenger");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => {
            // The waiting device reads an answer it did not expect.
            let request = LinkRequest::new("fuzzed").expect("link request");
            assert!(request.accept(rest).is_err(), "arbitrary bytes never link a device");
        }
        1 => {
            // The first device fetches a request by a typed code.
            let text = String::from_utf8_lossy(rest);
            let (code, package) = text.split_once('\n').unwrap_or((&text, ""));
            if let Ok((slot, secret)) = parse_code(code) {
                assert_eq!(slot.len(), 8);
                assert_eq!(secret.len(), 7);
            }
            // Whatever the package, only one whose hash matches the code
            // is even looked at.
            FIRST.with(|m| {
                let _ = m.inspect_link(code, package.as_bytes());
            });
        }
        _ => {
            // A real request whose package bytes come back altered.
            let request = LinkRequest::new("fuzzed").expect("link request");
            let mut package = request.key_package().to_vec();
            for (i, b) in rest.iter().enumerate().take(16) {
                let at = (*b as usize * 31 + i) % package.len();
                package[at] ^= b | 1;
            }
            FIRST.with(|m| {
                assert!(
                    m.inspect_link(&request.code(), &package).is_err() || package == request.key_package(),
                    "an altered link request must not match its code"
                );
            });
        }
    }
});
