//! Delivery and read receipts: one "delivered up to, read up to" mark per
//! member device and conversation (the group's sequence numbers), not one
//! receipt per message. A device tells the others after each batch that
//! brought someone else's messages; reading tells them again unless the
//! person turned read receipts off.

#[allow(unused_imports)]
use super::*;

use std::collections::HashMap;

const READ_RECEIPTS: &str = "read_receipts";

/// What one group's receipts say, read once per history listing.
pub(crate) struct ReceiptView {
    /// Other people's devices in the group now.
    devices: Vec<(String, u32)>,
    /// (handle, device, delivered, read).
    marks: Vec<(String, u32, u64, u64)>,
}

impl ReceiptView {
    /// How far an own message at `seq` got.
    pub(crate) fn of(&self, seq: u64) -> Receipt {
        let delivered = !self.devices.is_empty()
            && self.devices.iter().all(|(h, d)| {
                self.marks.iter().any(|(mh, md, del, read)| mh == h && md == d && (*del).max(*read) >= seq)
            });
        let mut read_by: Vec<String> = self
            .marks
            .iter()
            .filter(|(h, _, _, read)| *read >= seq && self.devices.iter().any(|(dh, _)| dh == h))
            .map(|(h, ..)| h.clone())
            .collect();
        read_by.sort();
        read_by.dedup();
        // Read on some device means it arrived there; a reader's other
        // devices may be offline, but the person has it.
        Receipt { delivered: delivered || (!read_by.is_empty() && self.everyone_read(&read_by)), read_by }
    }

    fn everyone_read(&self, read_by: &[String]) -> bool {
        self.devices.iter().all(|(h, _)| read_by.contains(h))
    }
}

impl Messenger {
    /// Whether this person sends read receipts (on until turned off).
    pub fn read_receipts(&self) -> CoreResult<bool> {
        Ok(self.setting(READ_RECEIPTS)?.as_deref() != Some(&[0][..]))
    }

    /// Turns sending read receipts on or off. Delivery receipts always go
    /// (they say only that a device has the messages).
    pub fn set_read_receipts(&self, on: bool) -> CoreResult<()> {
        self.set_setting(READ_RECEIPTS, &[on as u8])
    }

