//! `switchboard bench`: a load generator that measures a WebSocket server.
//!
//! Modes:
//! - `echo`: N connections, each keeping K messages in flight (1: every message waits for its
//!   echo, latency-bound; more: pipelined). Every echo is compared with what was sent (kind,
//!   length, content, order); only echoes that match count.
//! - `broadcast`: one publisher and N subscribers against a server that sends every message
//!   to every other client (`switchboard serve --mode broadcast`): deliveries per second and
//!   publish-to-receive latency.
//! - `idle`: opens N connections, exchanges one message on each, and holds them (for memory
//!   measurements).
//! - `handshakes`: N workers connect, upgrade and close, over and over.
//! - `hub`: publishers and N subscribers over the hub protocol, on one node or several: every
//!   subscriber's offsets checked (each once, in order), deliveries per second and
//!   publish-to-deliver latency.
//!
//! Each mode runs a warm-up, then a measured window. With `--server-pid` the server's CPU time
//! over the window (and in `idle` mode its memory) is read from `/proc` and reported per message.
//! With `--raw` the target is a raw echo (`bench/peers/raw-echo`) instead of a WebSocket
//! server: a WebSocket server minus the opening handshake, that answers each frame unmasked and
//! does nothing else. The connections skip the handshake and are otherwise the same clients
//! ([`open`]), so the load generator costs the same per message as against a WebSocket server,
//! and the row measures the floor: what the kernel and this load generator allow.
//!
//! The files: [`args`] (the command line), [`open`] (opening connections), the workloads
//! ([`echo`], [`broadcast`], [`connections`] for idle and handshakes, [`hub`]), [`window`] (warm-up
//! and measured window), [`stats`] (errors, latencies), [`probe`] (the server's CPU and memory
//! from `/proc`), [`payload`], [`progress`] and [`report`] (the result, as text or JSON).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

mod args;
mod broadcast;
mod connections;
mod echo;
mod hub;
mod open;
mod payload;
pub(crate) mod probe;
mod progress;
mod report;
mod stats;
mod window;

pub(crate) use args::BenchArgs;
use args::Mode;

/// Runs the benchmark on a runtime of its own (sized by `--threads`) and prints the result.
pub(crate) fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    open::configure(&args)?;
    let runtime = match args.threads {
        0 => bail!("--threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    let mut report = runtime.block_on(async {
        match args.mode {
            Mode::Echo => echo::run(&args).await,
            Mode::Broadcast => broadcast::run(&args).await,
            Mode::Idle => connections::idle(&args).await,
            Mode::Handshakes => connections::handshakes(&args).await,
            Mode::Hub => hub::run(&args).await,
        }
    })?;
    // Connections still closing are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if args.deflate {
        report.deflate_agreed = Some(open::deflate_agreed());
    }
    if args.http2 {
        let (websockets, connections) = open::http2_opened();
        report.http2 = Some(report::Http2 {
            websockets,
            connections,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(if report.messages > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
