//! The PostgreSQL store's numbered migrations. Each runs once, in order,
//! inside one transaction with its number recorded; a database with a
//! number higher than this build knows is refused (a newer sotto made it).

/// `(number, SQL)`, in order. Append only: a released migration never
/// changes.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[(1, INITIAL), (2, DEPLOYMENT), (3, KEY_PACKAGE_SUITES)];

/// KeyPackages carry the MLS suite they are for (those stored before are
/// all of the classical suite, 1).
const KEY_PACKAGE_SUITES: &str = r#"
ALTER TABLE key_packages ADD COLUMN suite INTEGER NOT NULL DEFAULT 1;
CREATE INDEX key_packages_suite ON key_packages(handle, device_id, suite, last_resort, id);
"#;

/// What every node of a deployment must share: the TLS key (so each
/// presents the same pinned key) and the server id; and the nodes alive
/// with their connections, for the operator's view of the deployment.
const DEPLOYMENT: &str = r#"
CREATE TABLE deployment(name TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE nodes(node TEXT PRIMARY KEY, address TEXT NOT NULL, seen_at BIGINT NOT NULL);
CREATE TABLE live_sessions(
    node TEXT NOT NULL REFERENCES nodes(node) ON DELETE CASCADE,
    handle TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    remote TEXT NOT NULL,
    since BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL
);
CREATE INDEX live_sessions_node ON live_sessions(node);
"#;

const INITIAL: &str = r#"
CREATE TABLE accounts(
    handle TEXT PRIMARY KEY,
    account_key BYTEA NOT NULL,
    banned BOOLEAN NOT NULL DEFAULT false,
    created_at BIGINT NOT NULL
);
CREATE TABLE devices(
    handle TEXT NOT NULL REFERENCES accounts(handle) ON DELETE CASCADE,
    device_id BIGINT NOT NULL,
    device_key BYTEA NOT NULL,
    certificate BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE invites(
    id BIGSERIAL UNIQUE,
    code_hash BYTEA PRIMARY KEY,
    uses_left BIGINT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE account_invites(handle TEXT PRIMARY KEY, code_hash BYTEA NOT NULL);
CREATE TABLE group_policy(group_id BYTEA PRIMARY KEY, members_can_add BOOLEAN NOT NULL DEFAULT true);
CREATE TABLE group_admins(group_id BYTEA NOT NULL, handle TEXT NOT NULL, PRIMARY KEY(group_id, handle));
CREATE TABLE group_retention(group_id BYTEA PRIMARY KEY, retention_ms BIGINT NOT NULL);
CREATE TABLE accepted_groups(group_id BYTEA NOT NULL, handle TEXT NOT NULL, PRIMARY KEY(group_id, handle));
CREATE TABLE key_packages(
    id BIGSERIAL PRIMARY KEY,
    handle TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    last_resort BOOLEAN NOT NULL,
    package BYTEA NOT NULL
);
CREATE INDEX key_packages_device ON key_packages(handle, device_id, last_resort, id);
-- One row per group: its epoch and newest sequence number. An append locks
-- the row (SELECT ... FOR UPDATE), so one sequence per group and
-- first-commit-wins per epoch hold across every node writing to this
-- database.
CREATE TABLE groups(
    group_id BYTEA PRIMARY KEY,
    epoch BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    creator_handle TEXT,
    creator_device BIGINT,
    group_info BYTEA,
    group_info_epoch BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE members(
    group_id BYTEA NOT NULL,
    handle TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    joined_seq BIGINT NOT NULL,
    cursor BIGINT NOT NULL,
    until_seq BIGINT,
    PRIMARY KEY(group_id, handle, device_id)
);
CREATE INDEX members_device ON members(handle, device_id);
CREATE TABLE messages(
    group_id BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device BIGINT NOT NULL,
    kind SMALLINT NOT NULL,
    payload BYTEA NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY(group_id, seq)
);
CREATE INDEX messages_age ON messages(stored_at);
CREATE TABLE sent_ids(
    group_id BYTEA NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device BIGINT NOT NULL,
    client_id BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY(group_id, sender_handle, sender_device, client_id)
);
CREATE INDEX sent_ids_age ON sent_ids(stored_at);
CREATE TABLE welcomes(
    id BIGSERIAL PRIMARY KEY,
    handle TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    group_id BYTEA NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device BIGINT NOT NULL,
    welcome BYTEA NOT NULL,
    stored_at BIGINT NOT NULL
);
CREATE INDEX welcomes_device ON welcomes(handle, device_id, id);
CREATE TABLE blobs(
    id BYTEA PRIMARY KEY,
    owner_handle TEXT NOT NULL,
    owner_device BIGINT NOT NULL,
    size BIGINT NOT NULL,
    complete BOOLEAN NOT NULL DEFAULT false,
    created_at BIGINT NOT NULL
);
CREATE INDEX blobs_owner ON blobs(owner_handle);
CREATE TABLE device_copies(
    handle TEXT NOT NULL, device_id BIGINT NOT NULL, copy_id BYTEA NOT NULL, since BIGINT NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE revoked_devices(
    handle TEXT NOT NULL, device_id BIGINT NOT NULL, revoked_at BIGINT NOT NULL, PRIMARY KEY(handle, device_id)
);
CREATE TABLE device_seen(
    handle TEXT NOT NULL, device_id BIGINT NOT NULL, last_seen BIGINT NOT NULL, PRIMARY KEY(handle, device_id)
);
CREATE TABLE blob_readers(
    blob_id BYTEA NOT NULL, handle TEXT NOT NULL, device_id BIGINT NOT NULL,
    fetched BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY(blob_id, handle, device_id)
);
CREATE TABLE blob_groups(blob_id BYTEA NOT NULL, group_id BYTEA NOT NULL, PRIMARY KEY(blob_id, group_id));
CREATE TABLE notices(id BIGSERIAL PRIMARY KEY, text TEXT NOT NULL, created_at BIGINT NOT NULL);
"#;
