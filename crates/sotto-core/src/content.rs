//! What travels inside an MLS application message: a typed, versioned
//! envelope. The server never sees any of it.
//!
//! The shape follows the IETF MIMI content format (draft-ietf-mimi-content):
//! an edit or a delete `replaces` the message it changes, a reply names the
//! message it answers in `in_reply_to`, a reaction is a reply whose body is
//! a reaction, a disappearing message carries its `expires` time, and
//! receipts are a status report of their own. Fields are CBOR map keys, so
//! a version that does not know a field ignores it, and one that does not
//! know a body kind shows a placeholder.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{CoreError, CoreResult};

/// One message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Random id chosen by the sender: de-duplication and references
    /// (receipts, edits) use it.
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
    /// Sender's clock, milliseconds since the Unix epoch.
    pub sent_at: i64,
    /// The payload.
    pub body: Body,
    /// The content format's version ([`CONTENT_VERSION`]); 0 for content
    /// from versions before it was written down.
    #[serde(default)]
    pub v: u32,
    /// The message this one answers (a reply), or reacts to (a reaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<ByteBuf>,
    /// The message this one replaces: an edit (a text body) or a delete for
    /// everyone ([`Body::Delete`]). Only the sender's account may do either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<ByteBuf>,
    /// When every copy of this message is to be removed (sender's clock,
    /// milliseconds since the Unix epoch): the conversation's disappearing
    /// timer when it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

/// The content format's version this code writes (docs/protocol.md).
pub const CONTENT_VERSION: u32 = 1;

/// The kinds of content. New kinds are added as new variants; a client that
/// does not know one shows a placeholder instead of failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// A file: the blob to fetch and everything needed to decrypt and
    /// check it, with an optional caption.
    File {
        /// The file.
        file: crate::files::FileInfo,
        /// Text sent with it.
        #[serde(default)]
        caption: Option<String>,
    },
    /// Names (or renames) a group. A control message: applied, not shown.
    GroupMeta {
        /// The group's name.
        name: String,
    },
    /// The sender leaves the group; members remove its devices.
    Leave,
    /// The sender's account accepted this conversation (it was a message
    /// request): the account's other devices accept it too. A control
    /// message; other members ignore it.
    Accepted,
    /// In the account's own group: this account trusts `account_key` for
    /// `handle` (and compared safety numbers with them when `verified`).
    /// The account's other devices take the same decision.
    Trust {
        /// Whose key.
        handle: String,
        /// The key trusted.
        #[serde(with = "serde_bytes")]
        account_key: Vec<u8>,
        /// Safety numbers compared.
        verified: bool,
    },
    /// In the account's own group: this account blocked (or unblocked)
    /// `handle`.
    Block {
        /// Who.
        handle: String,
        /// Blocked now, or no longer.
        blocked: bool,
    },
    /// In the account's own group: this account muted (or unmuted) the
    /// conversation of group `group_id`; its other devices do the same.
    Mute {
        /// The conversation's group.
        group_id: ByteBuf,
        /// Muted now, or no longer.
        muted: bool,
    },
    /// In the account's own group: the history archive for a newly linked
    /// device. `file` is the archive's blob (encrypted as every file is);
    /// `secret` opens the archive itself. Only `device_id` imports it.
    History {
        /// The device it is for.
        device_id: u32,
        /// The archive's blob.
        file: crate::files::FileInfo,
        /// The archive's passphrase (random, never typed).
        secret: String,
        /// How many days back it reaches.
        days: u32,
    },
    /// A reaction to the message named in `in_reply_to` (any emoji), or
    /// its withdrawal.
    Reaction {
        /// The emoji (or any short text).
        emoji: String,
        /// The sender takes this reaction back.
        #[serde(default)]
        remove: bool,
    },
    /// Deletes for everyone the message named in `replaces`: its text and
    /// file go from every member's history; a "message deleted" line stays.
    Delete,
    /// How far this device has the conversation (`delivered`) and how far
    /// its person has read it (`read`), as the group's sequence numbers:
    /// one mark per conversation, not one receipt per message.
    Receipt {
        /// Everything up to this sequence number is on this device.
        delivered: u64,
        /// Everything up to this one was read (absent when the person
        /// turned read receipts off).
        #[serde(default)]
        read: Option<u64>,
    },
    /// Sets the conversation's disappearing-message timer (0 = off). Group
    /// state: every member applies the one with the highest sequence number,
    /// so all end with the same timer whatever order they saw them in.
    Timer {
        /// Seconds a message lives after it is sent; 0 turns it off.
        secs: u64,
    },
    /// Sets the group's description (empty clears it). Group state,
    /// ordered like the timer: the highest sequence number wins.
    Description {
        /// At most [`MAX_DESCRIPTION_BYTES`].
        text: String,
    },
    /// Sets a named group's picture (absent: removes it). Group state,
    /// ordered like the description.
    GroupPicture {
        /// PNG, JPEG, GIF or WebP, at most [`MAX_AVATAR_BYTES`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar: Option<ByteBuf>,
    },
    /// Pins (or unpins) the message named in `in_reply_to` for everyone in
    /// the conversation.
    Pin {
        /// Pinned now, or no longer.
        pinned: bool,
    },
    /// Who the admins of a named group are and whether members may add
    /// people: sent by an admin after a change (the server, which enforces
    /// roles, said yes first), and by whoever adds people, so newcomers
    /// learn them. Ordered group state: the highest sequence number wins.
    Roles {
        /// Admins' handles.
        admins: Vec<String>,
        /// Members who are not admins may add people.
        members_can_add: bool,
    },
    /// The sender's profile: the name they go by and their picture. Sent
    /// into each of their conversations (never to the server in the
    /// clear); only the sender's own profile is taken from it.
    Profile {
        /// Display name (1 to 64 characters), or empty for none.
        name: String,
        /// A small picture (PNG, JPEG, GIF or WebP; at most
        /// [`MAX_AVATAR_BYTES`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar: Option<ByteBuf>,
    },
    /// In a classical named group: the group moved to the post-quantum
    /// group `group_id` (same people, name, roles and timer; see
    /// `messenger/group_successor.rs`). Sent by an admin; from then on a
    /// message in the old group counts only from someone still in the new
    /// one (or someone the move did not know of yet).
    Moved {
        /// The successor group.
        group_id: ByteBuf,
        /// Who the successor started with.
        members: Vec<String>,
    },
    /// A kind this version does not know.
    #[serde(other)]
    Unknown,
}

