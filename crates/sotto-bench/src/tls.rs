//! `tls`: what a TLS 1.3 handshake costs with the key exchange the client
//! offers: the hybrid post-quantum X25519MLKEM768 (the default) against
//! classical X25519, both on aws-lc-rs, against a real server with a
//! pinned key. Each handshake is a fresh TCP connection.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use rustls::crypto::aws_lc_rs::kx_group;
use rustls::crypto::CryptoProvider;
use sotto_client::tls::{provider, PinVerifier};
use sotto_proto::{ServerAddress, Transport};

/// Handshake times (ms) for one key exchange.
pub struct Handshakes {
    pub group: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

pub async fn run(address: &ServerAddress, n: usize) -> Result<Vec<Handshakes>> {
    let Transport::Pinned(pin) = address.transport.clone() else { anyhow::bail!("a pinned address") };
    let classical = Arc::new(CryptoProvider { kx_groups: vec![kx_group::X25519], ..(*provider()).clone() });
    let mut out = Vec::new();
    for client in [provider(), classical] {
        let verifier = Arc::new(PinVerifier::new(pin, client.clone()));
        let config = Arc::new(
            rustls::ClientConfig::builder_with_provider(client)
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
        );
        let connector = tokio_rustls::TlsConnector::from(config);
        let mut times = Vec::with_capacity(n);
        let mut group = String::new();
        for _ in 0..n {
            let t = Instant::now();
            let tcp = tokio::net::TcpStream::connect((address.host.as_str(), address.port)).await?;
            let name = rustls_pki_types::ServerName::try_from("localhost")?;
            let tls = connector.connect(name, tcp).await.context("handshake")?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            group = format!("{:?}", tls.get_ref().1.negotiated_key_exchange_group().context("no group")?.name());
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        let mean_ms = times.iter().sum::<f64>() / times.len() as f64;
        out.push(Handshakes { group, p50_ms: at(0.5), p99_ms: at(0.99), mean_ms });
    }
    Ok(out)
}
