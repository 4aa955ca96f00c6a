//! The SQLite store's tables.

/// `sent_ids`, in the schema and in its migration. WITHOUT ROWID: the key
/// is the only way in, so one b-tree instead of a table and its key's
/// index (each fold inserts every recent id; issue 22: +3 % on one core).
macro_rules! sent_ids_table {
    () => {
        r#"
CREATE TABLE IF NOT EXISTS sent_ids(
    group_id BLOB NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    client_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY(group_id, sender_handle, sender_device, client_id)
) WITHOUT ROWID;
"#
    };
}

/// `messages`, in the schema and in its migration. The payload comes
/// last: a run's payload spills into overflow pages, and SQLite reads a
/// column after it by walking them, which every read of `last_seq`,
/// `stored_at` or `client_id` did when those came after it (the fold's
/// deletes most of all: 2 % of the server's time when every message is
/// reclaimed; issue 22).
macro_rules! messages_table {
    () => {
        r#"
CREATE TABLE IF NOT EXISTS messages(
    group_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    -- Set on a run (kind 3): the row holds the entries seq..=last_seq
    -- (`runs.rs`).
    last_seq INTEGER,
    epoch INTEGER NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    -- The sender's id for the append, until the writer folded it into
    -- sent_ids (`pending.rs`); NULL on rows from before, and on runs.
    client_id BLOB,
    payload BLOB NOT NULL,
    PRIMARY KEY(group_id, seq)
);
"#
    };
}

