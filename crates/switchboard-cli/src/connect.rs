//! `switchboard connect`: a terminal WebSocket client, in the spirit of wscat and websocat.
//!
//! Lines typed (or piped) are sent as messages; messages received are printed. In a terminal
//! there is a prompt and received messages are marked `< `; piped, stdout carries only what was
//! received, one message per line, so scripts can read it (`connect/pipe.rs`, with the raw
//! `--binary` and the `--jsonl` log). Binary messages are shown as hex. Status (connected,
//! closed) goes to stderr, and a failure to connect is explained (`connect/errors.rs`).

pub(crate) mod errors;
mod interactive;
mod jsonl;
mod pipe;
mod show;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::Version;
use switchboard::{CloseCode, CloseFrame, ConnectOptions, DeflateConfig, Message, Sender};
use tokio::sync::mpsc;

use self::pipe::{Format, Input, Output, Split};
use crate::client_proxy::ProxyArgs;
use crate::handshake_args::HandshakeArgs;
use crate::terminal::interrupt::Interrupt;
use crate::terminal::{Display, stdin_lines};

/// Exit statuses, as `--help` lists them.
const EXIT_CLOSED_ABNORMALLY: u8 = 3;
const EXIT_BAD_INPUT: u8 = 4;

#[derive(Parser, Debug)]
#[command(after_help = "\
Exit status: 0 when the connection closed normally (1000, 1001, no code, or the code you sent \
with /close, echoed), or when stdout closed (a reader such as `head` exited: the connection \
is closed with 1001); 1 when it could not be opened or failed (I/O error, protocol error, no \
close frame, stdout unwritable); 2 for bad arguments; 3 when the server closed it with another \
code; 4 when a line of stdin is not UTF-8 (the lines before it are sent; --binary sends bytes); \
130 when a second Ctrl-C (143: SIGTERM) ended it at once.

At a terminal, the typed line is edited as in a shell: Left/Right, Home/End (Ctrl-A/Ctrl-E), \
Ctrl-W/Ctrl-U/Ctrl-K delete a word/to the start/to the end, Ctrl-Y pastes it back, Up/Down \
recall this session's lines (kept in memory only, never in a file), Ctrl-R searches them. \
Messages received are printed above the prompt, control characters escaped (\\x1b); the typed \
line stays as it is. Ctrl-C clears a typed line; on an empty line it closes (Close 1000, \
waiting for the server's Close), as does Ctrl-D. Once closing, Ctrl-C exits at once.

Piped: each line of stdin is a text message and each message received a line of stdout \
(binary as hex). --binary: stdin's bytes go as binary messages, one per read of up to 64 KiB \
(or every N bytes with --split-bytes N), and received data is written raw. --jsonl: every \
message in and out is one JSON object a line: timestamp_ms (Unix epoch), direction (in/out), \
type (text/binary/ping/pong/close), payload (text as is, binary base64), code and reason for \
a close.

Examples:
  switchboard connect ws://127.0.0.1:8080/ws
  echo hello | switchboard connect ws://127.0.0.1:8080/
  head -c 1000 /dev/urandom | switchboard connect --binary ws://127.0.0.1:8080/ > echoed.bin
  switchboard connect --jsonl ws://127.0.0.1:8080/ -x hi | jq -r .payload
  switchboard connect ws://127.0.0.1:8080/ws -x '{\"op\":\"subscribe\",\"channel\":\"lobby\"}' -w 30
  switchboard connect --http2 -v --ca cert.pem wss://localhost:8443/ws
  switchboard connect --origin https://chat.example -s chat.v2 ws://127.0.0.1:8080/ws
  switchboard connect --proxy http://ann:secret@proxy.lan:3128 wss://example.com/ws
  switchboard connect --hub --name ann ws://127.0.0.1:8080/ws -x 'subscribe lobby' -w 60")]
