//! Server settings: defaults, a TOML file, and flags, in that order of
//! precedence (a flag beats the file, the file beats the default).
//!
//! Every key is optional; see docs/operations.md for the full list.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// What a config file may say. Unknown keys are errors, so a typo never
/// silently leaves a default in place.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Where the state lives: absent for the embedded SQLite in the data
    /// directory, or a PostgreSQL connection string shared by every node.
    pub store: Option<String>,
    /// Where file bytes live (default DATA/blobs); nodes sharing a
    /// PostgreSQL store share this folder too (a network filesystem).
    pub blobs: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Anyone may register.
    pub open_registration: Option<bool>,
    /// Host name in the printed address.
    pub public_host: Option<String>,
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM key.
    pub tls_key: Option<PathBuf>,
    /// Plain HTTP behind a proxy.
    pub insecure_http: Option<bool>,
    /// Message and file retention, e.g. "30d".
    pub retention: Option<String>,
    /// Largest file in bytes.
    pub max_file_size: Option<u64>,
    /// Per-account file quota in bytes.
    pub quota: Option<u64>,
    /// Tell members who is online.
    pub presence: Option<bool>,
    /// "text" or "json".
    pub log_format: Option<String>,
    /// Also write daily-rotated log files to DATA/logs.
    pub log_files: Option<bool>,
    /// Address for Prometheus /metrics (off when absent).
    pub metrics_listen: Option<String>,
    /// Most simultaneous connections.
    pub max_connections: Option<usize>,
    /// Most simultaneous connections from one IP address.
    pub max_connections_per_ip: Option<usize>,
    /// IPv6 addresses count per prefix of this many bits (default 64).
    pub ipv6_prefix: Option<u8>,
    /// Most connections not logged in yet (default 2000).
    pub max_unauthenticated: Option<usize>,
    /// Time to finish the TLS handshake and to log in, e.g. "10s".
    pub auth_timeout: Option<String>,
    /// Requests per second per connection, sustained.
    pub request_rate: Option<u32>,
    /// Requests a connection may burst above the rate.
    pub request_burst: Option<u32>,
    /// Request bytes per second per connection, sustained.
    pub byte_rate: Option<u64>,
    /// Request bytes a connection may burst above the rate (at least the
    /// largest frame, 1 MiB).
    pub byte_burst: Option<u64>,
    /// Most groups one device may create.
    pub max_groups_per_device: Option<u64>,
    /// Most devices one account may have.
    pub max_devices: Option<u32>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data: PathBuf,
    /// A PostgreSQL connection string (`postgresql://...`), or `None` for
    /// the embedded SQLite store.
    pub store: Option<String>,
    /// Where file bytes live; `None` for DATA/blobs.
    pub blobs: Option<PathBuf>,
    /// Listen address.
    pub listen: SocketAddr,
    /// Anyone may register.
    pub open_registration: bool,
    /// Host name in the printed address.
    pub public_host: Option<String>,
    /// PEM chain and key.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP.
    pub insecure_http: bool,
    /// Retention.
    pub retention: Duration,
    /// Largest file.
    pub max_file_size: u64,
    /// Per-account file quota.
    pub quota: u64,
    /// Presence on.
    pub presence: bool,
    /// Log format.
    pub log_format: String,
    /// Rotating log files.
    pub log_files: bool,
    /// Metrics address.
    pub metrics_listen: Option<SocketAddr>,
    /// Connection caps.
    pub max_connections: usize,
    /// Per-IP cap.
    pub max_connections_per_ip: usize,
    /// IPv6 addresses count per prefix of this many bits.
    pub ipv6_prefix: u8,
    /// Most connections not logged in yet; the oldest yields to a new one.
    pub max_unauthenticated: usize,
    /// Handshake and login deadline.
    pub auth_timeout: Duration,
    /// Sustained requests per second per connection.
    pub request_rate: u32,
    /// Burst.
    pub request_burst: u32,
    /// Sustained request bytes per second per connection.
    pub byte_rate: u64,
    /// Byte burst.
    pub byte_burst: u64,
    /// Groups per device.
    pub max_groups_per_device: u64,
    /// Devices per account.
    pub max_devices: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data: PathBuf::from("./sotto-data"),
            store: None,
            blobs: None,
            listen: "0.0.0.0:7443".parse().expect("address"),
            open_registration: false,
            public_host: None,
            tls_files: None,
            insecure_http: false,
            retention: Duration::from_secs(30 * 24 * 3600),
            max_file_size: sotto_proto::limits::DEFAULT_MAX_BLOB_BYTES,
            quota: 4 * sotto_proto::limits::DEFAULT_MAX_BLOB_BYTES,
            presence: true,
            log_format: "text".into(),
            log_files: false,
            metrics_listen: None,
            max_connections: 10_000,
            max_connections_per_ip: 200,
            ipv6_prefix: 64,
            max_unauthenticated: 2_000,
            auth_timeout: Duration::from_secs(sotto_proto::limits::AUTH_TIMEOUT_SECS),
            request_rate: 500,
            request_burst: 2000,
            byte_rate: crate::relay::DEFAULT_BYTE_RATE,
            byte_burst: crate::relay::DEFAULT_BYTE_BURST,
            max_groups_per_device: 10_000,
            max_devices: 8,
        }
    }
}