pub(super) const SCHEMA: &str = concat!(
    r#"
CREATE TABLE IF NOT EXISTS accounts(
    handle TEXT PRIMARY KEY,
    account_key BLOB NOT NULL,
    banned INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices(
    handle TEXT NOT NULL REFERENCES accounts(handle) ON DELETE CASCADE,
    device_id INTEGER NOT NULL,
    device_key BLOB NOT NULL,
    certificate BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE IF NOT EXISTS invites(
    code_hash BLOB PRIMARY KEY,
    uses_left INTEGER NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL
);
-- Which invite admitted an account, so an account its owner deletes gives
-- the use back (an operator's removal does not).
CREATE TABLE IF NOT EXISTS account_invites(
    handle TEXT PRIMARY KEY,
    code_hash BLOB NOT NULL
);
-- The groups each account accepted: presence is shown only through these
-- (a person added by a stranger shows them nothing until they accept).
-- Roles in named groups (group ids of kind 2): a group with a policy row
-- has roles; its creator is its first admin. Groups from before roles
-- have no row: every member may add and remove there, as before.
CREATE TABLE IF NOT EXISTS group_policy(
    group_id BLOB PRIMARY KEY,
    members_can_add INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS group_admins(
    group_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    PRIMARY KEY(group_id, handle)
);
-- Groups whose entries go sooner than the server's retention (a
-- conversation's disappearing timer, as its members set it).
CREATE TABLE IF NOT EXISTS group_retention(
    group_id BLOB PRIMARY KEY,
    retention_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accepted_groups(
    group_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    PRIMARY KEY(group_id, handle)
);
CREATE TABLE IF NOT EXISTS key_packages(
    id INTEGER PRIMARY KEY,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    last_resort INTEGER NOT NULL,
    package BLOB NOT NULL,
    -- The MLS suite the package is for (sotto_proto::suites).
    suite INTEGER NOT NULL DEFAULT 1
);
DROP INDEX IF EXISTS key_packages_device;
CREATE INDEX IF NOT EXISTS key_packages_suite ON key_packages(handle, device_id, suite, last_resort, id);
CREATE TABLE IF NOT EXISTS groups(
    group_id BLOB PRIMARY KEY,
    epoch INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    creator_handle TEXT,
    creator_device INTEGER,
    group_info BLOB,
    group_info_epoch INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members(
    group_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    joined_seq INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    -- Set when the device was removed by the commit at this seq: it may
    -- still read up to that commit (so it learns of its removal), nothing
    -- after, and may not post. The row goes once it acknowledged the commit.
    until_seq INTEGER,
    PRIMARY KEY(group_id, handle, device_id)
);
CREATE INDEX IF NOT EXISTS members_device ON members(handle, device_id);
"#,
    messages_table!(),
    r#"
CREATE INDEX IF NOT EXISTS messages_age ON messages(stored_at);
"#,
    sent_ids_table!(),
    r#"
-- AUTOINCREMENT: an id is never handed out twice, also after the newest
-- welcome was acknowledged and deleted. A connection pushes welcomes with
-- ids above the last it pushed; a reused id was never pushed live.
CREATE TABLE IF NOT EXISTS welcomes(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    group_id BLOB NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    welcome BLOB NOT NULL,
    stored_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS welcomes_device ON welcomes(handle, device_id, id);
CREATE TABLE IF NOT EXISTS blobs(
    id BLOB PRIMARY KEY,
    owner_handle TEXT NOT NULL,
    owner_device INTEGER NOT NULL,
    size INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_owner ON blobs(owner_handle);
CREATE TABLE IF NOT EXISTS device_copies(
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    copy_id BLOB NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE IF NOT EXISTS revoked_devices(
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE IF NOT EXISTS device_seen(
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE IF NOT EXISTS blob_readers(
    blob_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    fetched INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(blob_id, handle, device_id)
);
-- The groups a blob was shared with: a blob shared only with groups that
-- have a disappearing timer goes with the timer.
-- Operator notices to every user (`sotto-server announce`); AUTOINCREMENT
-- so an id is never reused after old ones are dropped.
CREATE TABLE IF NOT EXISTS notices(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_groups(
    blob_id BLOB NOT NULL,
    group_id BLOB NOT NULL,
    PRIMARY KEY(blob_id, group_id)
);
"#
);

/// Run once, before [`SCHEMA`], on a database from before KeyPackages had
/// a suite: every package stored then is of the classical suite.
pub(super) const KEY_PACKAGE_SUITE_MIGRATION: &str = r#"
ALTER TABLE key_packages ADD COLUMN suite INTEGER NOT NULL DEFAULT 1;
"#;

/// Run once on a database from before appends carried their client id
/// (`pending.rs`).
pub(super) const MESSAGE_CLIENT_ID_MIGRATION: &str = r#"
ALTER TABLE messages ADD COLUMN client_id BLOB;
"#;

/// Run once on a database whose `sent_ids` has rowids (from before it was
/// keyed by the client's id alone).
pub(super) const SENT_IDS_WITHOUT_ROWID_MIGRATION: &str = concat!(
    "BEGIN IMMEDIATE;
ALTER TABLE sent_ids RENAME TO sent_ids_rowid;",
    sent_ids_table!(),
    "INSERT OR IGNORE INTO sent_ids
    SELECT group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at FROM sent_ids_rowid;
DROP TABLE sent_ids_rowid;
COMMIT;"
);

/// Run once on a database whose `messages` has columns after the payload
/// (from before [`messages_table`] put it last): the rows are copied over.
pub(super) const MESSAGES_PAYLOAD_LAST_MIGRATION: &str = concat!(
    "BEGIN IMMEDIATE;
DROP INDEX IF EXISTS messages_age;
ALTER TABLE messages RENAME TO messages_payload_inside;",
    messages_table!(),
    "INSERT INTO messages(group_id, seq, last_seq, epoch, sender_handle, sender_device, kind, stored_at, client_id, payload)
    SELECT group_id, seq, last_seq, epoch, sender_handle, sender_device, kind, stored_at, client_id, payload
    FROM messages_payload_inside;
DROP TABLE messages_payload_inside;
CREATE INDEX IF NOT EXISTS messages_age ON messages(stored_at);
COMMIT;"
);

/// Run once on a database from before runs (`runs.rs`).
pub(super) const MESSAGE_RUNS_MIGRATION: &str = r#"
ALTER TABLE messages ADD COLUMN last_seq INTEGER;
"#;

/// Run once on a database from before `accepted_groups` existed: every
/// current membership counts as accepted.
pub(super) const ACCEPTANCE_MIGRATION: &str = r#"
INSERT OR IGNORE INTO accepted_groups(group_id, handle) SELECT DISTINCT group_id, handle FROM members;
"#;

/// Brings a database made by an older version up to [`SCHEMA`] (run after
/// it): the welcomes table got AUTOINCREMENT; its rows are copied over.
pub(super) const WELCOME_IDS_MIGRATION: &str = r#"
BEGIN IMMEDIATE;
CREATE TABLE welcomes_new(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    group_id BLOB NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    welcome BLOB NOT NULL,
    stored_at INTEGER NOT NULL
);
INSERT INTO welcomes_new SELECT id, handle, device_id, group_id, sender_handle, sender_device, welcome, stored_at FROM welcomes;
DROP TABLE welcomes;
ALTER TABLE welcomes_new RENAME TO welcomes;
CREATE INDEX IF NOT EXISTS welcomes_device ON welcomes(handle, device_id, id);
COMMIT;
"#;
