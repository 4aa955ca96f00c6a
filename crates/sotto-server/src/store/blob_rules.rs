//! The rules both stores apply when an upload begins: one place for what a
//! person is told when a file is refused.

use sotto_proto::DeviceRef;

use super::{BlobRecord, StoreError, StoreResult};

/// An upload of `id` begun again: the same owner and size resume it;
/// someone else's is answered like an unknown id (the endpoints say 404
/// for both), so ids cannot be probed.
pub(crate) fn resume(existing: BlobRecord, owner: &DeviceRef, size: u64) -> StoreResult<BlobRecord> {
    if &existing.owner != owner {
        return Err(StoreError::UnknownBlob);
    }
    if existing.size != size {
        return Err(StoreError::Invalid("this upload was begun with another size".into()));
    }
    Ok(existing)
}

/// A new upload of `size` bytes fits the server's largest file.
pub(crate) fn size_allowed(size: u64, max_size: u64) -> StoreResult<()> {
    if size > max_size {
        return Err(StoreError::LimitExceeded(format!(
            "the file is {size} bytes; this server takes at most {max_size}"
        )));
    }
    Ok(())
}

/// ... and the owner's quota, with `used` bytes already waiting.
pub(crate) fn quota_allows(used: u64, size: u64, quota: u64) -> StoreResult<()> {
    if used.saturating_add(size) > quota {
        return Err(StoreError::LimitExceeded(format!(
            "your storage quota ({quota} bytes) is used up until recipients fetch your files"
        )));
    }
    Ok(())
}
