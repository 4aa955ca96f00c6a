//! Per-connection budgets: token buckets for requests and bytes per second.

use tokio::time::Instant;

/// A token bucket: `rate` tokens per second sustained, `burst` at once.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, burst: u64) -> Self {
        let (rate, burst) = (rate as f64, burst as f64);
        Self { tokens: burst, rate, burst, last: Instant::now() }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }
}

/// What one connection may ask of the server: requests per second, and
/// bytes per second, so a few huge messages cannot do what many small
/// ones may not (each fills the one store writer and its fsync that every
/// other conversation waits on).
pub struct Budget {
    requests: Bucket,
    bytes: Bucket,
}

impl Budget {
    /// The budget the relay configuration allows one connection.
    pub fn new(config: &crate::relay::RelayConfig) -> Self {
        Self {
            requests: Bucket::new(config.request_rate.into(), config.request_burst.into()),
            bytes: Bucket::new(config.byte_rate, config.byte_burst),
        }
    }

    /// Takes one request of `len` bytes, or refuses it and takes nothing.
    pub fn take(&mut self, len: usize) -> bool {
        self.requests.refill();
        self.bytes.refill();
        let len = len as f64;
        if self.requests.tokens < 1.0 || self.bytes.tokens < len {
            return false;
        }
        self.requests.tokens -= 1.0;
        self.bytes.tokens -= len;
        true
    }
}
