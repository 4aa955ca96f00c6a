//! The profile database's tables.

#[allow(unused_imports)]
use super::*;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings(k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contacts(
    handle TEXT PRIMARY KEY,
    account_key BLOB NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    key_changed INTEGER NOT NULL DEFAULT 0,
    -- The new account key seen, held until the person trusts it.
    pending_key BLOB,
    added_at INTEGER NOT NULL,
    -- 1 once this person chose to talk to them (wrote to them, added them,
    -- accepted their request): their new conversations show at once.
    accepted INTEGER NOT NULL DEFAULT 0
);
-- People this person blocked: their welcomes are dropped, their messages
-- are decrypted (to stay in step) but neither stored nor shown.
CREATE TABLE IF NOT EXISTS blocked(handle TEXT PRIMARY KEY, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS groups(
    group_id BLOB PRIMARY KEY,
    conversation TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    last_update INTEGER NOT NULL DEFAULT 0,
    -- 1 when a delivery could not be processed: the device is out of step
    -- and rejoins by external commit.
    broken INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    -- Set while the group is a message request: who added this device
    -- (someone not accepted yet). Its messages are kept but not shown.
    request_from TEXT,
    -- The disappearing-message timer (seconds, 0 = off) and the sequence
    -- number of the timer message that set it: the highest wins.
    timer_secs INTEGER NOT NULL DEFAULT 0,
    timer_seq INTEGER NOT NULL DEFAULT 0,
    -- How far this person read (on any of their devices), and how far
    -- this device last told the others it has and has read.
    read_seq INTEGER NOT NULL DEFAULT 0,
    told_delivered INTEGER NOT NULL DEFAULT 0,
    told_read INTEGER NOT NULL DEFAULT 0,
    -- When the last receipt went (live receipts are sent every few seconds).
    receipt_at INTEGER NOT NULL DEFAULT 0,
    -- 0 when the server has not been told the timer yet (it keeps the
    -- group's entries no longer than the timer).
    retention_told INTEGER NOT NULL DEFAULT 1,
    -- The group's description and the sequence number that set it.
    description TEXT NOT NULL DEFAULT '',
    description_seq INTEGER NOT NULL DEFAULT 0,
    -- A named group's picture and the sequence number that set it.
    picture BLOB,
    picture_seq INTEGER NOT NULL DEFAULT 0,
    -- The version of this person's profile last put into this group.
    profile_sent INTEGER NOT NULL DEFAULT 0,
    -- Roles (named groups): known once this device created the group or
    -- got a roles message; the sequence number of the one applied.
    roles_known INTEGER NOT NULL DEFAULT 0,
    roles_seq INTEGER NOT NULL DEFAULT 0,
    members_can_add INTEGER NOT NULL DEFAULT 1,
    -- Muted here: no bell, no notification, not counted in unread totals.
    muted INTEGER NOT NULL DEFAULT 0,
    -- The GroupKind, recorded on creation or join. NULL in groups from
    -- before it: those say it in their id's first byte.
    kind INTEGER
);
CREATE TABLE IF NOT EXISTS group_admins(
    group_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    PRIMARY KEY(group_id, handle)
);
-- Other people's profiles, as they sent them (end to end).
CREATE TABLE IF NOT EXISTS profiles(
    handle TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    avatar BLOB,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_conversation ON groups(conversation);
CREATE TABLE IF NOT EXISTS messages(
    n INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    conversation TEXT NOT NULL,
    group_id BLOB,
    seq INTEGER,
    sender TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    fetched INTEGER NOT NULL DEFAULT 0,
    -- The message this one answers.
    reply_to BLOB,
    -- An annotation (a reaction, an edit, a delete, a receipt) changes
    -- `target` rather than being shown itself; `receive` lists it.
    annotation INTEGER NOT NULL DEFAULT 0,
    target BLOB,
    -- When the newest edit arrived; the earlier versions are in
    -- message_versions.
    edited_at INTEGER,
    -- Deleted for everyone by its sender: the body is gone.
    deleted INTEGER NOT NULL DEFAULT 0,
    -- Removed from this device (and its file) at this time.
    expires_at INTEGER,
    -- Reactions: CBOR list of (emoji, [handle]).
    reactions BLOB,
    -- Pinned for everyone in the conversation.
    pinned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation, n);
-- Earlier versions of edited messages, kept on this device only.
CREATE TABLE IF NOT EXISTS message_versions(
    message_id BLOB NOT NULL,
    body BLOB NOT NULL,
    replaced_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS message_versions_id ON message_versions(message_id);
-- The newest receipt of each member device in each group.
CREATE TABLE IF NOT EXISTS receipts(
    group_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    read INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(group_id, handle, device_id)
);
CREATE TABLE IF NOT EXISTS uploads(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    blob_id BLOB NOT NULL,
    key BLOB NOT NULL,
    nonce BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
-- Where this device keeps the file of a message (downloaded, or the
-- file it sent), so a history archive for a new device can carry it.
CREATE TABLE IF NOT EXISTS file_copies(message_id BLOB PRIMARY KEY, path TEXT NOT NULL);
-- When each person's device list was last looked at before a send to a
-- named group (a new device of theirs is added then if missing).
CREATE TABLE IF NOT EXISTS device_checks(handle TEXT PRIMARY KEY, at INTEGER NOT NULL);
-- This account's devices by number, with the names people gave them.
CREATE TABLE IF NOT EXISTS own_devices(
    device_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
-- Notices from a server's operator (not end-to-end encrypted, in no
-- conversation), by server address and the server's id for them.
CREATE TABLE IF NOT EXISTS server_notices(
    server TEXT NOT NULL,
    id INTEGER NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(server, id)
);
CREATE TABLE IF NOT EXISTS outbox(
    client_id BLOB PRIMARY KEY,
    group_id BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    message_id BLOB,
    welcome BLOB,
    added BLOB,
    create_group INTEGER NOT NULL DEFAULT 0,
    removed BLOB,
    intent BLOB,
    created_at INTEGER NOT NULL
);
"#;

/// Brings a profile made by an older version up to [`SCHEMA`] (run after
/// it): columns added since.
pub(crate) fn upgrade(conn: &Connection) -> CoreResult<()> {
    upgrade_columns(conn)?;
    // Needs `messages` with every column above: installed last.
    super::search::install(conn)
}

fn upgrade_columns(conn: &Connection) -> CoreResult<()> {
    if !has_column(conn, "contacts", "accepted")? {
        // Everyone known before message requests existed was someone this
        // person already talked to.
        conn.execute_batch(
            "ALTER TABLE contacts ADD COLUMN accepted INTEGER NOT NULL DEFAULT 0; UPDATE contacts SET accepted=1;",
        )?;
    }
    if !has_column(conn, "groups", "request_from")? {
        conn.execute_batch("ALTER TABLE groups ADD COLUMN request_from TEXT;")?;
    }
    if !has_column(conn, "groups", "timer_secs")? {
        conn.execute_batch(
            "ALTER TABLE groups ADD COLUMN timer_secs INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN timer_seq INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN told_delivered INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN told_read INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN retention_told INTEGER NOT NULL DEFAULT 1;
             ALTER TABLE groups ADD COLUMN description TEXT NOT NULL DEFAULT '';
             ALTER TABLE groups ADD COLUMN description_seq INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN picture BLOB;
             ALTER TABLE groups ADD COLUMN picture_seq INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN profile_sent INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN receipt_at INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN roles_known INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN roles_seq INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE groups ADD COLUMN members_can_add INTEGER NOT NULL DEFAULT 1;",
        )?;
    }
    if !has_column(conn, "groups", "kind")? {
        conn.execute_batch("ALTER TABLE groups ADD COLUMN kind INTEGER;")?;
    }
    if !has_column(conn, "groups", "successor")? {
        // A classical named group moved to a post-quantum one: the new
        // group's id and who it started with (newline-separated handles).
        conn.execute_batch(
            "ALTER TABLE groups ADD COLUMN successor BLOB;
             ALTER TABLE groups ADD COLUMN successor_members TEXT;",
        )?;
    }
    if !has_column(conn, "groups", "muted")? {
        conn.execute_batch("ALTER TABLE groups ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;")?;
    }
    if !has_column(conn, "messages", "annotation")? {
        conn.execute_batch(
            "ALTER TABLE messages ADD COLUMN reply_to BLOB;
             ALTER TABLE messages ADD COLUMN annotation INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE messages ADD COLUMN target BLOB;
             ALTER TABLE messages ADD COLUMN edited_at INTEGER;
             ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE messages ADD COLUMN expires_at INTEGER;
             ALTER TABLE messages ADD COLUMN reactions BLOB;
             ALTER TABLE messages ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    // After the columns exist (an older profile gets them just above).
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS messages_expiry ON messages(expires_at) WHERE expires_at IS NOT NULL;",
    )?;
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> CoreResult<bool> {
    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for n in names {
        if n? == column {
            return Ok(true);
        }
    }
    Ok(false)
}
