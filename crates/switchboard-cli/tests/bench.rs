//! `switchboard bench` against in-process servers and `switchboard serve`: correct echoes count,
//! wrong ones are caught; hub mode checks every offset.

mod support;

use std::process::Command;

use switchboard::{Message, Server};

/// Starts an echo server on a free port that answers message number `corrupt_every` (and every
/// multiple of it) with its last byte changed; 0 never corrupts.
fn spawn_echo(corrupt_every: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            let serve = server.serve(move |mut ws, _| async move {
                let mut n = 0;
                while let Some(Ok(message)) = ws.recv().await {
                    n += 1;
                    let message = match message {
                        Message::Binary(data) if corrupt_every > 0 && n % corrupt_every == 0 => {
                            let mut data = data.to_vec();
                            if let Some(last) = data.last_mut() {
                                *last ^= 1;
                            }
                            Message::Binary(data.into())
                        }
                        m if m.is_data() => m,
                        _ => continue,
                    };
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
            // The test process ends the server by exiting.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), serve).await;
        });
    });
    (rx.recv().unwrap(), thread)
}

/// What the server saw of one connection's handshake: the `X-Run` and `Origin` headers and
/// the subprotocol agreed.
type Handshake = (Option<String>, Option<String>, Option<String>);

/// Starts an echo server on a free port that speaks subprotocol `bench.v1` and records each
/// connection's [`Handshake`].
fn spawn_recording() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Handshake>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = Server::builder()
                .protocols(["bench.v1"])
                .bind("127.0.0.1:0")
                .await
                .unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            let serve = server.serve(move |mut ws, request| {
                let header = |name: &str| {
                    let value = request.headers().get(name)?;
                    Some(value.to_str().ok()?.to_owned())
                };
                let handshake = (
                    header("x-run"),
                    header("origin"),
                    ws.protocol().map(str::to_owned),
                );
                record.lock().unwrap().push(handshake);
                async move {
                    while let Some(Ok(message)) = ws.recv().await {
                        if message.is_data() && ws.send(message).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), serve).await;
        });
    });
    (rx.recv().unwrap(), seen)
}

fn bench(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .args(["--json", "--duration", "1s", "--warmup", "200ms"])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn checked_echoes_count_and_report_latency() {
    let (addr, _server) = spawn_echo(0);
    let url = format!("ws://{addr}/");
    let report = bench(&[&url, "-c", "4", "-m", "4", "--size", "100", "--binary"]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["latency_us"]["p99"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let mb = report["mb_per_sec"].as_f64().unwrap();
    let msgs = report["msgs_per_sec"].as_f64().unwrap();
    assert!((mb * 1e6 - msgs * 100.0).abs() < 1.0, "{report}");
}

#[test]
fn a_wrong_echo_is_an_error_and_ends_its_connection() {
    let (addr, _server) = spawn_echo(50);
    let url = format!("ws://{addr}/");
    let report = bench(&[&url, "-c", "2", "-m", "1", "--size", "64", "--binary"]);
    // Each connection fails at its 50th message, before the warm-up is over.
    assert_eq!(report["errors"], 2, "{report}");
    assert!(
        report["error_samples"][0]
            .as_str()
            .unwrap()
            .contains("differs from the message sent, from byte 63"),
        "{report}"
    );
    assert_eq!(report["messages"], 0, "{report}");
}

#[test]
fn idle_connections_are_held_and_counted() {
    let (addr, _server) = spawn_echo(0);
    let url = format!("ws://{addr}/");
    let pid = std::process::id().to_string();
    let report = bench(&[&url, "--mode", "idle", "-c", "20", "--server-pid", &pid]);
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["messages"], 20, "{report}");
    assert!(
        report["memory"]["rss_after_kib"].as_u64().unwrap() > 0,
        "{report}"
    );
}

#[test]
fn http2_puts_the_streams_per_connection_on_each_connection() {
    let (tx, rx) = std::sync::mpsc::channel();
    let _server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tls = switchboard::tls::ServerTls::self_signed(["localhost"]).unwrap();
            let server = Server::builder()
                .tls(tls)
                .bind("127.0.0.1:0")
                .await
                .unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            let serve = server.serve(|mut ws, _| async move {
                while let Some(Ok(message)) = ws.recv().await {
                    if message.is_data() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), serve).await;
        });
    });
    let addr = rx.recv().unwrap();
    let url = format!("wss://localhost:{}/", addr.port());
    let report = bench(&[
        &url,
        "--insecure",
        "--http2",
        "--streams-per-connection",
        "4",
        "-c",
        "10",
    ]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["http2"]["websockets"], 10, "{report}");
    assert_eq!(report["http2"]["connections"], 3, "{report}");
}

