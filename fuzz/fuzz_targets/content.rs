//! The local content parser: what a peer sends inside MLS, decoded by every
//! client. Any bytes give content or an error; content that decodes encodes
//! and decodes to itself. File names from peers are made safe whatever
//! they are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_core::files::safe_file_name;
use sotto_core::Content;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Content::decode(data) {
        assert_eq!(Content::decode(&c.encode()).expect("re-decodes"), c);
    }
    let name = safe_file_name(&String::from_utf8_lossy(data));
    assert!(!name.is_empty() && name != "." && name != "..", "{name:?}");
    assert!(!name.contains(['/', '\\']) && !name.chars().any(char::is_control), "{name:?}");
    assert!(name.len() <= 200 && !name.starts_with('.'), "{name:?}");
});
