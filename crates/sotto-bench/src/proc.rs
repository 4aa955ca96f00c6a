//! Child processes of the bench (the real server, the baseline relay, the
//! file transfer) and what /proc says about them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A child process started from this same executable.
pub struct Proc {
    pub child: Child,
    /// The first line it printed (an address).
    pub line: String,
}

impl Proc {
    /// Runs `sotto-bench ARGS...` and waits for its first stdout line.
    /// With `SOTTO_BENCH_SERVER_WRAPPER` set (say `valgrind
    /// --tool=callgrind`), the child runs under that command, so a
    /// profiler sees the server alone.
    pub fn spawn(args: &[&str]) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let wrapper = std::env::var("SOTTO_BENCH_SERVER_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        match words.next() {
            Some(program) => Self::start(Command::new(program).args(words).arg(exe).args(args)),
            None => Self::start(Command::new(exe).args(args)),
        }
    }

    /// The same, pinned to the CPUs in `cpus` (a taskset list such as
    /// `0` or `0,2-3`) with `taskset` (util-linux).
    pub fn spawn_pinned(cpus: &str, args: &[&str]) -> Result<Self> {
        let exe = std::env::current_exe()?;
        Self::start(Command::new("taskset").arg("-c").arg(cpus).arg(exe).args(args))
            .context("taskset (util-linux) is needed to pin the server to its CPUs")
    }

    fn start(command: &mut Command) -> Result<Self> {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = lines.next().context("the child printed nothing")??;
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, line })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a child that ends by itself (the file transfer), so it can
    /// remove its temporary files; killing it would leave them behind.
    pub fn finish(mut self) -> Result<()> {
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the child process failed: {status}");
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Open file descriptors of `pid`.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory of a process, KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// CPU time (user + system) of a process, seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may contain spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here 11 and 12.
    let hz = 100.0;
    (ticks(11) + ticks(12)) / hz
}

/// CPU seconds of every process named `name` (all of PostgreSQL's, say).
pub fn cpu_secs_named(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .map(cpu_secs)
        .sum()
}

/// Raises this process's open-file limit as far as allowed; returns it.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

/// Moves every thread of this process to the CPUs in `list` (best effort:
/// without `taskset` the load generator simply stays unpinned).
pub fn pin_self(list: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", list, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// How many CPUs a taskset list names (`0`, `0,2-3`, …); 1 at least.
pub fn cpus_in_list(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.trim().split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

/// The CPUs of this machine that are not in `list`, as a taskset list
/// (`None` when there are none): where the load generator goes so that it
/// does not take the pinned server's time.
pub fn other_cpus(list: &str) -> Option<String> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut taken = vec![false; n];
    for part in list.split(',') {
        let (a, b) = match part.trim().split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok(), b.parse::<usize>().ok()),
            None => (part.trim().parse().ok(), part.trim().parse().ok()),
        };
        if let (Some(a), Some(b)) = (a, b) {
            taken.iter_mut().take(b + 1).skip(a).for_each(|t| *t = true);
        }
    }
    let free: Vec<String> = (0..n).filter(|c| !taken[*c]).map(|c| c.to_string()).collect();
    (!free.is_empty()).then(|| free.join(","))
}

#[cfg(test)]
mod cpu_list_tests {
    use super::{cpus_in_list, other_cpus};

    #[test]
    fn the_other_cpus_leave_out_the_list() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let all = format!("0-{}", n - 1);
        assert_eq!(other_cpus(&all), None);
        if n >= 2 {
            assert_eq!(
                other_cpus("0").as_deref(),
                Some((1..n).map(|c| c.to_string()).collect::<Vec<_>>().join(",").as_str())
            );
        }
    }

    #[test]
    fn taskset_lists_are_counted() {
        assert_eq!(cpus_in_list("0"), 1);
        assert_eq!(cpus_in_list("0,1"), 2);
        assert_eq!(cpus_in_list("0,2-3"), 3);
        assert_eq!(cpus_in_list(""), 1);
    }
}
