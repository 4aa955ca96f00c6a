//! What travels inside an MLS application message: a typed, versioned
//! envelope. The server never sees any of it.

use serde::{Deserialize, Serialize};

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
}

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
    /// A kind this version does not know.
    #[serde(other)]
    Unknown,
}

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
            Body::History { .. } => "history",
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
                | Body::History { .. }
        )
    }
}

/// Most bytes of text in one message.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

impl Content {
    /// A new text message with a fresh id.
    pub fn text(id: [u8; 16], text: &str, now_ms: i64) -> CoreResult<Self> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(CoreError::Invalid(format!("a message may hold at most {MAX_TEXT_BYTES} bytes of text")));
        }
        Ok(Self { id: id.to_vec(), sent_at: now_ms, body: Body::Text { text: text.to_owned() } })
    }

    /// CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("content always encodes");
        out
    }

    /// Decodes content from a peer; refuses anything malformed.
    pub fn decode(bytes: &[u8]) -> CoreResult<Self> {
        let c: Content = ciborium::from_reader(bytes).map_err(|e| CoreError::decode("message content", e))?;
        if c.id.is_empty() || c.id.len() > 32 {
            return Err(CoreError::decode("message content", "bad message id"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(Content::decode(b"garbage").is_err());
        assert!(Content::text([1; 16], &"x".repeat(MAX_TEXT_BYTES + 1), 0).is_err());
    }
}
