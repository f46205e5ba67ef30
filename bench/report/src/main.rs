//! bench-report: turns the JSON results of `bench/run.sh` into `bench/REPORT.md` and an SVG
//! chart.
//!
//!   bench-report RESULTS_DIR REPORT.md CHART.svg
//!   bench-report --compare RESULTS_DIR SERVER BASE
//!
//! The second form prints, for every workload, SERVER's and BASE's medians and their ratio, and
//! the same for server CPU per message: how `bench/run.sh --baseline` shows one build of
//! switchboard against another.
//!
//! RESULTS_DIR holds `r{round}-{workload}-{server}.json` (the output of `switchboard bench
//! --json`), `conditions.txt` and `log.txt`. Every number in the report is the median over the
//! rounds, with the minimum and maximum beside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

/// The servers, in the order of the tables: (key in the file names, name shown).
const SERVERS: [(&str, &str); 6] = [
    ("switchboard", "switchboard"),
    ("switchboard-loop", "switchboard, event loop"),
    ("tungstenite", "tokio-tungstenite"),
    ("fastwebsockets", "fastwebsockets"),
    ("ws", "Node ws"),
    ("raw", "raw echo"),
];
const PEERS: [&str; 3] = ["tungstenite", "fastwebsockets", "ws"];

struct Workload {
    id: &'static str,
    title: &'static str,
    /// The headline number, as a path into the JSON.
    metric: &'static [&'static str],
    unit: &'static str,
    /// The target for switchboard ÷ the raw echo, if any.
    target: Option<f64>,
}

const WORKLOADS: [Workload; 7] = [
    Workload {
        id: "a",
        title: "(a) 100 connections, 16 B text, 1 in flight",
        metric: &["msgs_per_sec"],
        unit: "msg/s",
        target: Some(1.0),
    },
    Workload {
        id: "b",
        title: "(b) 100 connections, 16 B text, 16 in flight",
        metric: &["msgs_per_sec"],
        unit: "msg/s",
        target: Some(1.0),
    },
    Workload {
        id: "c",
        title: "(c) 100 connections, 1 KiB binary, 16 in flight",
        metric: &["msgs_per_sec"],
        unit: "msg/s",
        target: Some(0.95),
    },
    Workload {
        id: "d",
        title: "(d) 1 connection, 1 MiB binary, 1 in flight",
        metric: &["mb_per_sec"],
        unit: "MB/s",
        target: Some(0.85),
    },
    Workload {
        id: "e",
        title: "(e) broadcast, 1 publisher, 10,000 subscribers, 16 B, 8 in flight",
        metric: &["msgs_per_sec"],
        unit: "deliveries/s",
        target: None,
    },
    Workload {
        id: "f",
        title: "(f) 10,000 idle connections (one echo each first)",
        metric: &["memory", "per_connection_kib"],
        unit: "KiB RSS per connection",
        target: None,
    },
    Workload {
        id: "g",
        title: "(g) handshakes (connect, upgrade, close), 32 workers",
        metric: &["msgs_per_sec"],
        unit: "handshakes/s",
        target: None,
    },
];

/// Median, minimum and maximum of some rounds.
#[derive(Clone, Copy, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

impl Stat {
    fn of(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: values[0],
            max: values[n - 1],
            n,
        })
    }
}

/// The results: workload id -> server key -> one JSON document per round.
type Results = BTreeMap<String, BTreeMap<String, Vec<Value>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir, server, base] = &args[..]
        && flag == "--compare"
    {
        print!("{}", compare(&load_or_exit(dir), server, base));
        return;
    }
    let [_, dir, report, chart] = &args[..] else {
        eprintln!("usage: bench-report RESULTS_DIR REPORT.md CHART.svg");
        eprintln!("       bench-report --compare RESULTS_DIR SERVER BASE");
        std::process::exit(2);
    };
    let results = load_or_exit(dir);
    let conditions =
        std::fs::read_to_string(Path::new(dir).join("conditions.txt")).unwrap_or_default();
    let chart_name = Path::new(chart)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Why a target is not met (profiles, memory breakdown): written by hand beside the report,
    // kept in it below the targets.
    let analysis = Path::new(report)
        .parent()
        .map(|dir| dir.join("ANALYSIS.md"))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let markdown = render(&results, &conditions, &analysis, &chart_name);
    if let Err(e) = std::fs::write(report, markdown) {
        eprintln!("bench-report: cannot write {report}: {e}");
        std::process::exit(1);
    }
    if let Err(e) = draw(&results, Path::new(chart)) {
        eprintln!("bench-report: cannot draw {chart}: {e}");
        std::process::exit(1);
    }
}

