//! What a front end remembers for this person on this device: drafts per
//! conversation, the notification switch, recent emoji. Kept in the
//! encrypted profile (a draft is as private as a message), never in the
//! browser's storage, and not shared with the account's other devices.

#[allow(unused_imports)]
use super::*;
use std::collections::BTreeMap;

/// Most bytes of a preference's name.
pub const MAX_PREFERENCE_KEY_BYTES: usize = 200;
/// Most bytes of a preference's value (a long draft fits).
pub const MAX_PREFERENCE_BYTES: usize = 64 * 1024;
/// Most preferences kept (old drafts of conversations gone are many).
pub const MAX_PREFERENCES: usize = 1000;

const PREFIX: &str = "ui.";

impl Messenger {
    /// Every front-end preference, by name.
    pub fn preferences(&self) -> CoreResult<BTreeMap<String, String>> {
        let mut stmt = self.conn.prepare("SELECT k, v FROM settings WHERE k >= 'ui.' AND k < 'ui/'")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (k, v) = row?;
            if let (Some(name), Ok(value)) = (k.strip_prefix(PREFIX), String::from_utf8(v)) {
                out.insert(name.to_owned(), value);
            }
        }
        Ok(out)
    }

    /// Sets a preference; an empty value removes it.
    pub fn set_preference(&self, name: &str, value: &str) -> CoreResult<()> {
        if name.is_empty() || name.len() > MAX_PREFERENCE_KEY_BYTES || name.chars().any(char::is_control) {
            return Err(CoreError::Invalid(format!(
                "a preference's name has 1 to {MAX_PREFERENCE_KEY_BYTES} bytes and no control characters"
            )));
        }
        if value.len() > MAX_PREFERENCE_BYTES {
            return Err(CoreError::Invalid(format!("a preference holds at most {} KiB", MAX_PREFERENCE_BYTES / 1024)));
        }
        let key = format!("{PREFIX}{name}");
        if value.is_empty() {
            self.conn.exec("DELETE FROM settings WHERE k=?", [key])?;
            return Ok(());
        }
        let count: i64 =
            self.conn.row("SELECT count(*) FROM settings WHERE k >= 'ui.' AND k < 'ui/'", [], |r| r.get(0))?;
        let exists = self.setting(&key)?.is_some();
        if !exists && count as usize >= MAX_PREFERENCES {
            return Err(CoreError::Invalid(format!("at most {MAX_PREFERENCES} preferences are kept")));
        }
        self.set_setting(&key, value.as_bytes())
    }
}
