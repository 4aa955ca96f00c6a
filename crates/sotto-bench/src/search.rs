//! `search`: searching a history of many messages in a real SQLCipher
//! profile, in the process (`Messenger::search`) and end to end through the
//! `sotto search` command (a new process opening the profile each time).
//!
//! The history is made the real way: messages encrypted by one person and
//! processed by the other in batches, as a sync does, so the index is
//! built by the same triggers as in use.

use std::time::Instant;

use anyhow::{Context, Result};
use sotto_core::{Messenger, ProfileKey};

use crate::mls::invitee;

pub struct SearchResult {
    pub messages: u64,
    pub fill_secs: f64,
    /// (query, hits, median ms in the process, median ms through the CLI).
    pub queries: Vec<(String, usize, f64, Option<f64>)>,
}

/// A made-up vocabulary: pronounceable words, the first ones far more
/// common than the rest (as in real text).
fn word(i: usize) -> String {
    const SYL: [&str; 16] =
        ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "da", "fi", "go", "pu", "ze", "ri", "ba", "no"];
    let mut w = String::new();
    let mut n = i + 16;
    while n > 0 {
        w.push_str(SYL[n % 16]);
        n /= 16;
    }
    w
}

fn sentence(rng: &mut u64, n: u64) -> String {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let len = 4 + (next() % 12) as usize;
    let mut words: Vec<String> = (0..len)
        .map(|_| {
            let r = (next() % 10_000) as f64 / 10_000.0;
            word((r * r * r * 5000.0) as usize)
        })
        .collect();
    if n % 10_000 == 7 {
        // A rare word: ten times in 100,000 messages.
        words.push("kayaking".into());
    }
    words.join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `keep`: leave the filled profile there (for `web/tests/bench-open.mjs`,
/// which times opening it in the web UI).
pub fn run(messages: u64, cli: bool, keep: Option<&std::path::Path>) -> Result<SearchResult> {
    let dir = tempfile::tempdir()?;
    let profile = match keep {
        Some(path) => path.to_owned(),
        None => dir.path().join("carol"),
    };
    let carol = crate::bench_person(Messenger::create(&profile, &ProfileKey::KeyFile, "carol", "sotto://x:1"))?;
    let dave = crate::bench_person(Messenger::create_ephemeral("dave", "sotto://x:1"))?;
    let commit = dave.start_direct(invitee(&carol)?)?;
    dave.accepted(&commit.client_id, 1)?;
    carol.handle_welcome(&commit.group_id, commit.welcome.as_deref().unwrap_or_default())?;

    let t = Instant::now();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut seq = 2;
    let mut n = 0;
    while n < messages {
        let batch = (messages - n).min(256);
        let mut deliveries = Vec::with_capacity(batch as usize);
        for _ in 0..batch {
            let item = dave.prepare_text("@carol", &sentence(&mut rng, n))?;
            dave.accepted(&item.client_id, seq)?;
            deliveries.push(item.delivered_as(dave.me(), seq));
            seq += 1;
            n += 1;
        }
        carol.handle_deliveries(&deliveries)?;
    }
    let fill_secs = t.elapsed().as_secs_f64();
    // The CLI opens only profiles that finished `sotto init`; searching
    // needs no server, so none is run.
    carol.mark_registered()?;
    drop(carol);

    let carol = Messenger::open(&profile, &ProfileKey::KeyFile)?;
    let sotto = std::env::current_exe()?.with_file_name("sotto");
    let mut queries = Vec::new();
    // A rare word, a common one, two words with a prefix, and nothing.
    for q in ["kayaking".to_owned(), word(0), format!("{} {}", word(1), &word(2)[..3]), "zzzzzz".to_owned()] {
        let hits = carol.search(&q, None, 50)?.len();
        let mut times = Vec::new();
        for _ in 0..9 {
            let t = Instant::now();
            carol.search(&q, None, 50)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let in_process = median(times);
        let through_cli = if cli {
            let mut times = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let out = std::process::Command::new(&sotto)
                    .args(["--profile", profile.to_str().context("profile path")?, "search", &q, "--json"])
                    .env("SOTTO_HOME", dir.path())
                    .output()
                    .with_context(|| {
                        format!("running {} (build it: cargo build --release -p sotto-cli)", sotto.display())
                    })?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(out.status.success(), "sotto search: {}", String::from_utf8_lossy(&out.stderr));
            }
            Some(median(times))
        } else {
            None
        };
        queries.push((q, hits, in_process, through_cli));
    }
    Ok(SearchResult { messages, fill_secs, queries })
}