    pub(crate) fn receipt_view(
        &self,
        group_id: &[u8],
        cache: &mut HashMap<Vec<u8>, Option<ReceiptView>>,
    ) -> CoreResult<()> {
        if cache.contains_key(group_id) {
            return Ok(());
        }
        let view = match self.load_group(group_id) {
            Ok(group) => {
                let devices = Self::member_handles(&group)
                    .into_iter()
                    .filter(|(_, c)| c.handle != self.identity.handle)
                    .map(|(_, c)| (c.handle, c.device_id))
                    .collect();
                let mut stmt =
                    self.conn.prepare("SELECT handle, device_id, delivered, read FROM receipts WHERE group_id=?")?;
                let marks = stmt
                    .query_map([group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<_, _>>()?;
                Some(ReceiptView { devices, marks })
            }
            Err(_) => None,
        };
        cache.insert(group_id.to_vec(), view);
        Ok(())
    }

    /// After a batch of deliveries: in each group where someone else's
    /// messages arrived that this device has not told the others about,
    /// a receipt is queued (it goes out with the outbox).
    pub(crate) fn queue_receipts<'a>(&self, group_ids: impl IntoIterator<Item = &'a [u8]>) -> CoreResult<usize> {
        let mut queued = 0;
        let mut seen = std::collections::HashSet::new();
        for group_id in group_ids {
            if !seen.insert(group_id.to_vec()) || self.group_kind(group_id) == GroupKind::Own {
                continue;
            }
            type Row = (String, u64, u64, u64, u64, bool, Option<String>, bool);
            let row: Option<Row> = self
                .conn
                .row(
                    "SELECT conversation, cursor, told_delivered, read_seq, told_read, active, request_from, broken FROM groups WHERE group_id=?",
                    [group_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
                )
                .optional()?;
            let Some((conversation, cursor, told, read_seq, told_read, active, request_from, broken)) = row else {
                continue;
            };
            // Nothing goes into a message request (the sender would learn
            // it arrived) or a group this device cannot write to.
            if !active || broken || request_from.is_some() || cursor <= told {
                continue;
            }
            let news: Option<i64> = self
                .conn
                .row(
                    "SELECT 1 FROM messages WHERE group_id=? AND seq>? AND outgoing=0 AND state='received' AND annotation=0 LIMIT 1",
                    params![group_id, told],
                    |r| r.get(0),
                )
                .optional()?;
            if news.is_none() {
                // Only this account's own entries, receipts or changes
                // came: nothing to tell, and nothing to look at again.
                self.conn.exec("UPDATE groups SET told_delivered=? WHERE group_id=?", params![cursor, group_id])?;
                continue;
            }
            let read = (self.read_receipts()? && read_seq > told_read).then_some(read_seq);
            queued += self.queue_receipt(group_id, &conversation, cursor, read)?;
        }
        Ok(queued)
    }

    /// Receipts for what arrived live: at most one per conversation every
    /// `every_ms` (a busy conversation costs one receipt per few seconds,
    /// not one per message). Returns how many were queued; the outbox
    /// sends them.
    pub fn queue_due_receipts(&self, every_ms: i64) -> CoreResult<usize> {
        let due: Vec<Vec<u8>> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT group_id FROM groups WHERE cursor > told_delivered AND active=1 AND broken=0
                 AND request_from IS NULL AND receipt_at <= ?",
            )?;
            let rows = stmt.query_map([self.now() - every_ms], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if due.is_empty() {
            return Ok(0);
        }
        self.tx(|me| me.queue_receipts(due.iter().map(Vec::as_slice)))
    }

    /// This person read `conversation` up to its newest message: the
    /// others are told (unless read receipts are off), and so are this
    /// account's other devices, which are members too.
    pub fn mark_read(&self, conversation: &str) -> CoreResult<usize> {
        let groups: Vec<(Vec<u8>, u64, u64, u64)> = {
            let mut stmt = self.conn.prepare(
                "SELECT group_id, cursor, read_seq, told_read FROM groups WHERE conversation=? AND active=1 AND broken=0 AND request_from IS NULL",
            )?;
            let rows = stmt.query_map([conversation], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        if groups.is_empty() {
            return Err(CoreError::NotFound(format!("no conversation {conversation}")));
        }
        let mut queued = 0;
        self.tx(|me| {
            for (group_id, cursor, read_seq, told_read) in &groups {
                let newest: Option<u64> = me.conn.row(
                    "SELECT max(seq) FROM messages WHERE group_id=? AND annotation=0 AND outgoing=0",
                    [group_id],
                    |r| r.get(0),
                )?;
                let newest = newest.unwrap_or(0).max(*read_seq);
                me.conn.exec("UPDATE groups SET read_seq=? WHERE group_id=?", params![newest, group_id])?;
                if newest > *told_read && me.read_receipts()? {
                    queued += me.queue_receipt(group_id, conversation, *cursor, Some(newest))?;
                }
            }
            Ok(())
        })?;
        Ok(queued)
    }

    fn queue_receipt(
        &self,
        group_id: &[u8],
        conversation: &str,
        delivered: u64,
        read: Option<u64>,
    ) -> CoreResult<usize> {
        if let Some(handle) = conversation.strip_prefix('@') {
            // A held key change: nothing goes out, receipts included.
            let changed: Option<bool> =
                self.conn.row("SELECT key_changed FROM contacts WHERE handle=?", [handle], |r| r.get(0)).optional()?;
            if changed == Some(true) || self.is_blocked(handle)? {
                return Ok(0);
            }
        }
        let content = Content::new(self.new_id(), self.now(), Body::Receipt { delivered, read });
        match self.queue_in_group(group_id, conversation, &content) {
            Ok(_) => {}
            // Nobody else to tell (the peer left): nothing to do.
            Err(CoreError::NobodyElse) | Err(CoreError::NotAMember) => return Ok(0),
            Err(e) => return Err(e),
        }
        self.conn.exec(
            "UPDATE groups SET told_delivered=max(told_delivered, ?), told_read=max(told_read, ?), receipt_at=? WHERE group_id=?",
            params![delivered, read.unwrap_or(0), self.now(), group_id],
        )?;
        Ok(1)
    }

    /// A receipt from a member device: its marks move forward (never
    /// back). Returns this person's messages whose marks changed.
    pub(crate) fn apply_receipt(
        &self,
        group_id: &[u8],
        author: &annotations::Author<'_>,
        delivered: u64,
        read: Option<u64>,
    ) -> CoreResult<Vec<Event>> {
        let read = read.unwrap_or(0);
        let before: Option<(u64, u64)> = self
            .conn
            .row(
                "SELECT delivered, read FROM receipts WHERE group_id=? AND handle=? AND device_id=?",
                params![group_id, author.handle, author.device_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (old_delivered, old_read) = before.unwrap_or((0, 0));
        self.conn.exec(
            "INSERT INTO receipts(group_id, handle, device_id, delivered, read) VALUES(?,?,?,?,?)
             ON CONFLICT(group_id, handle, device_id) DO UPDATE SET delivered=max(delivered, excluded.delivered), read=max(read, excluded.read)",
            params![group_id, author.handle, author.device_id, delivered, read],
        )?;
        if author.handle == self.identity.handle {
            // Another device of this person read it: so did they.
            self.conn.exec("UPDATE groups SET read_seq=max(read_seq, ?) WHERE group_id=?", params![read, group_id])?;
            return Ok(vec![]);
        }
        let low = old_delivered.min(old_read);
        let high = delivered.max(read);
        if high <= low {
            return Ok(vec![]);
        }
        let ids: Vec<Vec<u8>> = {
            let mut stmt = self.conn.prepare(
                "SELECT id FROM messages WHERE group_id=? AND outgoing=1 AND annotation=0 AND seq>? AND seq<=? ORDER BY seq DESC LIMIT 200",
            )?;
            let rows = stmt.query_map(params![group_id, low, high], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut events = Vec::new();
        for id in ids.iter().rev() {
            if let Some(m) = self.message(id)? {
                events.push(Event::Message(Box::new(m)));
            }
        }
        Ok(events)
    }
}
