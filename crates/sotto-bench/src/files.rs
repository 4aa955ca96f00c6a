//! `files`: one file up and down through a real server, in its own process
//! so its peak memory is its own.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use sotto_client::Session;
use sotto_core::Messenger;

pub struct FilesResult {
    pub bytes: u64,
    pub upload_mb_s: f64,
    pub download_mb_s: f64,
    pub client_peak_rss_kib: u64,
}

pub fn write_file(path: &std::path::Path, size: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Whether two files hold the same bytes (compared in 1 MiB blocks).
pub fn same_bytes(a: &std::path::Path, b: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Runs in the child process: prints the result as one JSON line.
pub async fn child(server: &str, size: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("payload.bin");
    write_file(&path, size)?;
    let tag: u32 = rand::random();
    let (a, b) = (
        crate::bench_person(Messenger::create_ephemeral(&format!("fa{tag}"), server))?,
        crate::bench_person(Messenger::create_ephemeral(&format!("fb{tag}"), server))?,
    );
    Session::register(&a, None).await?.close().await;
    Session::register(&b, None).await?.close().await;
    let mut sa = Session::open(&a).await?;
    let quiet: sotto_client::Progress = Arc::new(|_, _| {});
    let t = Instant::now();
    sa.send_file(&[format!("@{}", b.identity().handle)], &path, None, quiet.clone()).await?;
    let up = t.elapsed().as_secs_f64();
    sa.close().await;
    let mut sb = Session::open(&b).await?;
    sb.sync().await?;
    let id = b.take_unfetched()?.into_iter().next().map(|m| m.id).ok_or_else(|| anyhow::anyhow!("no file arrived"))?;
    let out = dir.path().join("received.bin");
    let t = Instant::now();
    sb.download_file(&hex_id(&id), Some(&out), quiet).await?;
    let down = t.elapsed().as_secs_f64();
    sb.close().await;
    let mb = size as f64 / 1e6;
    let r = serde_json::json!({
        "bytes": size,
        "upload_mb_s": mb / up,
        "download_mb_s": mb / down,
        "client_peak_rss_kib": crate::proc::peak_rss_kib(std::process::id()),
    });
    println!("{r}");
    Ok(())
}

fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse(line: &str) -> Result<FilesResult> {
    let v: serde_json::Value = serde_json::from_str(line)?;
    Ok(FilesResult {
        bytes: v["bytes"].as_u64().unwrap_or(0),
        upload_mb_s: v["upload_mb_s"].as_f64().unwrap_or(0.0),
        download_mb_s: v["download_mb_s"].as_f64().unwrap_or(0.0),
        client_peak_rss_kib: v["client_peak_rss_kib"].as_u64().unwrap_or(0),
    })
}
