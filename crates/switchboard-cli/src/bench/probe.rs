//! What a run costs the machine, read from Linux's `/proc`: a process's CPU time and resident
//! memory, and the whole machine's busy time (to tell when something else competed for the CPU).
//!
//! Every reading is optional: on a system without `/proc` (or for a process that is gone) the
//! report leaves the field out instead of failing the run.

use std::fs;
use std::io;
use std::time::Instant;

use serde::Serialize;

/// `/proc` reports CPU times in USER_HZ ticks. USER_HZ is part of the kernel's ABI, fixed at 100
/// on every architecture this runs on, whatever the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, all threads) the process `pid` (or `"self"`) has used, in seconds.
pub(crate) fn cpu_seconds(pid: &str) -> io::Result<f64> {
    cpu_times(pid).map(|(user, system)| user + system)
}

/// User and system time (all threads) the process `pid` (or `"self"`) has used, in seconds.
pub(crate) fn cpu_times(pid: &str) -> io::Result<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses:
    // count the fields after the last ')'. They start at field 3; utime and stime are 14, 15.
    let rest = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .ok_or_else(|| bad_data("no ')' in /proc/PID/stat"))?;
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick = || -> io::Result<f64> {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / USER_HZ)
            .ok_or_else(|| bad_data("short /proc/PID/stat"))
    };
    Ok((tick()?, tick()?))
}

/// The resident memory of process `pid`, in KiB (`VmRSS`).
pub(crate) fn rss_kib(pid: &str) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| bad_data("no VmRSS in /proc/PID/status"))
}

/// Seconds of CPU time the whole machine has spent busy (every CPU, everything but idle and
/// I/O wait), from the first line of `/proc/stat`.
pub(crate) fn machine_busy_seconds() -> io::Result<f64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .ok_or_else(|| bad_data("no cpu line in /proc/stat"))?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    // counted in user, so only the first eight are summed.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if ticks.len() < 5 {
        return Err(bad_data("short cpu line in /proc/stat"));
    }
    let idle = ticks[3] + ticks[4];
    Ok((ticks.iter().sum::<u64>() - idle) as f64 / USER_HZ)
}

fn bad_data(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// CPU counters at one instant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot {
    at: Instant,
    server: Option<f64>,
    server_user: Option<f64>,
    own: Option<f64>,
    machine: Option<f64>,
}

impl Snapshot {
    /// Reads the counters now; `server` is the server's process id, when known.
    pub(crate) fn take(server: Option<u32>) -> Self {
        let times = server.and_then(|pid| cpu_times(&pid.to_string()).ok());
        Self {
            at: Instant::now(),
            server: times.map(|(user, system)| user + system),
            server_user: times.map(|(user, _)| user),
            own: cpu_seconds("self").ok(),
            machine: machine_busy_seconds().ok(),
        }
    }

    /// What was used between `self` and the later snapshot `end`, for `work` units of work
    /// (messages, deliveries, handshakes).
    pub(crate) fn usage(&self, end: &Self, work: u64) -> CpuUsage {
        let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        let server_s = diff(self.server, end.server);
        let load_s = diff(self.own, end.own);
        // What neither side of the benchmark used: other programs competing for the CPU.
        let other_s = match (diff(self.machine, end.machine), server_s, load_s) {
            (Some(machine), Some(server), Some(load)) => Some((machine - server - load).max(0.0)),
            _ => None,
        };
        CpuUsage {
            window_s: end.at.duration_since(self.at).as_secs_f64(),
            server_s,
            server_user_s: diff(self.server_user, end.server_user),
            server_us_per_msg: server_s.filter(|_| work > 0).map(|s| s * 1e6 / work as f64),
            load_s,
            other_s,
        }
    }
}

/// CPU time used over the measured window.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct CpuUsage {
    /// The window's length, in seconds.
    pub(crate) window_s: f64,
    /// The server's CPU time (user + system), when its process id was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_s: Option<f64>,
    /// The user-space part of `server_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_user_s: Option<f64>,
    /// The server's CPU time per counted message (or delivery, or handshake), in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_us_per_msg: Option<f64>,
    /// The load generator's own CPU time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) load_s: Option<f64>,
    /// CPU time the rest of the machine used meanwhile (other programs): a run with much of it
    /// was disturbed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) other_s: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        // Burn CPU until the counter is past its first tick (bounded, on a busy machine too).
        let start = Instant::now();
        let mut x = 0u64;
        while cpu_seconds("self").unwrap() == 0.0 && start.elapsed().as_secs() < 10 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        }
        assert!(cpu_seconds("self").unwrap() > 0.0);
        assert!(rss_kib("self").unwrap() > 0);
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }

    #[test]
    fn missing_process_is_an_error_not_a_panic() {
        // PIDs are below 2^22 on Linux.
        assert!(cpu_seconds("4294967295").is_err());
        assert!(Snapshot::take(Some(u32::MAX)).server.is_none());
    }
}