/// `-H`, `--origin` and `-s` mean what they mean to `connect`, and go out on every connection
/// bench opens.
#[test]
fn headers_origin_and_subprotocol_go_out_on_every_connection() {
    let (addr, seen) = spawn_recording();
    let url = format!("ws://{addr}/");
    let report = bench(&[
        &url,
        "--mode",
        "idle",
        "-c",
        "5",
        "-H",
        "X-Run: 7",
        "--origin",
        "https://chat.example",
        "-s",
        "bench.v1",
    ]);
    assert_eq!(report["errors"], 0, "{report}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    for handshake in seen.iter() {
        let expected = (
            Some("7".to_owned()),
            Some("https://chat.example".to_owned()),
            Some("bench.v1".to_owned()),
        );
        assert_eq!(handshake, &expected);
    }
}

/// `--origin` beside `-H 'Origin: …'` is a bad argument (exit status 2), not a silent choice.
#[test]
fn origin_given_twice_is_a_bad_argument() {
    for command in ["bench", "connect"] {
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([command, "ws://127.0.0.1:9/"])
            .args([
                "--origin",
                "https://a.example",
                "-H",
                "Origin: https://b.example",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--origin"), "{command}: {stderr}");
    }
}

/// Hub mode against `serve`: WebSocket and API publishers on two channels, every delivery's
/// offset and order checked, each publication of the window delivered once to each subscriber.
#[test]
fn hub_mode_checks_every_offset_and_counts_every_delivery() {
    let serve = support::Serve::start(&["--api-key", "bench-key"]);
    let url = serve.url();
    let api = format!(
        "{}/api/publish",
        url.replace("ws://", "http://").trim_end_matches("/ws")
    );
    let report = bench(&[
        &url,
        "--mode",
        "hub",
        "-c",
        "6",
        "--publishers",
        "2",
        "-m",
        "8",
        "--channel",
        "a",
        "--channel",
        "b",
        "--publish",
        &url,
        "--api-publish",
        &api,
        "--api-key",
        "bench-key",
    ]);
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["missed"], 0, "{report}");
    assert_eq!(report["hub"]["duplicates"], 0, "{report}");
    assert_eq!(report["hub"]["publishers"], 3, "{report}");
    // The hub's message frames, from WebSocket and API publishers alike, take the subscribers'
    // cheap path.
    assert_eq!(report["hub"]["parsed_in_full"], 0, "{report}");
    let published = report["published"].as_u64().unwrap();
    assert!(published > 0, "{report}");
    // Every subscriber follows both channels: each publication of the window, once to each.
    assert!(
        report["latency_us"]["p50"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(
        report["messages"].as_u64().unwrap(),
        published * 6,
        "{report}"
    );
}

/// A connection that fails is told as `connect` tells it: wss:// to a plain port gets the hint.
#[test]
fn a_failed_connection_is_explained_as_connect_explains_it() {
    let serve = support::Serve::start(&["--mode", "echo"]);
    let url = serve.url().replace("ws://", "wss://");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", &url, "--mode", "broadcast", "-c", "1", "-d", "1s"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the server does not speak TLS there") && stderr.contains("try ws://"),
        "{stderr}"
    );
}

/// `--raw` against bench/peers/raw-echo: each frame comes back unmasked, whatever its length
/// encoding (7, 16 or 64 bits; 70000 bytes also spans reads), and every echo checks.
#[test]
fn raw_echoes_of_every_length_check() {
    let echo = support::RawEcho::start();
    let runs: Vec<(&str, bool)> = vec![
        ("125", true),
        ("126", true),
        ("65535", true),
        ("65536", true),
        ("70000", true),
        ("1024", false),
    ];
    std::thread::scope(|scope| {
        let runs: Vec<_> = runs
            .iter()
            .map(|&(size, binary)| {
                let echo = &echo;
                scope.spawn(move || {
                    let mut args = vec![&echo.addr[..], "--raw", "-c", "2", "-m", "4"];
                    args.extend(["--size", size]);
                    if binary {
                        args.push("--binary");
                    }
                    (size, bench(&args))
                })
            })
            .collect();
        for run in runs {
            let (size, report) = run.join().unwrap();
            assert_eq!(report["errors"], 0, "{size} bytes: {report}");
            assert!(
                report["messages"].as_u64().unwrap() > 0,
                "{size} bytes: {report}"
            );
        }
    });
}

/// Idle and handshakes modes against the raw echo: a connection closes with the closing
/// handshake (the raw echo echoes the Close and shuts the connection down) and fails nothing.
#[test]
fn raw_idle_and_handshakes_close_cleanly() {
    let echo = support::RawEcho::start();
    let idle = bench(&[&echo.addr, "--raw", "--mode", "idle", "-c", "20"]);
    assert_eq!(idle["errors"], 0, "{idle}");
    assert_eq!(idle["messages"], 20, "{idle}");
    let cycles = bench(&[&echo.addr, "--raw", "--mode", "handshakes", "-c", "4"]);
    assert_eq!(cycles["errors"], 0, "{cycles}");
    assert!(cycles["messages"].as_u64().unwrap() > 0, "{cycles}");
}

/// The raw echo answers client frames split across reads at any byte, header included, with
/// the same frames unmasked (FIN and opcode kept), and shuts down after echoing a Close.
#[test]
fn raw_echo_answers_frames_split_anywhere() {
    use std::io::{Read, Write};

    use bytes::BytesMut;
    use switchboard::proto::frame::{FrameHeader, OpCode};
    use switchboard::proto::mask::apply_mask;

    let echo = support::RawEcho::start();
    let frames: Vec<(bool, OpCode, Vec<u8>)> = vec![
        (true, OpCode::Binary, vec![]),
        (true, OpCode::Binary, (0..125).map(|i| i as u8).collect()),
        (
            true,
            OpCode::Binary,
            (0..126).map(|i| (i * 7) as u8).collect(),
        ),
        (false, OpCode::Text, b"split ".to_vec()),
        (true, OpCode::Continuation, b"text".to_vec()),
        (
            true,
            OpCode::Binary,
            (0..65535).map(|i| (i * 3) as u8).collect(),
        ),
        (
            true,
            OpCode::Binary,
            (0..65536).map(|i| (i * 5) as u8).collect(),
        ),
        (true, OpCode::Close, vec![0x03, 0xe8]),
    ];
    // Each frame as its header and its payload, masked.
    let mut sent = Vec::new();
    let mut expected = BytesMut::new();
    for (i, (fin, opcode, payload)) in frames.iter().enumerate() {
        let mut header = FrameHeader::new(*opcode, payload.len() as u64);
        header.fin = *fin;
        header.encode(&mut expected);
        expected.extend_from_slice(payload);
        let key = [0x5a, i as u8 + 1, 0xc3, 0x17];
        header.mask = Some(key);
        let mut head = BytesMut::new();
        header.encode(&mut head);
        let mut body = payload.clone();
        apply_mask(&mut body, key, 0);
        sent.push((head, body));
    }

    let mut tcp = std::net::TcpStream::connect(&echo.addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut reader = tcp.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut received = Vec::new();
        // Up to the raw echo's shutdown after the Close.
        reader.read_to_end(&mut received).map(|_| received)
    });
    // A write and a pause, so that the raw echo reads each write apart: every header byte by
    // byte, each payload in pieces of 1 to 4093 bytes.
    let write = |tcp: &mut std::net::TcpStream, bytes: &[u8]| {
        tcp.write_all(bytes).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    for (head, body) in &sent {
        for byte in head.chunks(1) {
            write(&mut tcp, byte);
        }
        let mut rest = &body[..];
        for &piece in [1, 7, 1000, 4093].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(piece.min(rest.len()));
            write(&mut tcp, now);
            rest = later;
        }
    }
    let received = reading.join().unwrap().expect("the raw echo shuts down");
    assert_eq!(received.len(), expected.len());
    let differs = received.iter().zip(&expected[..]).position(|(a, b)| a != b);
    assert_eq!(differs, None, "the answer differs from byte {differs:?}");
}