/// Most bytes of a profile picture (it travels inside the MLS message).
pub const MAX_AVATAR_BYTES: usize = 256 * 1024;

/// The media type of a picture, by its first bytes; `None` for anything
/// that is not a PNG, JPEG, GIF or WebP image.
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [b'G', b'I', b'F', b'8', ..] => Some("image/gif"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("image/webp"),
        _ => None,
    }
}

/// Most bytes of a group description.
pub const MAX_DESCRIPTION_BYTES: usize = 2048;

impl Body {
    /// The kind's name, as `receive --json` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Text { .. } => "text",
            Body::File { .. } => "file",
            Body::GroupMeta { .. } => "group_meta",
            Body::Leave => "leave",
            Body::Accepted => "accepted",
            Body::Trust { .. } => "trust",
            Body::Block { .. } => "block",
            Body::Mute { .. } => "mute",
            Body::History { .. } => "history",
            Body::Reaction { .. } => "reaction",
            Body::Delete => "delete",
            Body::Receipt { .. } => "receipt",
            Body::Timer { .. } => "timer",
            Body::Description { .. } => "description",
            Body::GroupPicture { .. } => "group_picture",
            Body::Pin { .. } => "pin",
            Body::Profile { .. } => "profile",
            Body::Roles { .. } => "roles",
            Body::Moved { .. } => "moved",
            Body::Unknown => "unknown",
        }
    }

    /// Control messages change the conversation instead of being shown.
    pub fn is_control(&self) -> bool {
        matches!(
            self,
            Body::GroupMeta { .. }
                | Body::Leave
                | Body::Accepted
                | Body::Trust { .. }
                | Body::Block { .. }
                | Body::Mute { .. }
                | Body::History { .. }
                | Body::Timer { .. }
                | Body::Description { .. }
                | Body::GroupPicture { .. }
                | Body::Pin { .. }
                | Body::Profile { .. }
                | Body::Roles { .. }
                | Body::Moved { .. }
        )
    }

    /// Kinds that change another message or the conversation's marks
    /// (reactions, receipts) instead of being a message of their own; an
    /// edit is a text that `replaces` another, see [`Content::is_annotation`].
    pub fn is_annotation(&self) -> bool {
        matches!(self, Body::Reaction { .. } | Body::Delete | Body::Receipt { .. })
    }
}

