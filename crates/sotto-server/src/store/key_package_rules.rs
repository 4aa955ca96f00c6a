//! Which suite each device's claimed KeyPackage is for: the same rule for
//! both stores, kept apart from their SQL.
//!
//! Everyone in an MLS group uses one suite, so a claim first looks for a
//! suite that every device being claimed has a package for (one-time or
//! last-resort), in the claimer's order of preference. Only when there is
//! none does each device get its own best: the claimer then sees mixed
//! suites and claims again for the one it can use.

/// For each device (by the suites it holds packages for), the suite to take
/// its package from; `None` for a device with nothing the claimer can use.
pub fn choose_suites(preference: &[u16], held: &[Vec<u16>]) -> Vec<Option<u16>> {
    let usable: Vec<&Vec<u16>> = held.iter().filter(|h| h.iter().any(|s| preference.contains(s))).collect();
    let common = preference.iter().copied().find(|s| usable.iter().all(|h| h.contains(s)));
    held.iter()
        .map(|h| match common {
            Some(s) if h.contains(&s) => Some(s),
            _ => preference.iter().copied().find(|s| h.contains(s)),
        })
        .collect()
}

/// Refuses an upload that would take a suite's one-time stock past the
/// cap; `have` is `(suite, one-time count)` per suite held.
pub fn check_stock(have: &[(u16, u32)], packages: &[(u16, Vec<u8>)]) -> Result<(), super::StoreError> {
    let cap = sotto_proto::limits::MAX_KEY_PACKAGES_STOCK;
    for (suite, _) in packages {
        let held = have.iter().find(|(s, _)| s == suite).map_or(0, |&(_, n)| n as usize);
        let adding = packages.iter().filter(|(s, _)| s == suite).count();
        if held + adding > cap {
            return Err(super::StoreError::LimitExceeded(format!(
                "a device may keep at most {cap} key packages of each suite"
            )));
        }
    }
    Ok(())
}

/// The one-time stock a device reports: the smallest among the suites it
/// keeps packages for, so the device refills before any suite runs dry.
/// `(suite, one-time count)` per suite held.
pub fn stock(per_suite: &[(u16, u32)]) -> u32 {
    per_suite.iter().map(|&(_, n)| n).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_proto::suites::{SUITE_CLASSICAL as C, SUITE_XWING as X};

    #[test]
    fn a_suite_every_device_has_wins_in_the_claimers_order() {
        assert_eq!(choose_suites(&[X, C], &[vec![C, X], vec![X, C]]), vec![Some(X), Some(X)]);
        assert_eq!(choose_suites(&[C, X], &[vec![C, X], vec![X, C]]), vec![Some(C), Some(C)]);
    }

    #[test]
    fn one_device_without_the_new_suite_takes_everyone_to_the_old_one() {
        assert_eq!(choose_suites(&[X, C], &[vec![X, C], vec![C]]), vec![Some(C), Some(C)]);
    }

    #[test]
    fn without_a_common_suite_each_device_gets_its_best() {
        assert_eq!(choose_suites(&[X, C], &[vec![X], vec![C]]), vec![Some(X), Some(C)]);
    }

    #[test]
    fn devices_with_nothing_usable_are_left_out_and_do_not_block_the_rest() {
        assert_eq!(choose_suites(&[X], &[vec![X], vec![C], vec![]]), vec![Some(X), None, None]);
        assert_eq!(choose_suites(&[C], &[vec![X]]), vec![None]);
    }

    #[test]
    fn the_cap_holds_per_suite() {
        let cap = sotto_proto::limits::MAX_KEY_PACKAGES_STOCK as u32;
        let one = |s: u16| vec![(s, vec![0u8])];
        assert!(check_stock(&[(X, cap - 1), (C, cap)], &one(X)).is_ok());
        assert!(check_stock(&[(X, cap - 1), (C, cap)], &one(C)).is_err(), "the classical stock is full");
        assert!(check_stock(&[(X, cap - 1)], &[(X, vec![1]), (X, vec![2])]).is_err());
        assert!(check_stock(&[], &one(X)).is_ok());
    }

    #[test]
    fn the_stock_is_the_scarcest_suite() {
        assert_eq!(stock(&[(X, 40), (C, 3)]), 3);
        assert_eq!(stock(&[(C, 12)]), 12);
        assert_eq!(stock(&[]), 0);
    }
}
