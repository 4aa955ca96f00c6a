//! Server addresses: how a person tells a client where a server is and how
//! to trust it.
//!
//! - `sotto://HOST:PORT#sha256=PIN`: TLS, the server's public key pinned by
//!   the SHA-256 of its SubjectPublicKeyInfo (base64url, no padding). This is
//!   what a server with its own self-signed certificate prints.
//! - `sotto://HOST:PORT`: TLS verified against the web PKI roots.
//! - `sotto+insecure://HOST:PORT`: plain WebSocket, for a server behind a
//!   TLS-terminating proxy on the same host or for tests. Clients warn.

use std::fmt;

/// How the client reaches and trusts the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS, trusting exactly the key with this SHA-256 SPKI hash.
    Pinned([u8; 32]),
    /// TLS, trusting the web PKI.
    WebPki,
    /// No TLS.
    Insecure,
}

/// A parsed server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How to trust it.
    pub transport: Transport,
}

/// Why an address could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid server address {input:?}: {reason} (expected sotto://HOST:PORT#sha256=PIN)")]
pub struct AddressError {
    input: String,
    reason: &'static str,
}

impl ServerAddress {
    /// Parses an address in one of the forms above.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let err = |reason| AddressError { input: input.to_owned(), reason };
        let input_trim = input.trim();
        let (insecure, rest) = if let Some(rest) = input_trim.strip_prefix("sotto+insecure://") {
            (true, rest)
        } else if let Some(rest) = input_trim.strip_prefix("sotto://") {
            (false, rest)
        } else {
            return Err(err("it must start with sotto:// or sotto+insecure://"));
        };
        let (hostport, fragment) = match rest.split_once('#') {
            Some((h, f)) => (h, Some(f)),
            None => (rest, None),
        };
        let hostport = hostport.trim_end_matches('/');
        let (host, port) = split_host_port(hostport).ok_or_else(|| err("it must name HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| err("the port is not a number from 1 to 65535"))?;
        if port == 0 || host.is_empty() {
            return Err(err("the host or port is empty"));
        }
        let transport = match (insecure, fragment) {
            (true, None) => Transport::Insecure,
            (true, Some(_)) => return Err(err("an insecure address cannot carry a pin")),
            (false, None) => Transport::WebPki,
            (false, Some(f)) => {
                let pin = f.strip_prefix("sha256=").ok_or_else(|| err("the pin must read #sha256=..."))?;
                let bytes = base64url_decode(pin).ok_or_else(|| err("the pin is not base64url"))?;
                Transport::Pinned(bytes.try_into().map_err(|_| err("the pin must be 32 bytes"))?)
            }
        };
        Ok(Self { host: host.to_owned(), port, transport })
    }

    /// `host:port` with IPv6 literals bracketed, for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            Transport::Pinned(pin) => write!(f, "sotto://{}#sha256={}", self.authority(), base64url_encode(pin)),
            Transport::WebPki => write!(f, "sotto://{}", self.authority()),
            Transport::Insecure => write!(f, "sotto+insecure://{}", self.authority()),
        }
    }
}

fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        Some((host, after.strip_prefix(':')?))
    } else {
        s.rsplit_once(':')
    }
}

/// Base64url without padding, as pins are written.
pub fn base64url_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Inverse of [`base64url_encode`]; `None` on any invalid input.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for t in [Transport::Pinned([7; 32]), Transport::WebPki, Transport::Insecure] {
            for host in ["127.0.0.1", "chat.example.org", "::1"] {
                let a = ServerAddress { host: host.into(), port: 7443, transport: t.clone() };
                assert_eq!(ServerAddress::parse(&a.to_string()).unwrap(), a);
            }
        }
    }

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url_encode(b""), "");
        assert_eq!(base64url_encode(b"f"), "Zg");
        assert_eq!(base64url_encode(b"fo"), "Zm8");
        assert_eq!(base64url_encode(b"foo"), "Zm9v");
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64url_decode(&base64url_encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "http://a:1",
            "sotto://a",
            "sotto://a:0",
            "sotto://a:99999",
            "sotto://a:1#sha256=short",
            "sotto://a:1#md5=AAAA",
            "sotto+insecure://a:1#sha256=AAAA",
            "sotto://:1",
        ] {
            assert!(ServerAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
