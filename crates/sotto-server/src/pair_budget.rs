//! Hourly budgets for what one account may do to another, per (actor,
//! target) and per actor in all. Two uses:
//! - claiming someone's KeyPackages: one-time packages give a new
//!   conversation's first messages forward secrecy, and anyone who could
//!   claim them in a loop could use up a person's stock;
//! - adding someone to a group: each add puts a welcome in their inbox,
//!   and a stranger could otherwise fill it with garbage welcomes.
//!
//! A person starting conversations needs one of each per contact, so a
//! small budget per pair and a larger one per actor cost people nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the budgets are counted in.
const WINDOW: Duration = Duration::from_secs(3600);

/// Entries kept before expired ones are swept (bounds memory under a flood
/// of distinct pairs).
const SWEEP_AT: usize = 100_000;

/// A actor, with a target for the per-target budget or none for the
/// actor's total.
type Key = (String, Option<String>);

/// When a window began and how many claims it has counted.
type Window = (Instant, u32);

/// Counts claims per actor and per (actor, target) in hourly windows.
pub struct PairBudget {
    per_target: u32,
    per_actor: u32,
    counts: Mutex<HashMap<Key, Window>>,
}

impl PairBudget {
    /// At most `per_target` claims of one account's packages by one
    /// actor, and `per_actor` claims in all, per hour.
    pub fn new(per_target: u32, per_actor: u32) -> Self {
        Self { per_target, per_actor, counts: Mutex::default() }
    }

    /// Counts a claim of `target`'s packages by `actor`; false when a
    /// budget is used up (nothing is counted then).
    pub fn allow(&self, actor: &str, target: &str, now: Instant) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > SWEEP_AT {
            counts.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let keys = [(actor.to_owned(), Some(target.to_owned())), (actor.to_owned(), None)];
        let limits = [self.per_target, self.per_actor];
        for (key, limit) in keys.iter().zip(limits) {
            if let Some((start, n)) = counts.get(key) {
                if now.duration_since(*start) < WINDOW && *n >= limit {
                    return false;
                }
            }
        }
        for key in keys {
            let entry = counts.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_actor_gets_a_few_claims_per_target_and_more_in_all_per_hour() {
        let l = PairBudget::new(3, 5);
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow("mallory", "bob", t0)));
        assert!(!l.allow("mallory", "bob", t0), "bob's stock is not drained by one actor");
        assert!(l.allow("alice", "bob", t0), "others still reach bob");
        assert!(l.allow("mallory", "carol", t0));
        assert!(l.allow("mallory", "dave", t0));
        assert!(!l.allow("mallory", "erin", t0), "and one actor not everyone's");
        assert!(l.allow("mallory", "bob", t0 + WINDOW), "a new hour, a new budget");
    }
}
