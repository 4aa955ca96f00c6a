//! TLS set-up: a self-signed certificate made on first start and pinned by
//! clients, or an operator's certificate chain.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key or certificate generation failed.
    #[error("could not generate the server certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate and key.
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// The server's TLS configuration and, for a self-signed certificate, the
/// pin that clients must see.
pub struct TlsSetup {
    /// For the acceptor.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo, when clients pin it.
    pub pin: Option<[u8; 32]>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A new private key for [`self_signed`], as PEM.
pub fn new_key_pem() -> Result<String, TlsError> {
    Ok(rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?.serialize_pem())
}

/// Makes `pem` the key [`self_signed`] uses in `dir` (the key every node of
/// a deployment shares): written if the folder holds another (whose
/// certificate then goes, to be made again for this key).
pub fn adopt_key(dir: &Path, pem: &str) -> Result<(), TlsError> {
    rcgen::KeyPair::from_pem(pem)
        .map_err(|e| TlsError::Pem { path: dir.join("server-key.pem"), reason: e.to_string() })?;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let key_path = dir.join("server-key.pem");
    if fs::read_to_string(&key_path).ok().as_deref() == Some(pem) {
        return Ok(());
    }
    let _ = fs::remove_file(&key_path);
    write_private(&key_path, pem.as_bytes())?;
    let cert_path = dir.join("server-cert.pem");
    if cert_path.exists() {
        fs::remove_file(&cert_path).map_err(io_err(&cert_path))?;
    }
    Ok(())
}

/// Loads the key and certificate kept in `dir`, or makes and stores them on
/// first start. The key file is created readable by its owner only.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<TlsSetup, TlsError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let key_path = dir.join("server-key.pem");
    let cert_path = dir.join("server-cert.pem");
    let key = if key_path.exists() {
        let pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        rcgen::KeyPair::from_pem(&pem).map_err(|e| TlsError::Pem { path: key_path.clone(), reason: e.to_string() })?
    } else {
        let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        key
    };
    let cert_der = if cert_path.exists() {
        let pem = fs::read(&cert_path).map_err(io_err(&cert_path))?;
        CertificateDer::from_pem_slice(&pem)
            .map_err(|e| TlsError::Pem { path: cert_path.clone(), reason: e.to_string() })?
    } else {
        let mut all = vec!["localhost".to_owned(), "sotto".to_owned()];
        all.extend(names.iter().cloned());
        let mut params = rcgen::CertificateParams::new(all).map_err(|e| TlsError::Generate(e.to_string()))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "sotto server");
        // Clients pin the key, not the certificate, so a long validity costs
        // nothing and spares operators a renewal chore.
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let cert = params.self_signed(&key).map_err(|e| TlsError::Generate(e.to_string()))?;
        fs::write(&cert_path, cert.pem()).map_err(io_err(&cert_path))?;
        cert.der().clone()
    };
    let pin: [u8; 32] = Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key)).into();
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(TlsSetup { config: server_config(vec![cert_der], key_der)?, pin: Some(pin) })
}

/// Uses an operator's certificate chain and key (PEM). Clients verify it
/// against the web PKI, so no pin is given out.
pub fn from_files(cert: &Path, key: &Path) -> Result<TlsSetup, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem { path: cert.to_owned(), reason: e.to_string() })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: cert.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Pem { path: cert.to_owned(), reason: "no certificate in the file".into() });
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem { path: key.to_owned(), reason: e.to_string() })?;
    Ok(TlsSetup { config: server_config(chain, key_der)?, pin: None })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_err(path))
}

/// The TLS crypto: aws-lc-rs, with the hybrid post-quantum key exchange
/// X25519MLKEM768 preferred (a client offering it gets it), then X25519 and
/// P-256 for clients that lack it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::X25519MLKEM768, kx_group::X25519, kx_group::SECP256R1],
        ..default_provider()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_start_reuses_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed(dir.path(), &[]).unwrap();
        let b = self_signed(dir.path(), &[]).unwrap();
        assert!(a.pin.is_some());
        assert_eq!(a.pin, b.pin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("server-key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
