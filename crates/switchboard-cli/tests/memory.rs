//! `switchboard serve` gives the memory of a burst of connections back to the system once it
//! goes quiet, rather than keeping the allocator's freed pages for ever.
#![cfg(target_os = "linux")]

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::Serve;

/// How long the server may take to go quiet and give the pages back.
const QUIET_LIMIT: Duration = Duration::from_secs(10);

/// Anonymous resident memory of process `pid`, in KiB: the heap, without the program's code
/// (which the burst pages in, and which stays).
fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status")
}

/// Opens `connections` idle connections to `url` (one echo each), holds them for a second and
/// closes them, with `switchboard bench`.
fn burst(url: &str, connections: usize) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", url, "--mode", "idle", "--duration", "1s"])
        .args([
            "-c",
            &connections.to_string(),
            "--connect-concurrency",
            "64",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_memory_of_a_burst_of_connections_goes_back_once_the_server_is_quiet() {
    let serve = Serve::start(&["--mode", "echo"]);
    let url = serve.url();
    let pid = serve.pid();
    // The first connections page in code and make what each thread keeps for good.
    burst(&url, 50);
    let before = rss_anon_kib(pid);

    let holding = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(before));
    let watcher = {
        let (holding, peak) = (holding.clone(), peak.clone());
        std::thread::spawn(move || {
            while holding.load(Ordering::Relaxed) {
                peak.fetch_max(rss_anon_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    burst(&url, 3000);
    holding.store(false, Ordering::Relaxed);
    watcher.join().unwrap();
    let grown = peak.load(Ordering::Relaxed) - before;
    assert!(grown > 1000, "3,000 connections took only {grown} KiB");

    // jemalloc alone would keep the freed pages until allocation resumes.
    let deadline = Instant::now() + QUIET_LIMIT;
    loop {
        let kept = rss_anon_kib(pid).saturating_sub(before);
        if kept <= grown / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kept} of the burst's {grown} KiB still resident after {QUIET_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