fn load_or_exit(dir: &str) -> Results {
    load(Path::new(dir)).unwrap_or_else(|e| {
        eprintln!("bench-report: cannot read {dir}: {e}");
        std::process::exit(1);
    })
}

/// A table of `server` against `base`, workload by workload: medians, min–max, ratio.
fn compare(results: &Results, server: &str, base: &str) -> String {
    let mut out =
        format!("| workload | {server} | {base} | {server} ÷ {base} |\n|---|---:|---:|---:|\n");
    for w in &WORKLOADS {
        let rows = [
            (format!("{} ({})", w.title, w.unit), w.metric),
            (
                format!("{} (server µs CPU per message)", w.title),
                &["cpu", "server_us_per_msg"][..],
            ),
        ];
        for (title, path) in rows {
            let (a, b) = (
                stat(results, w.id, server, path),
                stat(results, w.id, base, path),
            );
            if a.is_none() && b.is_none() {
                continue;
            }
            let _ = writeln!(
                out,
                "| {title} | {} | {} | {} |",
                cell(a),
                cell(b),
                ratio_cell(ratio(a, b))
            );
        }
    }
    out
}

fn load(dir: &Path) -> std::io::Result<Results> {
    let mut results = Results::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        // r{round}-{workload}-{server}
        let mut parts = stem.splitn(3, '-');
        let (Some(round), Some(workload), Some(server)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !round.starts_with('r') {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => results
                .entry(workload.to_owned())
                .or_default()
                .entry(server.to_owned())
                .or_default()
                .push(value),
            Err(e) => eprintln!("bench-report: skipping {name}: {e}"),
        }
    }
    Ok(results)
}

fn get(value: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_f64()
}

fn stat(results: &Results, workload: &str, server: &str, path: &[&str]) -> Option<Stat> {
    let runs = results.get(workload)?.get(server)?;
    Stat::of(runs.iter().filter_map(|r| get(r, path)).collect())
}

fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(s: Option<Stat>) -> String {
    match s {
        Some(s) if s.n > 1 => format!(
            "**{}** <sub>{}–{}</sub>",
            number(s.median),
            number(s.min),
            number(s.max)
        ),
        Some(s) => format!("**{}**", number(s.median)),
        None => "–".into(),
    }
}

fn ratio(a: Option<Stat>, b: Option<Stat>) -> Option<f64> {
    let (a, b) = (a?.median, b?.median);
    // A denominator of (nearly) nothing, like the raw echo's memory per connection, has no
    // meaningful ratio.
    (b > 1e-3).then(|| a / b)
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}×"))
}

fn header(out: &mut String, first: &str) {
    let _ = write!(out, "| {first} |");
    for (_, name) in SERVERS {
        let _ = write!(out, " {name} |");
    }
    out.push('\n');
    out.push_str("|---|");
    for _ in SERVERS {
        out.push_str("---:|");
    }
    out.push('\n');
}

