//! The MLS ciphersuites sotto speaks, and which one a conversation gets.
//!
//! New conversations use the hybrid post-quantum suite (X-Wing: ML-KEM-768
//! with X25519, so a recording of today's traffic stays closed to a future
//! quantum computer as long as either half holds). Every device also keeps
//! publishing KeyPackages of the classical suite while apps without the
//! new one are about: a conversation with such an app falls back to it and
//! says so.

use openmls::prelude::Ciphersuite;
use sotto_proto::suites::{SUITE_CLASSICAL, SUITE_XWING};

/// Hybrid post-quantum: X-Wing KEM, ChaCha20-Poly1305, SHA-256, Ed25519.
pub const POST_QUANTUM: Ciphersuite = Ciphersuite::MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519;
/// Classical: X25519, AES-128-GCM, SHA-256, Ed25519 (sotto's first suite).
pub const CLASSICAL: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// The suites this device publishes KeyPackages for and asks for when it
/// claims someone's, most wanted first.
pub const SUITES: [Ciphersuite; 2] = [POST_QUANTUM, CLASSICAL];

/// A suite's number on the wire.
pub fn wire(suite: Ciphersuite) -> u16 {
    u16::from(suite)
}

/// The wire numbers of [`SUITES`], for a claim.
pub fn wanted() -> Vec<u16> {
    SUITES.iter().map(|s| wire(*s)).collect()
}

/// Whether the suite's key exchange resists a quantum computer.
pub fn is_post_quantum(suite: Ciphersuite) -> bool {
    wire(suite) == SUITE_XWING
}

/// How a person reads a suite.
pub fn describe(suite: Ciphersuite) -> String {
    match wire(suite) {
        SUITE_XWING => "X-Wing (ML-KEM-768 + X25519), ChaCha20-Poly1305, SHA-256, Ed25519".into(),
        SUITE_CLASSICAL => "X25519, AES-128-GCM, SHA-256, Ed25519".into(),
        other => format!("suite 0x{other:04X}"),
    }
}

/// The one suite a new conversation with these KeyPackages can use: the
/// post-quantum one when every package offers it, the classical one when
/// every package is classical; `None` when they are mixed (claim the
/// others again for the classical suite).
pub fn common(packages: impl IntoIterator<Item = Ciphersuite>) -> Option<Ciphersuite> {
    let mut found: Option<Ciphersuite> = None;
    for s in packages {
        match found {
            None => found = Some(s),
            Some(f) if f == s => {}
            Some(_) => return None,
        }
    }
    found.filter(|s| SUITES.contains(s))
}

/// What the conversation says when it had to fall back.
pub fn fallback_note(handles: &[String]) -> String {
    let who = handles.iter().map(|h| format!("@{h}")).collect::<Vec<_>>().join(", ");
    format!(
        "Not post-quantum: {who} uses an app without post-quantum encryption, so this conversation uses classical \
         encryption (X25519). It is still end-to-end encrypted. `sotto info` shows the details."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_suite_only_when_everyone_offers_it() {
        assert_eq!(common([POST_QUANTUM, POST_QUANTUM]), Some(POST_QUANTUM));
        assert_eq!(common([CLASSICAL, CLASSICAL]), Some(CLASSICAL));
        assert_eq!(common([POST_QUANTUM, CLASSICAL]), None);
        assert_eq!(common([]), None);
        assert_eq!(common([Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519]), None);
    }

    #[test]
    fn wire_numbers_match_the_protocol() {
        assert_eq!(wanted(), vec![SUITE_XWING, SUITE_CLASSICAL]);
        assert!(is_post_quantum(POST_QUANTUM) && !is_post_quantum(CLASSICAL));
    }
}
