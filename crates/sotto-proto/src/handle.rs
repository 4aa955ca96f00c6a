//! Handles: the names people are known by on one server.

/// Checks a handle: 1 to 32 characters from lower-case ASCII letters, digits,
/// `_`, `-` and `.`. Returns a sentence a person can act on when it fails.
pub fn validate_handle(handle: &str) -> Result<(), String> {
    if handle.is_empty() || handle.len() > 32 {
        return Err(format!("handle must be 1 to 32 characters long (got {})", handle.chars().count()));
    }
    if let Some(bad) =
        handle.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!("handle may contain only lower-case letters, digits, '_', '-' and '.' (found {bad:?})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "alice", "bob_2", "x.y-z", &"a".repeat(32)] {
            assert!(validate_handle(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alice", "a b", "ä", "a/b", "@bob", &"a".repeat(33)] {
            assert!(validate_handle(bad).is_err(), "{bad}");
        }
    }
}
