//! The store's delivery rules checked against a simple model: random
//! sequences of appends (some stale, some by outsiders), acknowledgements
//! and fetches by three devices, compared step by step.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sotto_proto::{DeviceInfo, DeviceRef, MessageKind};
use sotto_server::store::{Accounts, GroupLog, NewMessage, OperatorViews, SqliteStore, StoreError};

#[derive(Debug, Clone)]
enum Op {
    Append { who: usize, stale: bool, commit: bool },
    Ack { who: usize, seq: u64 },
    Fetch { who: usize, after: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, any::<bool>(), prop::bool::weighted(0.15)).prop_map(|(who, stale, commit)| Op::Append {
            who,
            stale,
            commit
        }),
        (0..3usize, 0..40u64).prop_map(|(who, seq)| Op::Ack { who, seq }),
        (0..3usize, 0..40u64).prop_map(|(who, after)| Op::Fetch { who, after }),
    ]
}

/// What the rules say: members 0 and 1 are in the group; 2 is not.
#[derive(Default)]
struct Model {
    epoch: u64,
    last_seq: u64,
    log: BTreeMap<u64, ()>,
    cursors: [u64; 2],
}

impl Model {
    fn collect(&mut self) {
        let min = self.cursors.iter().copied().min().unwrap_or(0);
        self.log.retain(|seq, _| *seq > min);
    }
}

fn dev(i: usize) -> DeviceRef {
    DeviceRef { handle: format!("u{i}"), device_id: 1 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn store_follows_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let s = SqliteStore::open_in_memory().unwrap();
        for i in 0..3 {
            let info = DeviceInfo { device_id: 1, device_key: vec![i as u8; 32], certificate: vec![0; 64] };
            s.register(&format!("u{i}"), &[i as u8; 32], &info, None, false, 0).unwrap();
        }
        let g: &[u8] = b"model-group-0001";
        s.create_group(g, &dev(0), 0).unwrap();
        let added = [dev(1)];
        s.append(&NewMessage { group_id: g, sender: &dev(0), epoch: 0, kind: MessageKind::Commit, client_id: b"add",
            payload: b"c", added: &added, removed: &[], welcome: Some(b"w") }, 0).unwrap();
        let mut m = Model { epoch: 1, last_seq: 1, ..Default::default() };
        m.log.insert(1, ());
        m.cursors = [0, 1];
        let mut n = 0u32;
        for op in ops {
            n += 1;
            match op {
                Op::Append { who, stale, commit } => {
                    let sender = dev(who);
                    let epoch = if stale { m.epoch.wrapping_sub(1) } else { m.epoch };
                    let kind = if commit { MessageKind::Commit } else { MessageKind::Application };
                    let cid = n.to_le_bytes();
                    let r = s.append(&NewMessage { group_id: g, sender: &sender, epoch, kind, client_id: &cid,
                        payload: b"p", added: &[], removed: &[], welcome: None }, 0);
                    if who == 2 {
                        prop_assert_eq!(r, Err(StoreError::NotMember));
                    } else if stale {
                        prop_assert_eq!(r, Err(StoreError::StaleEpoch { current: m.epoch }));
                    } else {
                        let a = r.unwrap();
                        m.last_seq += 1;
                        if commit { m.epoch += 1; }
                        m.log.insert(m.last_seq, ());
                        prop_assert_eq!((a.seq, a.epoch), (m.last_seq, m.epoch));
                    }
                }
                Op::Ack { who, seq } => {
                    let r = s.ack(g, &dev(who), seq);
                    if who == 2 {
                        prop_assert_eq!(r, Err(StoreError::NotMember));
                    } else {
                        r.unwrap();
                        m.cursors[who] = m.cursors[who].max(seq.min(m.last_seq));
                        m.collect();
                    }
                }
                Op::Fetch { who, after } => {
                    let r = s.fetch(g, &dev(who), after, 500);
                    if who == 2 {
                        prop_assert_eq!(r, Err(StoreError::NotMember));
                    } else {
                        // Member 1 joined after seq 1 and never sees it.
                        let from = if who == 1 { after.max(1) } else { after };
                        let want: Vec<u64> = m.log.keys().copied().filter(|s| *s > from).collect();
                        let got: Vec<u64> = r.unwrap().iter().map(|d| d.seq).collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
        }
        prop_assert_eq!(s.stats().unwrap().messages as usize, m.log.len());
    }
}
