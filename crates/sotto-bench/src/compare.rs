//! `compare-mqtt`: sotto's relay and an MQTT broker under the same load,
//! in interleaved rounds (so a noisy machine hits both alike), with the
//! ratio of the medians.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{mqtt, proc, relay_cmd};

pub struct Options {
    pub broker: Option<String>,
    pub pairs: usize,
    pub secs: u64,
    pub window: usize,
    pub rounds: usize,
    /// `None`: unpinned.
    pub server_cpus: Option<String>,
    /// sotto's senders acknowledge their own messages (`relay::run_with`).
    pub sender_acks: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// This process's CPU time since `since` over `secs`, in percent of one
/// core: near 100 % per CPU it may use means the generator was the limit.
fn generator_percent(since: f64, secs: f64) -> f64 {
    (proc::cpu_secs(std::process::id()) - since) / secs.max(1e-3) * 100.0
}

pub async fn run(o: Options) -> Result<()> {
    proc::raise_fd_limit();
    let given: Option<SocketAddr> = match &o.broker {
        Some(b) => Some(
            tokio::net::lookup_host(b.as_str())
                .await
                .with_context(|| format!("the broker address {b} is not host:port"))?
                .next()
                .with_context(|| format!("the broker address {b} names no host"))?,
        ),
        None => None,
    };
    let cpus = o.server_cpus.as_deref();
    // The load generator on the other CPUs, so that both servers have
    // theirs to themselves (as `all`'s one-core row does).
    if let Some(rest) = cpus.and_then(proc::other_cpus) {
        proc::pin_self(&rest);
    }
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    let mut faults = 0;
    for round in 1..=o.rounds.max(1) {
        // A broker of our own is started fresh each round, like the server.
        let started = match given {
            Some(_) => None,
            None => Some(mqtt::Broker::start(cpus, o.window)?),
        };
        let address = given.or(started.as_ref().map(|b| b.address)).context("no broker")?;
        let cpu = || started.as_ref().map(|b| proc::cpu_secs(b.pid()));
        let cpu0 = cpu();
        let me0 = proc::cpu_secs(std::process::id());
        let m = mqtt::run(address, o.pairs, Duration::from_secs(o.secs), o.window).await?;
        let broker_cpu = match (cpu(), cpu0) {
            (Some(b), Some(a)) => format!("{:.0}", (b - a) / m.elapsed * 100.0),
            _ => "unknown".into(),
        };
        drop(started);
        let rate = m.received as f64 / m.elapsed;
        let me = generator_percent(me0, m.elapsed);
        println!(
            "mqtt round={round} msgs_per_s={rate:.0} sent={} acked={} received={} lost={} duplicated={} \
             broker_cpu_percent={broker_cpu} load_generator_cpu_percent={me:.0}",
            m.sent, m.acked, m.received, m.lost, m.duplicated
        );
        theirs.push(rate);
        faults += m.lost + m.duplicated;

        let me0 = proc::cpu_secs(std::process::id());
        let s = relay_cmd::round(o.pairs, Duration::from_secs(o.secs), o.window, cpus, o.sender_acks).await?;
        let me = generator_percent(me0, s.elapsed);
        println!(
            "sotto round={round} msgs_per_s={:.0} lost={} duplicated={} server_cpu_percent={:.0} \
             load_generator_cpu_percent={me:.0}",
            s.msgs_per_s, s.lost, s.duplicated, s.cpu_percent
        );
        ours.push(s.msgs_per_s);
        faults += s.lost + s.duplicated;
    }
    let (t, u) = (median(&mut theirs), median(&mut ours));
    println!(
        "compare-mqtt pairs={} window={} payload={} server_cpus={} sender_acks={} mqtt_median={t:.0} \
         sotto_median={u:.0} ratio_sotto_to_mqtt={:.2}",
        o.pairs,
        o.window,
        crate::relay::PAYLOAD,
        cpus.unwrap_or("any"),
        o.sender_acks,
        if t > 0.0 { u / t } else { 0.0 }
    );
    if faults > 0 {
        bail!("a run lost or duplicated acknowledged messages (see the rows above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
