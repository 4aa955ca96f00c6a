//! The server's own account of where a write's time went: its store-stage
//! histograms (`sotto_store_stage_seconds` on `/metrics`), read at the end
//! of a run, so a latency figure comes with the stage that made it.

use std::path::Path;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The file in the data folder where the `serve` child writes its metrics
/// address.
pub const METRICS_FILE: &str = "bench-metrics";

/// Per stage, its observations and the bucket bounds holding p50 and p99
/// (ms), as one line; none when the server keeps no stage timings
/// (PostgreSQL) or wrote no address.
pub async fn scrape(data: &Path) -> Result<Option<String>> {
    let Ok(address) = std::fs::read_to_string(data.join(METRICS_FILE)) else { return Ok(None) };
    let mut tcp = tokio::net::TcpStream::connect(address.trim()).await.context("the server's metrics address")?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    Ok(summary(&text))
}

/// `queue p50<=0.1 p99<=2 | commit ...` from the exposition text.
fn summary(text: &str) -> Option<String> {
    let mut stages: Vec<(String, Vec<(f64, u64)>)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("sotto_store_stage_seconds_bucket{stage=\"") else { continue };
        let Some((stage, rest)) = rest.split_once("\",le=\"") else { continue };
        let Some((le, count)) = rest.split_once("\"} ") else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        let count = count.trim().parse().ok()?;
        match stages.iter_mut().find(|(s, _)| s == stage) {
            Some((_, b)) => b.push((le, count)),
            None => stages.push((stage.to_owned(), vec![(le, count)])),
        }
    }
    if stages.is_empty() {
        return None;
    }
    let bound = |buckets: &[(f64, u64)], q: f64| {
        let total = buckets.last().map_or(0, |b| b.1);
        let rank = ((q * total as f64).ceil() as u64).max(1);
        match buckets.iter().find(|b| b.1 >= rank) {
            Some((le, _)) if le.is_finite() => format!("<={}", le * 1000.0),
            _ => ">1000".into(),
        }
    };
    let parts: Vec<String> = stages
        .iter()
        .filter(|(_, b)| b.last().is_some_and(|l| l.1 > 0))
        .map(|(s, b)| format!("{s} n={} p50{} p99{}", b.last().map_or(0, |l| l.1), bound(b, 0.5), bound(b, 0.99)))
        .collect();
    Some(format!("store_stages_ms {}", parts.join(" | ")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounds_come_from_the_cumulative_buckets() {
        let text = "sotto_store_stage_seconds_bucket{stage=\"sync\",le=\"0.0001\"} 0\n\
                    sotto_store_stage_seconds_bucket{stage=\"sync\",le=\"0.0002\"} 60\n\
                    sotto_store_stage_seconds_bucket{stage=\"sync\",le=\"0.002\"} 99\n\
                    sotto_store_stage_seconds_bucket{stage=\"sync\",le=\"+Inf\"} 100\n\
                    sotto_store_stage_seconds_bucket{stage=\"queue\",le=\"+Inf\"} 0\n";
        assert_eq!(super::summary(text).unwrap(), "store_stages_ms sync n=100 p50<=0.2 p99<=2");
        assert_eq!(super::summary("nothing"), None);
    }
}
