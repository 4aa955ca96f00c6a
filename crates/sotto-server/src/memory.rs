//! The server's allocator.
//!
//! A relay's memory comes in waves: thousands of connections arrive, each
//! with TLS and WebSocket buffers, and later leave. glibc's malloc kept what
//! such a wave freed mapped for good (measured by the soak: RSS stayed at
//! its peak after every client had gone). jemalloc returns freed pages to
//! the operating system once they have been unused for `dirty_decay_ms`
//! (10 s by default); its background thread does that purging even while
//! the server is idle, when no allocation would trigger it.
//!
//! The binaries choose the allocator (`#[global_allocator]`), the library
//! only names it, so tests and fuzzing keep the system allocator (which the
//! sanitizers instrument).

pub use tikv_jemallocator::Jemalloc;

/// Starts jemalloc's background purging. Call once at start-up, in a
/// process whose global allocator is [`Jemalloc`]. A failure only means
/// freed memory is returned later (on the next allocations), so callers
/// log it and go on.
pub fn return_freed_memory_when_idle() -> Result<(), PurgeError> {
    tikv_jemalloc_ctl::background_thread::write(true).map_err(|e| PurgeError(e.to_string()))
}

/// jemalloc could not start its background purging thread.
#[derive(Debug, thiserror::Error)]
#[error("jemalloc's background purging thread did not start: {0}")]
pub struct PurgeError(String);