impl Settings {
    /// Applies a file's values over these settings. Returns every mistake,
    /// each as a sentence naming the key.
    pub fn apply(mut self, f: &FileConfig) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let dur = |key: &str, v: &Option<String>, errors: &mut Vec<String>| -> Option<Duration> {
            let v = v.as_ref()?;
            match humantime::parse_duration(v) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(format!("{key} = {v:?}: {e} (write it like \"30d\", \"12h\" or \"90s\")"));
                    None
                }
            }
        };
        let addr = |key: &str, v: &Option<String>, errors: &mut Vec<String>| -> Option<SocketAddr> {
            let v = v.as_ref()?;
            match v.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    errors.push(format!("{key} = {v:?} is not HOST:PORT with an IP address (e.g. \"0.0.0.0:7443\")"));
                    None
                }
            }
        };
        if let Some(v) = &f.data {
            self.data = v.clone();
        }
        if let Some(v) = &f.store {
            match store_url(v) {
                Ok(url) => self.store = url,
                Err(e) => errors.push(e),
            }
        }
        if let Some(v) = &f.blobs {
            self.blobs = Some(v.clone());
        }
        if let Some(a) = addr("listen", &f.listen, &mut errors) {
            self.listen = a;
        }
        if let Some(v) = f.open_registration {
            self.open_registration = v;
        }
        if let Some(v) = &f.public_host {
            self.public_host = Some(v.clone());
        }
        match (&f.tls_cert, &f.tls_key) {
            (Some(c), Some(k)) => {
                for p in [c, k] {
                    if !p.exists() {
                        errors.push(format!("{} does not exist", p.display()));
                    }
                }
                self.tls_files = Some((c.clone(), k.clone()));
            }
            (None, None) => {}
            _ => errors.push("tls_cert and tls_key go together: give both or neither".into()),
        }
        if let Some(v) = f.insecure_http {
            self.insecure_http = v;
        }
        if self.insecure_http && self.tls_files.is_some() {
            errors.push("insecure_http = true cannot be combined with tls_cert/tls_key".into());
        }
        if let Some(d) = dur("retention", &f.retention, &mut errors) {
            self.retention = d;
        }
        if let Some(v) = f.max_file_size {
            self.max_file_size = v;
        }
        if let Some(v) = f.quota {
            self.quota = v;
        }
        if self.quota < self.max_file_size {
            errors.push(format!(
                "quota ({}) is smaller than max_file_size ({}): no file that size could ever be sent",
                self.quota, self.max_file_size
            ));
        }
        if let Some(v) = f.presence {
            self.presence = v;
        }
        if let Some(v) = &f.log_format {
            if v != "text" && v != "json" {
                errors.push(format!("log_format = {v:?}: use \"text\" or \"json\""));
            }
            self.log_format = v.clone();
        }
        if let Some(v) = f.log_files {
            self.log_files = v;
        }
        if let Some(a) = addr("metrics_listen", &f.metrics_listen, &mut errors) {
            self.metrics_listen = Some(a);
        }
        let positive = |key: &str, v: u64, errors: &mut Vec<String>| {
            if v == 0 {
                errors.push(format!("{key} must be at least 1"));
            }
        };
        if let Some(v) = f.max_connections {
            positive("max_connections", v as u64, &mut errors);
            self.max_connections = v;
        }
        if let Some(v) = f.ipv6_prefix {
            if v == 0 || v > 128 {
                errors.push(format!("ipv6_prefix must be 1 to 128 (bits), not {v}"));
            }
            self.ipv6_prefix = v;
        }
        if let Some(v) = f.max_unauthenticated {
            positive("max_unauthenticated", v as u64, &mut errors);
            self.max_unauthenticated = v;
        }
        if let Some(v) = f.max_connections_per_ip {
            positive("max_connections_per_ip", v as u64, &mut errors);
            self.max_connections_per_ip = v;
        }
        if let Some(d) = dur("auth_timeout", &f.auth_timeout, &mut errors) {
            self.auth_timeout = d;
        }
        if let Some(v) = f.request_rate {
            positive("request_rate", u64::from(v), &mut errors);
            self.request_rate = v;
        }
        if let Some(v) = f.request_burst {
            positive("request_burst", u64::from(v), &mut errors);
            self.request_burst = v;
        }
        if let Some(v) = f.byte_rate {
            positive("byte_rate", v, &mut errors);
            self.byte_rate = v;
        }
        if let Some(v) = f.byte_burst {
            let frame = sotto_proto::limits::MAX_FRAME_BYTES as u64;
            if v < frame {
                errors.push(format!("byte_burst must be at least the largest frame ({frame} bytes), not {v}"));
            }
            self.byte_burst = v;
        }
        if let Some(v) = f.max_groups_per_device {
            self.max_groups_per_device = v;
        }
        if let Some(v) = f.max_devices {
            if v == 0 {
                errors.push("max_devices must be at least 1".into());
            }
            self.max_devices = v;
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }
}

