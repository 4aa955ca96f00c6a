//! Hard limits shared by both sides. They are checked before any decoding,
//! so an oversized frame costs the receiver nothing but its length.

/// Largest WebSocket message (one protocol frame) either side accepts:
/// room for the largest commit with its welcome.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Largest MLS application message in a frame.
pub const MAX_PAYLOAD_BYTES: usize = 900 * 1024;
/// Largest commit, welcome or GroupInfo. These carry the group's ratchet
/// tree or encryptions to its subtrees, which in a post-quantum group grow
/// by about 1.5 KiB per member (an X-Wing public key is 1,216 bytes, a
/// ciphertext 1,120): a welcome into a group of 1,000 is 1.5 MiB.
pub const MAX_HANDSHAKE_BYTES: usize = 1800 * 1024;
/// Most KeyPackages one upload may carry.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 100;
/// Most KeyPackages one device may keep stocked on the server.
pub const MAX_KEY_PACKAGES_STOCK: usize = 500;
/// Below this many unclaimed KeyPackages the server tells the device to refill.
pub const KEY_PACKAGES_LOW_WATER: usize = 10;
/// Most messages returned by one `Fetch` or pushed per group per wake-up.
pub const MAX_FETCH: u32 = 500;
/// Most devices one commit may add or remove.
pub const MAX_MEMBERSHIP_CHANGE: usize = 1000;
/// Seconds an unauthenticated connection may live.
pub const AUTH_TIMEOUT_SECS: u64 = 10;
/// Largest transient signal payload (a typing indicator).
pub const MAX_SIGNAL_BYTES: usize = 512;
/// A device's transient signals to one group are passed on at most this
/// often; the rest are dropped.
pub const SIGNAL_INTERVAL_MS: u64 = 1000;
/// Length of a group id in bytes.
pub const GROUP_ID_LEN: usize = 16;
/// Default largest file (encrypted blob) a server accepts: 2 GiB.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Length of a blob id in bytes.
pub const BLOB_ID_LEN: usize = 16;
/// Most bytes of an operator notice's text.
pub const MAX_NOTICE_BYTES: usize = 2000;
/// Most notices answered to one [`crate::Request::Notices`] (the newest).
pub const MAX_NOTICES: usize = 20;
