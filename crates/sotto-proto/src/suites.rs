//! The MLS ciphersuites a KeyPackage can be for. The server reads exactly
//! one thing inside a KeyPackage, its suite number, so it can hand out a
//! package every member of a new conversation can use; it reads nothing
//! else in any MLS message.

/// `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (RFC 9420): classical.
pub const SUITE_CLASSICAL: u16 = 0x0001;
/// `MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519`: hybrid post-quantum
/// key exchange (ML-KEM-768 with X25519).
pub const SUITE_XWING: u16 = 0x004D;

/// The suite a TLS-serialized KeyPackage says it is for: its first two
/// bytes are the protocol version (1 for MLS 1.0), the next two the suite.
/// `None` for anything that cannot be a KeyPackage of MLS 1.0.
pub fn key_package_suite(package: &[u8]) -> Option<u16> {
    match package {
        [0, 1, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// What a claim without a list of suites means: clients from before the
/// post-quantum suite ask for nothing and understand only the classical
/// suite.
pub fn claim_preference(asked: &[u16]) -> &[u16] {
    if asked.is_empty() {
        &[SUITE_CLASSICAL]
    } else {
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_is_read_from_the_header_and_nothing_else_is_trusted() {
        assert_eq!(key_package_suite(&[0, 1, 0, 0x4D, 9, 9]), Some(SUITE_XWING));
        assert_eq!(key_package_suite(&[0, 1, 0, 1]), Some(SUITE_CLASSICAL));
        assert_eq!(key_package_suite(&[0, 2, 0, 1]), None, "not MLS 1.0");
        assert_eq!(key_package_suite(&[0, 1, 0]), None, "too short");
        assert_eq!(key_package_suite(&[]), None);
    }

    #[test]
    fn an_old_client_asking_for_nothing_gets_the_classical_suite() {
        assert_eq!(claim_preference(&[]), &[SUITE_CLASSICAL]);
        assert_eq!(claim_preference(&[SUITE_XWING, SUITE_CLASSICAL]), &[SUITE_XWING, SUITE_CLASSICAL]);
    }
}