/// Parses a config file's text; errors are sentences with line numbers.
pub fn parse(text: &str) -> Result<FileConfig, Vec<String>> {
    toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_owned()])
}

/// Checks a config file's text against the defaults.
pub fn check(text: &str) -> Result<Settings, Vec<String>> {
    Settings::default().apply(&parse(text)?)
}

/// What `store` (in the file or `--store`) says: `sqlite` (or empty) for
/// the embedded store, a `postgresql://` or `postgres://` URL, or a
/// key=value connection string with `host=`.
pub fn store_url(v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() || v == "sqlite" {
        return Ok(None);
    }
    if v.starts_with("postgresql://") || v.starts_with("postgres://") || v.contains("host=") {
        return Ok(Some(v.to_owned()));
    }
    Err(format!("store = {v:?}: use \"sqlite\" or a PostgreSQL address such as postgresql://sotto@db.example/sotto"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_sqlite_or_a_postgresql_address() {
        assert_eq!(check("store = \"sqlite\"\n").unwrap().store, None);
        let s = check("store = \"postgresql://sotto@db.example/sotto\"\n").unwrap();
        assert_eq!(s.store.as_deref(), Some("postgresql://sotto@db.example/sotto"));
        let e = check("store = \"mysql://x\"\n").unwrap_err().join(" ");
        assert!(e.contains("PostgreSQL address"), "{e}");
        // The nodes of a deployment share one blob folder.
        let s = check("store = \"host=/run/postgresql dbname=sotto\"\nblobs = \"/srv/sotto-blobs\"\n").unwrap();
        assert_eq!(s.blobs.as_deref(), Some(std::path::Path::new("/srv/sotto-blobs")));
        assert_eq!(check("").unwrap().blobs, None, "DATA/blobs unless told");
    }

    #[test]
    fn good_file_applies_and_mistakes_are_each_named() {
        let s = check("listen = \"127.0.0.1:9000\"\nretention = \"7d\"\npresence = false\n").unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.retention, Duration::from_secs(7 * 24 * 3600));
        assert!(!s.presence);
        let errs = check("listen = \"nowhere\"\nretention = \"soon\"\nlog_format = \"xml\"\nquota = 1\n").unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("listen"));
        assert!(errs[1].contains("retention"));
        let typo = check("retension = \"7d\"\n").unwrap_err();
        assert!(typo[0].contains("retension") && typo[0].contains("line 1"), "{typo:?}");
        let half = check("tls_cert = \"/nonexistent.pem\"\n").unwrap_err();
        assert!(half[0].contains("together"));
    }

    #[test]
    fn byte_budget_is_configurable_but_must_fit_the_largest_frame() {
        let s = check("byte_rate = 262144\nbyte_burst = 8388608\n").unwrap();
        assert_eq!((s.byte_rate, s.byte_burst), (262_144, 8_388_608));
        let defaults = check("").unwrap();
        assert_eq!(defaults.byte_burst, crate::relay::DEFAULT_BYTE_BURST);
        let errs = check("byte_rate = 0\nbyte_burst = 1000\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[1].contains("largest frame"), "{errs:?}");
    }
}