pub(crate) struct ConnectArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws
    url: String,
    #[command(flatten)]
    handshake: HandshakeArgs,
    /// Send MESSAGE once connected (repeat for more), then close after --wait; stdin is not read
    #[arg(short = 'x', long = "execute", value_name = "MESSAGE")]
    execute: Vec<String>,
    /// Keep receiving for SECONDS after the last message was sent (after --execute, or at the
    /// end of input) before closing
    #[arg(short = 'w', long, value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_seconds)]
    wait: f64,
    /// Raw bytes: stdin is sent as binary messages, one per read (up to 64 KiB), and
    /// --execute messages as binary (their UTF-8 bytes); data received is written to stdout
    /// as it is, with no hex and no newline
    #[arg(short = 'b', long, conflicts_with = "slash")]
    binary: bool,
    /// With --binary: cut stdin into messages of N bytes (the last may be shorter), whatever
    /// the reads return (at most 64 MiB); e.g. a file as one message with N at least its size
    #[arg(
        long,
        value_name = "N",
        requires = "binary",
        value_parser = clap::value_parser!(u32).range(1..=64 << 20)
    )]
    split_bytes: Option<u32>,
    /// Write every message sent and received to stdout as one JSON object a line (see below)
    #[arg(long, conflicts_with = "hub")]
    jsonl: bool,
    /// Send a ping every SECONDS (0: never)
    #[arg(short = 'p', long, value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_seconds)]
    ping_interval: f64,
    /// Print the pings and pongs received (--jsonl always does)
    #[arg(long)]
    show_ping_pong: bool,
    /// Lines starting with '/' are commands: /ping [TEXT], /close [CODE [REASON]]
    #[arg(long)]
    slash: bool,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Print the proxy used, and the handshake response (status line and headers; and the body
    /// of a refusal), to stderr
    #[arg(short, long)]
    verbose: bool,
    /// Offer permessage-deflate (compression), as browsers do
    #[arg(long)]
    deflate: bool,
    /// No colour at a terminal (as when NO_COLOR is set)
    #[arg(long)]
    no_color: bool,
    /// For wss://, open the WebSocket over HTTP/2 (RFC 8441) when the server takes it, as
    /// browsers do; otherwise (a note on stderr says so) over HTTP/1.1
    #[arg(long)]
    http2: bool,
    /// Give up connecting after SECONDS
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds)]
    connect_timeout: f64,
    /// For wss://, trust the certificates of this PEM file instead of the Mozilla roots
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// For wss://, do not verify the server's certificate (development only: anyone on the
    /// path can impersonate the server)
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Speak the hub's protocol: lines are commands (subscribe CH, unsubscribe CH, publish CH
    /// JSON, presence CH, history CH [N]), events are printed as JSON lines, and a lost
    /// connection comes back with nothing missed
    #[arg(long, conflicts_with_all = ["binary", "slash", "subprotocols"])]
    hub: bool,
    /// With --hub: the name to go by, when not authenticated by a token
    #[arg(long, requires = "hub")]
    name: Option<String>,
    /// With --hub: a JWT naming the user (it is not renewed: it must stay valid for the
    /// session)
    #[arg(long, requires = "hub")]
    token: Option<String>,
}

/// Seconds, as every duration flag reads them (`2`, `1.5s`, `500ms`).
pub(crate) fn parse_seconds(s: &str) -> Result<f64, String> {
    crate::units::parse_span(s).map(|duration| duration.as_secs_f64())
}

pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let options = connect_options(&args)?;
    if args.verbose {
        match &options.proxy {
            Some(proxy) => eprintln!("proxy: {proxy}"),
            None => eprintln!("proxy: none"),
        }
    }
    let display = Display::new(
        args.execute.is_empty()
            && !args.binary
            && !args.jsonl
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal(),
        args.no_color,
    );
    if args.hub {
        // The hub mode stops its input on the first Ctrl-C by itself; a second exits at once.
        let interrupt = Interrupt::new(|| {});
        let watching = interrupt.watch_signals();
        let not_utf8 = Arc::new(AtomicBool::new(false));
        let hub = crate::hub_mode::HubArgs {
            url: args.url,
            name: args.name,
            token: args.token,
            lines: args
                .execute
                .is_empty()
                .then(|| typed_or_piped(&display, &interrupt, &not_utf8)),
            execute: args.execute,
            wait: Duration::from_secs_f64(args.wait),
            display: display.clone(),
        };
        let exit = crate::hub_mode::run(hub, options).await;
        watching.abort();
        display.finish();
        if not_utf8.load(Ordering::Relaxed) {
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
        return exit;
    }
    let (ws, response) = match switchboard::connect_with(&args.url, &options).await {
        Ok(connected) => connected,
        Err(e) => {
            if let Some(refusal) = errors::refusal(&e).filter(|_| args.verbose) {
                eprint!("{refusal}");
            }
            eprintln!(
                "error: cannot connect to {}: {}",
                args.url,
                errors::explain(&args.url, &e, args.verbose)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.http2 && response.version() != Version::HTTP_2 {
        let why = if args.url.starts_with("wss://") {
            "the server does not take WebSockets over HTTP/2"
        } else {
            "HTTP/2 is for wss:// only"
        };
        eprintln!("note: {why}; connected over HTTP/1.1");
    }
    if args.verbose {
        eprintln!("{:?} {}", response.version(), response.status());
        for (name, value) in response.headers() {
            eprintln!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
    }
    let protocol = ws
        .protocol()
        .map(|p| format!(" (subprotocol {p})"))
        .unwrap_or_default();
    let agreed = ws.deflate().map(|params| params.to_header());
    let (sender, mut receiver) = ws.split();
    let format = if args.jsonl {
        Format::Jsonl
    } else if args.binary {
        Format::Raw
    } else {
        Format::Lines
    };
    let output = Output::new(format, args.show_ping_pong || args.jsonl, sender.clone());
    let interrupt = Interrupt::new({
        let (sender, display, output) = (sender.clone(), display.clone(), output.clone());
        move || {
            display.status("closing (Ctrl-C again to exit at once)");
            output.sent(&Message::Close(Some(CloseFrame::new(
                CloseCode::NORMAL,
                "",
            ))));
            let _ = sender.close(CloseCode::NORMAL, "");
        }
    });
    // Listening before saying "connected": a Ctrl-C from then on closes gracefully.
    let watching = interrupt.watch_signals();
    if display.interactive {
        eprintln!(
            "connected to {}{protocol}; type lines to send, Ctrl-D or Ctrl-C to close",
            args.url
        );
    } else {
        eprintln!("connected to {}{protocol}", args.url);
    }
    if let Some(agreed) = agreed {
        eprintln!("compression: {}", agreed.to_str().unwrap_or_default());
    } else if args.deflate {
        eprintln!("compression: declined by the server");
    }

    let watcher = (!display.interactive).then(|| tokio::spawn(output.clone().watch()));
    let ended = Arc::new(OnceLock::new());
    let typed = (args.execute.is_empty() && display.interactive)
        .then(|| typed_or_piped(&display, &interrupt, &Arc::default()));
    let input = tokio::spawn(send_input(
        sender.clone(),
        typed,
        InputOptions::new(&args, display.clone(), output.clone(), ended.clone()),
    ));
    let pinger = (args.ping_interval > 0.0).then(|| {
        let sender = sender.clone();
        let output = output.clone();
        let every = Duration::from_secs_f64(args.ping_interval);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticks.tick().await;
                let ping = Message::Ping(Bytes::new());
                output.sent(&ping);
                if sender.send(ping).await.is_err() {
                    return;
                }
            }
        })
    });
    drop(sender);

    let mut exit = Exit::Vanished;
    while let Some(message) = receiver.recv().await {
        if let Ok(message) = &message {
            if !display.interactive {
                output.received(message);
            } else if let Some(line) = show::line(message, args.show_ping_pong) {
                display.received(&line);
            }
        }
        match message {
            Ok(Message::Close(frame)) => {
                exit = match frame {
                    Some(f) => {
                        display.status(&format!("closed: {} {}", f.code, f.reason));
                        Exit::Closed(f.code)
                    }
                    None => {
                        display.status("closed");
                        Exit::Closed(CloseCode::NO_STATUS)
                    }
                };
            }
            Ok(_) => {}
            Err(e) => {
                display.status(&format!("error: {e}"));
                exit = Exit::Failed;
            }
        }
    }
    input.abort();
    watching.abort();
    for task in [pinger, watcher].into_iter().flatten() {
        task.abort();
    }
    if matches!(exit, Exit::Vanished) {
        display.status("connection lost without a close frame");
    }
    display.finish();
    Ok(match (ended.get(), output.gone()) {
        (Some(InputEnd::NotUtf8), _) => ExitCode::from(EXIT_BAD_INPUT),
        (Some(InputEnd::Failed), _) => ExitCode::FAILURE,
        (_, Some(why)) if why != std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        // The server echoed the code the user closed with: what was asked for.
        (Some(InputEnd::Closed(sent)), _) if exit.is_closed_with(*sent) => ExitCode::SUCCESS,
        _ => exit.code(),
    })
}

/// How the sending side ended the connection, when it did.
enum InputEnd {
    /// With `/close CODE`, or at the end of input (1000).
    Closed(CloseCode),
    /// At a line of stdin that is not UTF-8.
    NotUtf8,
    /// When stdin could not be read.
    Failed,
}

/// How the connection ended.
enum Exit {
    Closed(CloseCode),
    Failed,
    Vanished,
}

impl Exit {
    fn is_closed_with(&self, sent: CloseCode) -> bool {
        matches!(self, Self::Closed(code) if *code == sent)
    }

    fn code(&self) -> ExitCode {
        match self {
            Self::Closed(CloseCode::NORMAL | CloseCode::GOING_AWAY | CloseCode::NO_STATUS) => {
                ExitCode::SUCCESS
            }
            Self::Closed(_) => ExitCode::from(EXIT_CLOSED_ABNORMALLY),
            Self::Failed | Self::Vanished => ExitCode::FAILURE,
        }
    }
}

/// Everything about the connection besides the URL.
fn connect_options(args: &ConnectArgs) -> anyhow::Result<ConnectOptions> {
    let mut options = ConnectOptions {
        timeout: Duration::from_secs_f64(args.connect_timeout),
        deflate: args.deflate.then(DeflateConfig::default),
        http2: args.http2,
        ..ConnectOptions::default()
    };
    args.handshake.apply(&mut options);
    options.tls = crate::trust::client_tls(args.ca.as_deref(), args.insecure)?;
    options.proxy = args.proxy.for_url(&args.url)?;
    Ok(options)
}

struct InputOptions {
    execute: Vec<String>,
    wait: Duration,
    binary: bool,
    split: Split,
    slash: bool,
    display: Display,
    output: Output,
    ended: Arc<OnceLock<InputEnd>>,
}

impl InputOptions {
    fn new(
        args: &ConnectArgs,
        display: Display,
        output: Output,
        ended: Arc<OnceLock<InputEnd>>,
    ) -> Self {
        Self {
            execute: args.execute.clone(),
            wait: Duration::from_secs_f64(args.wait),
            binary: args.binary,
            split: match (args.binary, args.split_bytes) {
                (_, Some(size)) => Split::Bytes(size as usize),
                (true, None) => Split::Reads,
                (false, None) => Split::Lines,
            },
            slash: args.slash,
            display,
            output,
            ended,
        }
    }

    /// Closes the connection from this side, first recording why for the exit status.
    fn close(&self, sender: &Sender, end: InputEnd, code: CloseCode, reason: String) {
        let _ = self.ended.set(end);
        self.output
            .sent(&Message::Close(Some(CloseFrame::new(code, reason.clone()))));
        let _ = sender.close(code, reason);
    }
}

/// The lines of the line editor at a terminal (plain lines if it cannot start there), else of
/// stdin, which end at a line that is not UTF-8 (said on stderr, and `not_utf8` set).
fn typed_or_piped(
    display: &Display,
    interrupt: &Interrupt,
    not_utf8: &Arc<AtomicBool>,
) -> mpsc::Receiver<String> {
    if !display.interactive {
        return piped_lines(not_utf8.clone());
    }
    interactive::lines(display, interrupt.clone()).unwrap_or_else(|e| {
        eprintln!("note: no line editing on this terminal ({e:#}); reading plain lines");
        display.prompt();
        stdin_lines()
    })
}

/// The lines of stdin (`pipe::stdin`), up to one that is not UTF-8 or a failed read.
fn piped_lines(not_utf8: Arc<AtomicBool>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    let mut input = pipe::stdin(Split::Lines);
    tokio::spawn(async move {
        while let Some(input) = input.recv().await {
            match input {
                Input::Line(line) => {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                Input::Bytes(_) => {}
                Input::NotUtf8 { line } => {
                    eprintln!("error: stdin line {line} is not UTF-8");
                    not_utf8.store(true, Ordering::Relaxed);
                    return;
                }
                Input::Failed(e) => {
                    eprintln!("error: cannot read stdin: {e}");
                    return;
                }
            }
        }
    });
    rx
}

/// Sends the --execute messages, or the `typed` lines at a terminal, or stdin (`pipe::stdin`);
/// at the end, waits and closes.
async fn send_input(sender: Sender, typed: Option<mpsc::Receiver<String>>, options: InputOptions) {
    let display = &options.display;
    if !options.execute.is_empty() {
        for message in &options.execute {
            if !send(&sender, data(message, options.binary), &options).await {
                return;
            }
        }
    } else if let Some(mut lines) = typed {
        while let Some(line) = lines.recv().await {
            if !send_line(&sender, &line, &options).await {
                return;
            }
            display.prompt();
        }
    } else {
        let mut input = pipe::stdin(options.split);
        while let Some(input) = input.recv().await {
            let sent = match input {
                Input::Line(line) => send_line(&sender, &line, &options).await,
                Input::Bytes(bytes) => send(&sender, Message::Binary(bytes), &options).await,
                Input::NotUtf8 { line } => {
                    eprintln!("error: stdin line {line} is not UTF-8; use --binary to send bytes");
                    let reason = "input is not utf-8".to_owned();
                    options.close(&sender, InputEnd::NotUtf8, CloseCode::NORMAL, reason);
                    return;
                }
                Input::Failed(e) => {
                    eprintln!("error: cannot read stdin: {e}");
                    let reason = "input failed".to_owned();
                    options.close(&sender, InputEnd::Failed, CloseCode::NORMAL, reason);
                    return;
                }
            };
            if !sent {
                return;
            }
        }
    }
    tokio::time::sleep(options.wait).await;
    options.close(
        &sender,
        InputEnd::Closed(CloseCode::NORMAL),
        CloseCode::NORMAL,
        String::new(),
    );
}

/// Sends `message` (and logs it with --jsonl); false once the connection is gone or closing.
async fn send(sender: &Sender, message: Message, options: &InputOptions) -> bool {
    options.output.sent(&message);
    sender.send(message).await.is_ok()
}

/// Sends one line (or runs it, with --slash); false once the connection is gone or closing.
async fn send_line(sender: &Sender, line: &str, options: &InputOptions) -> bool {
    let message = match line.strip_prefix('/').filter(|_| options.slash) {
        Some(command) => match parse_command(command) {
            Ok(Command::Ping(text)) => Message::Ping(Bytes::from(text)),
            Ok(Command::Close(code, reason)) => {
                options.close(sender, InputEnd::Closed(code), code, reason);
                return false;
            }
            Err(e) => {
                options.display.status(&e);
                return true;
            }
        },
        None => data(line, options.binary),
    };
    send(sender, message, options).await
}

enum Command {
    Ping(String),
    Close(CloseCode, String),
}

fn parse_command(command: &str) -> Result<Command, String> {
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    match name {
        "ping" if rest.len() <= 125 => Ok(Command::Ping(rest.to_owned())),
        "ping" => Err("a ping carries at most 125 bytes".into()),
        "close" => {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code = match code {
                "" => CloseCode::NORMAL,
                code => CloseCode(
                    code.parse()
                        .map_err(|_| format!("bad close code {code:?}"))?,
                ),
            };
            if !code.is_allowed_on_wire() {
                return Err(format!("close code {code} may not be sent"));
            }
            Ok(Command::Close(code, reason.to_owned()))
        }
        _ => Err(format!(
            "unknown command /{name}; commands: /ping [TEXT], /close [CODE [REASON]]"
        )),
    }
}

fn data(text: &str, binary: bool) -> Message {
    if binary {
        Message::Binary(Bytes::copy_from_slice(text.as_bytes()))
    } else {
        Message::text(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert!(matches!(parse_command("ping hi"), Ok(Command::Ping(t)) if t == "hi"));
        assert!(matches!(
            parse_command("close"),
            Ok(Command::Close(CloseCode::NORMAL, _))
        ));
        assert!(
            matches!(parse_command("close 4000 bye now"), Ok(Command::Close(CloseCode(4000), r)) if r == "bye now")
        );
        assert!(parse_command("close 1005").is_err());
        assert!(parse_command("close abc").is_err());
        assert!(parse_command("dance").is_err());
    }
}