fn render(results: &Results, conditions: &str, analysis: &str, chart: &str) -> String {
    let mut out = String::new();
    let rounds = results
        .values()
        .flat_map(|servers| servers.values().map(Vec::len))
        .max()
        .unwrap_or(0);
    out.push_str("# switchboard side by side with its peers\n\n");
    out.push_str(
        "Generated by `bench/run.sh` (do not edit: rerun it). Every number is the median of the \
         rounds, with the minimum–maximum beside it. Server on CPU 0, load generator \
         (`switchboard bench`) on CPU 1, loopback TCP. Only echoes (deliveries) whose kind, \
         length and every byte were checked count.\n\n",
    );
    if !chart.is_empty() {
        let _ = writeln!(out, "![switchboard and its peers]({chart})\n");
    }

    out.push_str("## Throughput\n\n");
    header(&mut out, "workload");
    for w in &WORKLOADS {
        let _ = write!(out, "| {} ({}) |", w.title, w.unit);
        for (server, _) in SERVERS {
            let _ = write!(out, " {} |", cell(stat(results, w.id, server, w.metric)));
        }
        out.push('\n');
    }

    out.push_str(
        "\n## Server CPU time per message\n\nMicroseconds of server CPU (user + system, from \
         `/proc/PID/stat`) over the measured window, divided by the messages (deliveries, \
         handshakes) counted in it. On pipelined rows the load generator saturates first, so \
         this is the fair comparison there.\n\n",
    );
    header(&mut out, "workload (µs per message)");
    for w in WORKLOADS.iter().filter(|w| w.id != "f") {
        let _ = write!(out, "| {} |", w.title);
        for (server, _) in SERVERS {
            let s = stat(results, w.id, server, &["cpu", "server_us_per_msg"]);
            let _ = write!(out, " {} |", cell(s));
        }
        out.push('\n');
    }

    out.push_str("\n## Latency\n\np50 / p99 in microseconds (echo round trip; publish to receive for (e); connect to upgraded for (g)).\n\n");
    header(&mut out, "workload (p50 / p99 µs)");
    for w in WORKLOADS.iter() {
        let _ = write!(out, "| {} |", w.title);
        for (server, _) in SERVERS {
            let p50 = stat(results, w.id, server, &["latency_us", "p50"]);
            let p99 = stat(results, w.id, server, &["latency_us", "p99"]);
            match (p50, p99) {
                (Some(a), Some(b)) => {
                    let _ = write!(out, " {} / {} |", number(a.median), number(b.median));
                }
                _ => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }

    out.push_str(
        "\n## Ratios\n\nswitchboard's median divided by the other's: for throughput above 1× \
         means switchboard is faster; for CPU per message and memory below 1× means it uses \
         less.\n\n",
    );
    out.push_str("| workload | ÷ raw echo | ÷ tokio-tungstenite | ÷ fastwebsockets | ÷ Node ws | event loop ÷ raw echo |\n|---|---:|---:|---:|---:|---:|\n");
    let mut rows: Vec<(String, &[&str], &str)> = Vec::new();
    for w in &WORKLOADS {
        rows.push((format!("{} {}", w.title, w.unit), w.metric, w.id));
    }
    for w in WORKLOADS.iter().filter(|w| w.id != "f") {
        rows.push((
            format!("{} CPU per message", w.title),
            &["cpu", "server_us_per_msg"],
            w.id,
        ));
    }
    for (title, path, id) in &rows {
        let ours = stat(results, id, "switchboard", path);
        let _ = write!(out, "| {title} |");
        for other in ["raw"].iter().chain(PEERS.iter()) {
            let _ = write!(
                out,
                " {} |",
                ratio_cell(ratio(ours, stat(results, id, other, path)))
            );
        }
        let looped = stat(results, id, "switchboard-loop", path);
        let raw = stat(results, id, "raw", path);
        let _ = writeln!(out, " {} |", ratio_cell(ratio(looped, raw)));
    }

    out.push_str(
        "\n## Targets (issue 21)\n\nRatios to the raw echo of the same run; a target is met \
         when either way of serving meets it.\n\n| target | switchboard | event loop | met |\n\
         |---|---:|---:|:---:|\n",
    );
    let mut target = |what: String, path: &[&str], id: &str, ok: &dyn Fn(f64) -> bool| {
        let cell = |server: &str| {
            let ours = stat(results, id, server, path);
            if path[0] == "memory" {
                ours.map(|s| s.median)
            } else {
                ratio(ours, stat(results, id, "raw", path))
            }
        };
        let (tasks, looped) = (cell("switchboard"), cell("switchboard-loop"));
        let show = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
        let met = match [tasks, looped].into_iter().flatten().any(ok) {
            _ if tasks.is_none() && looped.is_none() => "–",
            true => "yes",
            false => "**no**",
        };
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {met} |",
            show(tasks),
            show(looped)
        );
    };
    for w in &WORKLOADS {
        if let Some(t) = w.target {
            target(format!("{} ≥ {t}× raw", w.title), w.metric, w.id, &|v| {
                v >= t
            });
        }
    }
    for (id, limit) in [("b", 0.95), ("c", 1.05)] {
        target(
            format!("({id}) server CPU per message ≤ {limit}× raw"),
            &["cpu", "server_us_per_msg"],
            id,
            &|v| v <= limit,
        );
    }
    target(
        "(f) ≤ 0.27 KiB RSS per idle connection".into(),
        &["memory", "per_connection_kib"],
        "f",
        &|v| v <= 0.27,
    );
    out.push_str("\n| target | measured | met |\n|---|---:|:---:|\n");
    let mut target = |what: String, value: Option<f64>, ok: &dyn Fn(f64) -> bool| {
        let (measured, met) = match value {
            Some(v) => (format!("{v:.2}"), if ok(v) { "yes" } else { "**no**" }),
            None => ("–".into(), "–"),
        };
        let _ = writeln!(out, "| {what} | {measured} | {met} |");
    };
    for w in WORKLOADS.iter().filter(|w| w.id != "f") {
        let ours = stat(results, w.id, "switchboard", w.metric);
        let worst = PEERS
            .iter()
            .filter_map(|p| ratio(ours, stat(results, w.id, p, w.metric)))
            .reduce(f64::min);
        target(
            format!("{} ahead of every peer (lowest ratio)", w.title),
            worst,
            &|v| v > 1.0,
        );
    }

    if !analysis.trim().is_empty() {
        out.push('\n');
        out.push_str(analysis.trim_end());
        out.push('\n');
    }

    out.push_str("\n## Conditions\n\n```\n");
    out.push_str(conditions.trim_end());
    let _ = write!(out, "\nrounds found: {rounds}\n```\n\n");
    let mut others = Vec::new();
    let mut errors = BTreeMap::<&str, u64>::new();
    for servers in results.values() {
        for (server, runs) in servers {
            for r in runs {
                if let (Some(o), Some(w)) =
                    (get(r, &["cpu", "other_s"]), get(r, &["cpu", "window_s"]))
                {
                    others.push(o / w);
                }
                let name = SERVERS
                    .iter()
                    .find(|(k, _)| k == server)
                    .map_or("?", |(_, n)| *n);
                *errors.entry(name).or_default() +=
                    r.get("errors").and_then(Value::as_u64).unwrap_or(0);
            }
        }
    }
    if let Some(s) = Stat::of(others) {
        let _ = writeln!(
            out,
            "CPU used by other programs during the measured windows (cores, from `/proc/stat` \
             minus the server's and the load generator's): median {:.2}, max {:.2}.\n",
            s.median, s.max
        );
    }
    out.push_str(
        "Other programs' CPU use during the kept runs, median over the rounds, in cores (a \
         disturbed row is less trustworthy; CPU per message suffers least from it):\n\n",
    );
    header(&mut out, "workload");
    for w in WORKLOADS.iter().filter(|w| w.id != "f") {
        let _ = write!(out, "| ({}) |", w.id);
        for (server, _) in SERVERS {
            let share = results
                .get(w.id)
                .and_then(|s| s.get(server))
                .and_then(|runs| {
                    Stat::of(
                        runs.iter()
                            .filter_map(|r| {
                                Some(get(r, &["cpu", "other_s"])? / get(r, &["cpu", "window_s"])?)
                            })
                            .collect(),
                    )
                });
            match share {
                Some(s) => {
                    let _ = write!(out, " {:.2} |", s.median);
                }
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str("Errors over all runs (connections that failed a check or did not open):");
    for (name, n) in errors {
        let _ = write!(out, " {name} {n};");
    }
    out.push_str("\n\n");
    out.push_str(METHOD);
    out
}

const METHOD: &str = "## How it is measured

- `bench/run.sh [--rounds N] [--duration S] [--warmup S] [--workloads abcdefg]` builds everything,
  then runs round after round; within a round, each workload runs against every server in turn
  (A B C D E, A B C D E, …), each in a fresh server process pinned to CPU 0 with `taskset`,
  the load generator pinned to CPU 1, both at nice -10. Before each run the script waits (a
  while) for the machine to be quiet; a run during which other programs used more than
  `MAX_OTHER_LOAD` of a core is retried (up to `RETRIES` times) and the least disturbed attempt
  kept (the values are under Conditions).
- Peers, each written as its project's own example: tokio-tungstenite 0.30
  (`examples/echo-server.rs`: the read half forwarded into the write half; broadcast as
  `examples/server.rs`), fastwebsockets 0.10 (`examples/echo_server.rs`: hyper upgrade,
  current-thread runtime; broadcast with its split halves), Node's ws 8.23 (the README's echo
  and broadcast, without the optional native add-ons). All set TCP_NODELAY, as switchboard does.
  switchboard runs as `switchboard serve --mode echo|broadcast` with its defaults.
- The floor is `bench/peers/raw-echo/raw-echo.c`: a WebSocket echo minus the opening
  handshake and minus every check, one epoll loop that parses the client's frames (split
  across reads anywhere), takes the mask off and writes each back as a server frame, all the
  answers to one read in one write. `switchboard bench --raw` opens plain TCP connections and
  runs the same client on them as on the WebSocket rows (the handshake skipped), so the load
  generator does the same work per message on every row and the raw row is what the kernel
  and the load generator allow.
- Reading the rows: with 1 in flight (a) both sides wait on each other and every server pays
  a wake-up per message; on the pipelined rows (b, c) the load generator saturates its core
  first, so a server's throughput there says as much about how it batches its answers (and
  so how often the client must wake) as about its own cost: compare server CPU per message.
- Server CPU per message: utime + stime of the server process from `/proc/PID/stat` at the
  start and end of the measured window (10 ms ticks), divided by the messages counted in it.
- (e): the publisher keeps 8 messages out that not every subscriber has received (closed loop,
  so the server is measured at the rate it delivers, not the rate it drops); each message
  carries its sequence number and send time; subscribers check every byte and the order, and
  count skipped sequence numbers as missed.
- (f): the server's VmRSS before the first connection and 1 s after the last of 10,000 has
  opened and exchanged one 16-byte echo, divided by 10,000. The raw echo's row shows what the
  kernel keeps outside the process (nearly nothing in RSS: a 40-byte slot per connection).
- (g): 32 workers each connect, upgrade, and close (closing handshake included), over and over;
  the raw row is TCP connect and the closing handshake (the raw echo echoes the Close and shuts
  the connection down).
";

/// Draws four panels: throughput relative to the raw echo, CPU per message, idle memory, broadcast.
fn draw(results: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    const COLORS: [RGBColor; 6] = [
        RGBColor(0xd9, 0x48, 0x1c),
        RGBColor(0xf0, 0x9a, 0x3e),
        RGBColor(0x4c, 0x72, 0xb0),
        RGBColor(0x55, 0xa8, 0x68),
        RGBColor(0x81, 0x72, 0xb2),
        RGBColor(0x93, 0x93, 0x93),
    ];
    let root = SVGBackend::new(path, (1200, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(410);
    let (throughput, cpu) = top.split_horizontally(640);
    let (memory, broadcast) = bottom.split_horizontally(640);

    // Throughput as a fraction of the raw echo.
    let ids = ["a", "b", "c", "d", "g"];
    let labels = [
        "(a) 16 B ×1",
        "(b) 16 B ×16",
        "(c) 1 KiB ×16",
        "(d) 1 MiB",
        "(g) handshakes",
    ];
    let ws_servers = &SERVERS[..5];
    let mut bars = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let w = WORKLOADS
            .iter()
            .find(|w| w.id == *id)
            .expect("listed workload");
        let raw = stat(results, id, "raw", w.metric);
        for (j, (server, _)) in ws_servers.iter().enumerate() {
            if let Some(r) = ratio(stat(results, id, server, w.metric), raw) {
                bars.push((i, j, r));
            }
        }
    }
    let top_y = bars.iter().map(|b| b.2).fold(1.2f64, f64::max) * 1.1;
    grouped(
        &throughput,
        "Throughput ÷ raw echo (higher is better)",
        &labels,
        ws_servers.len(),
        &bars,
        0.0..top_y,
        false,
        &COLORS,
        Some(1.0),
    )?;

    // CPU per message, log scale.
    let ids = ["a", "b", "c"];
    let labels = ["(a) 16 B ×1", "(b) 16 B ×16", "(c) 1 KiB ×16"];
    let mut bars = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for (j, (server, _)) in SERVERS.iter().enumerate() {
            if let Some(s) = stat(results, id, server, &["cpu", "server_us_per_msg"]) {
                bars.push((i, j, s.median));
            }
        }
    }
    grouped(
        &cpu,
        "Server CPU µs per message (log, lower is better)",
        &labels,
        SERVERS.len(),
        &bars,
        0.05..100.0,
        true,
        &COLORS,
        None,
    )?;

    // Idle memory, log scale.
    let mut bars = Vec::new();
    for (j, (server, _)) in SERVERS.iter().enumerate() {
        if let Some(s) = stat(results, "f", server, &["memory", "per_connection_kib"]) {
            bars.push((0, j, s.median.max(0.01)));
        }
    }
    grouped(
        &memory,
        "(f) KiB RSS per idle connection (log, lower is better)",
        &["10,000 idle connections"],
        SERVERS.len(),
        &bars,
        0.01..1000.0,
        true,
        &COLORS,
        None,
    )?;

    // Broadcast deliveries per second, in millions.
    let mut bars = Vec::new();
    for (j, (server, _)) in ws_servers.iter().enumerate() {
        if let Some(s) = stat(results, "e", server, &["msgs_per_sec"]) {
            bars.push((0, j, s.median / 1e6));
        }
    }
    let top_y = bars.iter().map(|b| b.2).fold(0.1f64, f64::max) * 1.25;
    grouped(
        &broadcast,
        "(e) broadcast to 10,000: million deliveries/s",
        &["1 publisher, 10,000 subscribers"],
        ws_servers.len(),
        &bars,
        0.0..top_y,
        false,
        &COLORS,
        None,
    )?;

    // Legend along the bottom of the top half.
    let legend = root.titled("", ("sans-serif", 1))?;
    for (j, (_, name)) in SERVERS.iter().enumerate() {
        let x = 20 + j as i32 * 195;
        legend.draw(&Rectangle::new(
            [(x, 800), (x + 14, 814)],
            COLORS[j].filled(),
        ))?;
        legend.draw(&Text::new(
            name.to_string(),
            (x + 20, 801),
            ("sans-serif", 14),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// A grouped bar chart: `bars` are (group, series, value).
#[allow(clippy::too_many_arguments)]
fn grouped(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    groups: &[&str],
    series: usize,
    bars: &[(usize, usize, f64)],
    y: std::ops::Range<f64>,
    log: bool,
    colors: &[RGBColor],
    reference: Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = groups.len() as f64;
    let labels: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    let x_fmt = move |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-6 && (i as usize) < labels.len() {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    };
    let width = 0.8 / series as f64;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .margin_bottom(40)
        .x_label_area_size(30)
        .y_label_area_size(55);
    let draw_bar = |(g, s, v): &(usize, usize, f64), y0: f64| {
        let x0 = *g as f64 + 0.1 + *s as f64 * width;
        let color = colors[*s % colors.len()];
        (
            Rectangle::new([(x0, y0), (x0 + width * 0.92, *v)], color.filled()),
            Text::new(
                if *v >= 100.0 {
                    format!("{v:.0}")
                } else if *v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                },
                (x0, *v),
                ("sans-serif", 11).into_font().color(&BLACK),
            ),
        )
    };
    if log {
        let mut chart = builder.build_cartesian_2d(0f64..n, y.clone().log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() * 2 + 1)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v| format!("{v}"))
            .draw()?;
        for bar in bars {
            let (rect, text) = draw_bar(bar, y.start);
            chart.draw_series(std::iter::once(rect))?;
            chart.draw_series(std::iter::once(text))?;
        }
    } else {
        let mut chart = builder.build_cartesian_2d(0f64..n, y.clone())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() * 2 + 1)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .draw()?;
        if let Some(r) = reference {
            chart.draw_series(LineSeries::new([(0.0, r), (n, r)], BLACK.stroke_width(1)))?;
        }
        for bar in bars {
            let (rect, text) = draw_bar(bar, y.start);
            chart.draw_series(std::iter::once(rect))?;
            chart.draw_series(std::iter::once(text))?;
        }
    }
    Ok(())
}
