//! The exact byte strings that get signed. Both sides build them here so a
//! signature made by one is checked against the same bytes by the other, and
//! every signature is bound to its purpose by a distinct label.

/// Bytes a device signs to log in (or to prove key possession when it
/// registers): the label, the server's identity (its key pin) and the fresh
/// challenge. Binding the server id means a signature collected by one server
/// is worthless at another.
pub fn login_payload(server_id: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + server_id.len() + challenge.len());
    out.extend_from_slice(b"sotto-login-v1\0");
    push_field(&mut out, server_id);
    push_field(&mut out, challenge);
    out
}

/// Bytes an account key signs to certify a device key: handle, device id and
/// the device's public signature key.
pub fn device_certificate_payload(handle: &str, device_id: u32, device_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + handle.len());
    out.extend_from_slice(b"sotto-device-cert-v1\0");
    push_field(&mut out, handle.as_bytes());
    out.extend_from_slice(&device_id.to_be_bytes());
    push_field(&mut out, device_key);
    out
}

/// Length-prefixes a field so no two field sequences share an encoding.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_slide() {
        assert_ne!(login_payload(b"ab", b"c"), login_payload(b"a", b"bc"));
        assert_ne!(device_certificate_payload("a", 1, b"k"), device_certificate_payload("a", 2, b"k"));
    }
}