/// Most bytes of text in one message.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Most bytes of one reaction (an emoji with modifiers and joiners fits).
pub const MAX_REACTION_BYTES: usize = 64;

impl Content {
    /// A new text message with a fresh id.
    pub fn text(id: [u8; 16], text: &str, now_ms: i64) -> CoreResult<Self> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(CoreError::Invalid(format!("a message may hold at most {MAX_TEXT_BYTES} bytes of text")));
        }
        Ok(Self::new(id, now_ms, Body::Text { text: text.to_owned() }))
    }

    /// New content of this version with a fresh id and nothing it refers to.
    pub fn new(id: [u8; 16], now_ms: i64, body: Body) -> Self {
        Self {
            id: id.to_vec(),
            sent_at: now_ms,
            body,
            v: CONTENT_VERSION,
            in_reply_to: None,
            replaces: None,
            expires: None,
        }
    }

    /// Changes another message (an edit, a delete, a reaction, a receipt)
    /// rather than being one.
    pub fn is_annotation(&self) -> bool {
        self.body.is_annotation() || (self.replaces.is_some() && matches!(self.body, Body::Text { .. }))
    }

    /// The message an annotation acts on: the one a reaction answers, or
    /// the one an edit or delete replaces.
    pub fn target(&self) -> Option<&[u8]> {
        match self.body {
            Body::Reaction { .. } => self.in_reply_to.as_deref().map(|b| b.as_slice()),
            _ => self.replaces.as_deref().map(|b| b.as_slice()),
        }
    }

    /// CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("content always encodes");
        out
    }

    /// Decodes content from a peer; refuses anything malformed.
    pub fn decode(bytes: &[u8]) -> CoreResult<Self> {
        let mut c: Content = ciborium::from_reader(bytes).map_err(|e| CoreError::decode("message content", e))?;
        if c.id.is_empty() || c.id.len() > 32 {
            return Err(CoreError::decode("message content", "bad message id"));
        }
        let bad_ref = |r: &Option<ByteBuf>| r.as_ref().is_some_and(|r| r.is_empty() || r.len() > 32);
        if bad_ref(&c.in_reply_to) || bad_ref(&c.replaces) {
            return Err(CoreError::decode("message content", "bad reference to another message"));
        }
        match &c.body {
            Body::Reaction { emoji, .. } if emoji.is_empty() || emoji.len() > MAX_REACTION_BYTES => {
                return Err(CoreError::decode("message content", "bad reaction"));
            }
            Body::Reaction { .. } if c.in_reply_to.is_none() => {
                return Err(CoreError::decode("message content", "a reaction to no message"));
            }
            Body::Pin { .. } if c.in_reply_to.is_none() => {
                return Err(CoreError::decode("message content", "a pin of no message"));
            }
            Body::GroupPicture { avatar: Some(a) } if a.len() > MAX_AVATAR_BYTES || image_type(a).is_none() => {
                return Err(CoreError::decode("message content", "a bad group picture"));
            }
            Body::Description { text } if text.len() > MAX_DESCRIPTION_BYTES => {
                return Err(CoreError::decode("message content", "a description too long"));
            }
            Body::Profile { name, avatar } => {
                if name.chars().count() > 64 || name.chars().any(char::is_control) {
                    return Err(CoreError::decode("message content", "a bad display name"));
                }
                if avatar.as_ref().is_some_and(|a| a.len() > MAX_AVATAR_BYTES || image_type(a).is_none()) {
                    return Err(CoreError::decode("message content", "a bad profile picture"));
                }
            }
            Body::Delete if c.replaces.is_none() => {
                return Err(CoreError::decode("message content", "a delete of no message"));
            }
            _ => {}
        }
        // A preview this client would not show is dropped; the file stays.
        if let Body::File { file, .. } = &mut c.body {
            if file.padded.is_some_and(|p| p < file.size || p > crate::padding::file_bucket(file.size)) {
                return Err(CoreError::decode("message content", "a file padded beyond its bucket"));
            }
            if file.thumbnail.as_ref().is_some_and(|t| !t.is_acceptable()) {
                file.thumbnail = None;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_preview_from_a_peer_is_dropped_and_the_file_kept() {
        let file = crate::files::FileInfo {
            blob_id: vec![1; 16],
            key: vec![2; 32],
            nonce: vec![3; 19],
            size: 10,
            name: "x.png".into(),
            media_type: "image/png".into(),
            sha256: vec![4; 32],
            thumbnail: Some(crate::thumbnail::Thumbnail {
                jpeg: b"<svg onload=alert(1)>".to_vec(),
                width: 10,
                height: 10,
            }),
            padded: None,
        };
        let c = Content::new([1; 16], 5, Body::File { file, caption: None });
        let back = Content::decode(&c.encode()).unwrap();
        let Body::File { file, .. } = back.body else { panic!("the file is kept") };
        assert_eq!(file.thumbnail, None);
        assert_eq!(file.name, "x.png");
    }

    #[test]
    fn a_file_padded_beyond_its_bucket_is_refused() {
        let file = |size: u64, padded: Option<u64>| crate::files::FileInfo {
            blob_id: vec![1; 16],
            key: vec![2; 32],
            nonce: vec![3; 19],
            size,
            name: "x.bin".into(),
            media_type: "application/octet-stream".into(),
            sha256: vec![4; 32],
            thumbnail: None,
            padded,
        };
        let decode = |f| Content::decode(&Content::new([1; 16], 5, Body::File { file: f, caption: None }).encode());
        assert!(decode(file(5000, Some(crate::padding::file_bucket(5000)))).is_ok());
        assert!(decode(file(5000, None)).is_ok());
        assert!(decode(file(5000, Some(4999))).is_err(), "less than the file");
        assert!(decode(file(5000, Some(1 << 40))).is_err(), "a terabyte of zeros to download");
    }

    #[test]
    fn round_trip_and_unknown_kinds() {
        let c = Content::text([1; 16], "hello", 5).unwrap();
        assert_eq!(Content::decode(&c.encode()).unwrap(), c);
        // A future kind decodes as Unknown rather than failing.
        #[derive(Serialize)]
        struct Future {
            #[serde(with = "serde_bytes")]
            id: Vec<u8>,
            sent_at: i64,
            body: FutureBody,
        }
        #[derive(Serialize)]
        #[serde(tag = "kind")]
        enum FutureBody {
            #[serde(rename = "poll")]
            Poll { question: String },
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(
            &Future { id: vec![1; 16], sent_at: 1, body: FutureBody::Poll { question: "?".into() } },
            &mut bytes,
        )
        .unwrap();
        assert_eq!(Content::decode(&bytes).unwrap().body, Body::Unknown);
        // Content from before the version field (no `v`, no references)
        // still reads, as version 0.
        #[derive(Serialize)]
        struct Old {
            #[serde(with = "serde_bytes")]
            id: Vec<u8>,
            sent_at: i64,
            body: Body,
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&Old { id: vec![2; 16], sent_at: 3, body: Body::Text { text: "hi".into() } }, &mut bytes)
            .unwrap();
        let old = Content::decode(&bytes).unwrap();
        assert_eq!((old.v, old.in_reply_to, old.replaces), (0, None, None));
        assert!(Content::decode(b"garbage").is_err());
        assert!(Content::text([1; 16], &"x".repeat(MAX_TEXT_BYTES + 1), 0).is_err());
    }

    #[test]
    fn references_are_checked_and_annotations_are_told_apart() {
        let mut reaction = Content::new([1; 16], 0, Body::Reaction { emoji: "👍".into(), remove: false });
        assert!(Content::decode(&reaction.encode()).is_err(), "a reaction must name its message");
        reaction.in_reply_to = Some(ByteBuf::from(vec![9; 16]));
        let back = Content::decode(&reaction.encode()).unwrap();
        assert_eq!(back.target(), Some(&[9u8; 16][..]));
        assert!(back.is_annotation());
        let mut edit = Content::text([2; 16], "fixed", 0).unwrap();
        assert!(!edit.is_annotation());
        edit.replaces = Some(ByteBuf::from(vec![9; 16]));
        assert!(edit.is_annotation());
        let mut reply = Content::text([3; 16], "yes", 0).unwrap();
        reply.in_reply_to = Some(ByteBuf::from(vec![9; 16]));
        assert!(!reply.is_annotation() && reply.target().is_none());
        reply.in_reply_to = Some(ByteBuf::from(vec![]));
        assert!(Content::decode(&reply.encode()).is_err());
        assert!(Content::decode(&Content::new([4; 16], 0, Body::Delete).encode()).is_err());
        let long = Content {
            in_reply_to: Some(ByteBuf::from(vec![9; 16])),
            ..Content::new([5; 16], 0, Body::Reaction { emoji: "x".repeat(MAX_REACTION_BYTES + 1), remove: false })
        };
        assert!(Content::decode(&long.encode()).is_err());
    }
}
