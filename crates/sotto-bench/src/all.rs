//! `sotto-bench all`: every scenario in a row, as a table or JSON (the
//! figures docs/performance.md records).

#[allow(unused_imports)]
use super::*;

pub(crate) async fn all(quick: bool, as_json: bool, pairs: usize, idle_n: usize, file_mib: u64) -> Result<()> {
    let fd_limit = proc::raise_fd_limit();
    let (pairs, idle_n, file_mib) =
        if quick { (pairs.min(10), idle_n.min(500), file_mib.min(64)) } else { (pairs, idle_n, file_mib) };
    let run_for = if quick { Duration::from_secs(2) } else { Duration::from_secs(10) };
    let tmp = tempfile::tempdir()?;
    eprintln!(
        "server: real sotto-server code, TLS 1.3 (pinned, self-signed), SQLite store in {} (every answer waits for an fdatasync of its log)",
        tmp.path().display()
    );

    // relay
    let (server, address) = start_server(&tmp.path().join("relay"))?;
    let set = relay::pairs(&address, pairs, "p").await?;
    let cpu0 = proc::cpu_secs(server.pid());
    let r = relay::run(set, run_for, 64, None).await?;
    let cpu_used = proc::cpu_secs(server.pid()) - cpu0;
    let relay_rate = r.received as f64 / r.elapsed;
    let relay_rss = proc::rss_kib(server.pid());
    eprintln!("relay: {relay_rate:.0} msgs/s, lost {}, duplicated {}", r.lost, r.duplicated);

    // The same with the server held to one core (the fair row against
    // single-threaded peers); the load generator keeps the other.
    let (one_core, one_core_cpu) = if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("relay, server on one core: skipped (this machine has one CPU)");
        (0.0, 0.0)
    } else {
        let r = relay_pinned(pairs, run_for).await?;
        eprintln!("relay, server on one core: {:.0} msgs/s", r.0);
        r
    };

    // latency at fixed rates
    let mut latency = Vec::new();
    let rates: &[u64] = if quick { &[1000] } else { &[1000, 10_000] };
    for &rate in rates {
        let set = relay::pairs(&address, 10, &format!("l{rate}x")).await?;
        let lr = relay::run(set, run_for, 1024, Some(rate)).await?;
        let l = &lr.latencies_ns;
        latency.push(json!({
            "rate": rate,
            "received": lr.received,
            "p50_ms": relay::quantile_ms(l, 0.5),
            "p90_ms": relay::quantile_ms(l, 0.9),
            "p99_ms": relay::quantile_ms(l, 0.99),
            "max_ms": relay::quantile_ms(l, 1.0),
        }));
        eprintln!("latency at {rate}/s: p99 {:.2} ms", relay::quantile_ms(l, 0.99));
    }
    drop(server);

    // baseline (after the relay scenarios: run first, it left the relay
    // 10 % slower in the same process on this machine)
    let base = proc::Proc::spawn(&["baseline-serve"])?;
    let (b_count, b_secs, _) = baseline::run(&base.line, pairs as u32, run_for, 64, None).await?;
    let baseline_rate = b_count as f64 / b_secs;
    // The latency floor: the same fixed rate through the minimal relay.
    let (_, _, b_lat) = baseline::run(&base.line, 10, run_for, 1024, Some(1000)).await?;
    drop(base);
    eprintln!("baseline: {baseline_rate:.0} msgs/s, p99 at 1000/s {:.2} ms", relay::quantile_ms(&b_lat, 0.99));

    // idle
    let (server, address) = start_server(&tmp.path().join("idle"))?;
    let idle = idle::run(&address, server.pid(), idle_n, fd_limit).await?;
    drop(server);
    eprintln!("idle: {} connections, {:.1} KiB each", idle.connections, idle.rss_per_conn_kib);

    // mls
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
    let (msgs, backlog) = if quick { (500, 1000) } else { (5000, 10_000) };
    let both = tokio::task::spawn_blocking(move || mls::run(msgs, backlog, sizes)).await??;
    // The figures of record are the default (post-quantum) suite's.
    let m = both.into_iter().next().ok_or_else(|| anyhow::anyhow!("no suite measured"))?;
    eprintln!("mls: {:.0} msgs/s (openmls), {:.0} msgs/s (through sotto-core)", m.raw_msgs_per_s, m.msgs_per_s);

    // files
    let (server, address) = start_server(&tmp.path().join("files"))?;
    let child =
        proc::Proc::spawn(&["files-child", "--server", &address.to_string(), "--size", &(file_mib << 20).to_string()])?;
    let f = files::parse(&child.line)?;
    child.finish()?;
    let server_peak = proc::peak_rss_kib(server.pid());
    drop(server);

    // backpressure: the server's real per-connection limits, 5-s write timeout
    let bp_secs = if quick { 2 } else { 10 };
    let bp = backpressure_on_fresh_server(&tmp.path().join("backpressure"), 10, 1000, bp_secs, 5, true).await?;
    eprintln!("{}", backpressure_line(&bp));

    let ratio = |x: f64| if baseline_rate > 0.0 { x / baseline_rate } else { 0.0 };
    let report = json!({
        "quick": quick,
        "baseline": {"msgs_per_s": baseline_rate, "pairs": pairs, "window": 64,
                     "latency_at_1000": {"p50_ms": relay::quantile_ms(&b_lat, 0.5), "p99_ms": relay::quantile_ms(&b_lat, 0.99)}},
        "relay": {
            "msgs_per_s": relay_rate, "pairs": pairs, "sent": r.sent, "acknowledged": r.acked,
            "received": r.received, "lost": r.lost, "duplicated": r.duplicated, "refused": r.refused,
            "server_cpu_percent": cpu_used / r.elapsed * 100.0, "server_rss_kib": relay_rss,
            "ratio_to_baseline": ratio(relay_rate),
            "one_core_msgs_per_s": one_core, "one_core_server_cpu_percent": one_core_cpu,
        },
        "latency": {
            "p99_ms": latency.first().map(|l| l["p99_ms"].clone()).unwrap_or(json!(0.0)),
            "rates": latency,
        },
        "backpressure": {
            "quiet_p99_ms": bp.quiet_p99_ms, "flood_p99_ms": bp.flood_p99_ms,
            "flood_sent": bp.flood_sent, "flood_acknowledged": bp.flood_acked,
            "server_rss_before_kib": bp.rss_before_kib, "server_rss_peak_kib": bp.rss_peak_kib,
            "stuck_dropped_after_s": bp.stuck_dropped_after_s, "write_timeout_s": 5,
        },
        "idle": {"connections": idle.connections, "rss_per_conn_kib": idle.rss_per_conn_kib,
                 "storm_rss_per_conn_kib": idle.storm_rss_per_conn_kib,
                 "idle_cpu_percent": idle.idle_cpu_percent, "fd_limit": idle.fd_limit},
        "mls": {
            "msgs_per_s": m.raw_msgs_per_s, "client_msgs_per_s": m.msgs_per_s, "backlog": m.backlog, "backlog_secs": m.backlog_secs,
            "groups": m.groups.iter().map(|g| json!({"size": g.size, "add_member_ms": g.add_ms, "join_ms": g.join_ms, "commit_bytes": g.commit_bytes, "send_ms": g.send_ms})).collect::<Vec<_>>(),
        },
        "files": {"bytes": f.bytes, "upload_mb_s": f.upload_mb_s, "download_mb_s": f.download_mb_s,
                  "client_peak_rss_kib": f.client_peak_rss_kib, "server_peak_rss_kib": server_peak},
    });
    print_table(&report);
    if as_json {
        println!("{report}");
    }
    Ok(())
}

pub(crate) fn print_table(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    println!("{:<34} {:>14}", "scenario", "figure");
    println!("{:<34} {:>14.0}", "baseline msgs/s", f(&r["baseline"]["msgs_per_s"]));
    println!(
        "{:<34} {:>14}",
        "baseline @1000/s p50/p99 ms",
        format!(
            "{:.2} / {:.2}",
            f(&r["baseline"]["latency_at_1000"]["p50_ms"]),
            f(&r["baseline"]["latency_at_1000"]["p99_ms"])
        )
    );
    println!("{:<34} {:>14.0}", "relay msgs/s (end to end)", f(&r["relay"]["msgs_per_s"]));
    println!("{:<34} {:>14.2}", "relay / baseline", f(&r["relay"]["ratio_to_baseline"]));
    println!("{:<34} {:>14.0}", "relay msgs/s, server on one core", f(&r["relay"]["one_core_msgs_per_s"]));
    println!(
        "{:<34} {:>14}",
        "relay lost / duplicated",
        format!("{} / {}", r["relay"]["lost"], r["relay"]["duplicated"])
    );
    for l in r["latency"]["rates"].as_array().into_iter().flatten() {
        println!(
            "{:<34} {:>14}",
            format!("latency @{}/s p50/p99 ms", l["rate"]),
            format!("{:.2} / {:.2}", f(&l["p50_ms"]), f(&l["p99_ms"]))
        );
    }
    println!(
        "{:<34} {:>14}",
        "p99 ms quiet / beside a flood",
        format!("{:.2} / {:.2}", f(&r["backpressure"]["quiet_p99_ms"]), f(&r["backpressure"]["flood_p99_ms"]))
    );
    println!(
        "{:<34} {:>14}",
        "stuck reader dropped after s",
        r["backpressure"]["stuck_dropped_after_s"].as_f64().map_or("never".into(), |s| format!("{s:.1}"))
    );
    println!("{:<34} {:>14.1}", "idle KiB per connection", f(&r["idle"]["rss_per_conn_kib"]));
    println!("{:<34} {:>14.1}", "  the same right after the storm", f(&r["idle"]["storm_rss_per_conn_kib"]));
    println!("{:<34} {:>14.2}", "idle server CPU %", f(&r["idle"]["idle_cpu_percent"]));
    println!("{:<34} {:>14.0}", "mls encrypt+decrypt msgs/s", f(&r["mls"]["msgs_per_s"]));
    println!("{:<34} {:>14.0}", "  same through sotto-core msgs/s", f(&r["mls"]["client_msgs_per_s"]));
    println!("{:<34} {:>14.2}", format!("mls backlog of {} s", r["mls"]["backlog"]), f(&r["mls"]["backlog_secs"]));
    for g in r["mls"]["groups"].as_array().into_iter().flatten() {
        println!(
            "{:<34} {:>14}",
            format!("group of {}: add/join/send ms", g["size"]),
            format!("{:.1} / {:.1} / {:.2}", f(&g["add_member_ms"]), f(&g["join_ms"]), f(&g["send_ms"]))
        );
    }
    println!(
        "{:<34} {:>14}",
        "file up / down MB/s",
        format!("{:.0} / {:.0}", f(&r["files"]["upload_mb_s"]), f(&r["files"]["download_mb_s"]))
    );
    println!(
        "{:<34} {:>14}",
        "file peak RSS client/server MiB",
        format!(
            "{} / {}",
            r["files"]["client_peak_rss_kib"].as_u64().unwrap_or(0) / 1024,
            r["files"]["server_peak_rss_kib"].as_u64().unwrap_or(0) / 1024
        )
    );
}
