//! `switchboard connect`: a terminal WebSocket client, in the spirit of wscat and websocat.
//!
//! Lines typed (or piped) are sent as messages; messages received are printed. In a terminal
//! there is a prompt and received messages are marked `< `; piped, stdout carries only what was
//! received, one message per line, so scripts can read it. Binary messages are shown as hex.
//! Status (connected, closed) goes to stderr.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderName, HeaderValue, Version};
use switchboard::{CloseCode, ConnectOptions, DeflateConfig, Message, Sender};
use tokio::sync::mpsc;

use crate::client_proxy::ProxyArgs;
use crate::terminal::interrupt::Interrupt;
use crate::terminal::{Display, stdin_lines};

mod interactive;

/// Exit statuses, as `--help` lists them.
const EXIT_CLOSED_ABNORMALLY: u8 = 3;

#[derive(Parser, Debug)]
#[command(after_help = "\
Exit status: 0 when the connection closed normally (1000, 1001, or no code), 1 when it could \
not be opened or failed (I/O error, protocol error, no close frame), 2 for bad arguments, 3 when \
the server closed it with another code, 130 when a second Ctrl-C (143: SIGTERM) ended it at once.

At a terminal, the typed line is edited as in a shell: Left/Right, Home/End (Ctrl-A/Ctrl-E), \
Ctrl-W/Ctrl-U/Ctrl-K delete a word/to the start/to the end, Ctrl-Y pastes it back, Up/Down \
recall this session's lines (kept in memory only, never in a file), Ctrl-R searches them. \
Messages received are printed above the prompt, control characters escaped (\\x1b); the typed \
line stays as it is. Ctrl-C clears a typed line; on an empty line it closes (Close 1000, \
waiting for the server's Close), as does Ctrl-D. Once closing, Ctrl-C exits at once.

Examples:
  switchboard connect ws://127.0.0.1:8080/ws
  echo hello | switchboard connect ws://127.0.0.1:8080/
  switchboard connect ws://127.0.0.1:8080/ws -x '{\"op\":\"subscribe\",\"channel\":\"lobby\"}' -w 30
  switchboard connect --http2 -v --ca cert.pem wss://localhost:8443/ws
  switchboard connect --proxy http://ann:secret@proxy.lan:3128 wss://example.com/ws
  switchboard connect --hub --name ann ws://127.0.0.1:8080/ws -x 'subscribe lobby' -w 60")]
pub(crate) struct ConnectArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws
    url: String,
    /// Add a request header (repeat for more), e.g. -H 'Authorization: Bearer abc'
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Offer a subprotocol (repeat for more, in order of preference)
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// Send MESSAGE once connected (repeat for more), then close after --wait; stdin is not read
    #[arg(short = 'x', long = "execute", value_name = "MESSAGE")]
    execute: Vec<String>,
    /// Keep receiving for SECONDS after the last message was sent (after --execute, or at the
    /// end of input) before closing
    #[arg(short = 'w', long, value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_seconds)]
    wait: f64,
    /// Send lines and --execute messages as binary messages (their UTF-8 bytes)
    #[arg(short = 'b', long)]
    binary: bool,
    /// Send a ping every SECONDS (0: never)
    #[arg(short = 'p', long, value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_seconds)]
    ping_interval: f64,
    /// Print the pings and pongs received
    #[arg(long)]
    show_ping_pong: bool,
    /// Lines starting with '/' are commands: /ping [TEXT], /close [CODE [REASON]]
    #[arg(long)]
    slash: bool,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Print the proxy used, and the handshake response (status line and headers), to stderr
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

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {s:?}"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| format!("header name: {e}"))?;
    let value = HeaderValue::try_from(value.trim()).map_err(|e| format!("header value: {e}"))?;
    Ok((name, value))
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
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal(),
        args.no_color,
    );
    if args.hub {
        // The hub mode stops its input on the first Ctrl-C by itself; a second exits at once.
        let interrupt = Interrupt::new(|| {});
        let watching = interrupt.watch_signals();
        let hub = crate::hub_mode::HubArgs {
            url: args.url,
            name: args.name,
            token: args.token,
            lines: args
                .execute
                .is_empty()
                .then(|| typed_or_piped(&display, &interrupt)),
            execute: args.execute,
            wait: Duration::from_secs_f64(args.wait),
            display: display.clone(),
        };
        let exit = crate::hub_mode::run(hub, options).await;
        watching.abort();
        display.finish();
        return exit;
    }
    let (ws, response) = match switchboard::connect_with(&args.url, &options).await {
        Ok(connected) => connected,
        Err(e) => {
            eprintln!("error: cannot connect to {}: {e}", args.url);
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
    let interrupt = Interrupt::new({
        let sender = sender.clone();
        let display = display.clone();
        move || {
            display.status("closing (Ctrl-C again to exit at once)");
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

    let lines = args
        .execute
        .is_empty()
        .then(|| typed_or_piped(&display, &interrupt));
    let input = tokio::spawn(send_input(
        sender.clone(),
        lines,
        InputOptions::new(&args, display.clone()),
    ));
    let pinger = (args.ping_interval > 0.0).then(|| {
        let sender = sender.clone();
        let every = Duration::from_secs_f64(args.ping_interval);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticks.tick().await;
                if sender.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        })
    });
    drop(sender);

    let mut exit = Exit::Vanished;
    while let Some(message) = receiver.recv().await {
        match message {
            Ok(Message::Text(text)) => display.received(&text),
            Ok(Message::Binary(data)) => display.received(&hex(&data)),
            Ok(Message::Ping(data)) if args.show_ping_pong => {
                display.received(&control("ping", &data))
            }
            Ok(Message::Pong(data)) if args.show_ping_pong => {
                display.received(&control("pong", &data))
            }
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
    if let Some(pinger) = pinger {
        pinger.abort();
    }
    if matches!(exit, Exit::Vanished) {
        display.status("connection lost without a close frame");
    }
    display.finish();
    Ok(exit.code())
}

/// How the connection ended.
enum Exit {
    Closed(CloseCode),
    Failed,
    Vanished,
}

impl Exit {
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
        protocols: args.subprotocols.clone(),
        timeout: Duration::from_secs_f64(args.connect_timeout),
        deflate: args.deflate.then(DeflateConfig::default),
        http2: args.http2,
        ..ConnectOptions::default()
    };
    for (name, value) in &args.headers {
        options.headers.append(name.clone(), value.clone());
    }
    options.tls = crate::trust::client_tls(args.ca.as_deref(), args.insecure)?;
    options.proxy = args.proxy.for_url(&args.url)?;
    Ok(options)
}

struct InputOptions {
    execute: Vec<String>,
    wait: Duration,
    binary: bool,
    slash: bool,
    display: Display,
}

impl InputOptions {
    fn new(args: &ConnectArgs, display: Display) -> Self {
        Self {
            execute: args.execute.clone(),
            wait: Duration::from_secs_f64(args.wait),
            binary: args.binary,
            slash: args.slash,
            display,
        }
    }
}

/// The lines of the line editor at a terminal, else of stdin.
fn typed_or_piped(display: &Display, interrupt: &Interrupt) -> mpsc::Receiver<String> {
    if !display.interactive {
        return stdin_lines();
    }
    interactive::lines(display, interrupt.clone()).unwrap_or_else(|e| {
        eprintln!("note: no line editing on this terminal ({e:#}); reading plain lines");
        display.prompt();
        stdin_lines()
    })
}

/// Sends the --execute messages, or `lines` (typed or piped); at the end, waits and closes.
async fn send_input(sender: Sender, lines: Option<mpsc::Receiver<String>>, options: InputOptions) {
    let display = &options.display;
    if let Some(mut lines) = lines {
        while let Some(line) = lines.recv().await {
            if !send_line(&sender, &line, &options).await {
                return;
            }
            display.prompt();
        }
    } else {
        for message in &options.execute {
            if sender.send(data(message, options.binary)).await.is_err() {
                return;
            }
        }
    }
    tokio::time::sleep(options.wait).await;
    let _ = sender.close(CloseCode::NORMAL, "");
}

/// Sends one line (or runs it, with --slash); false once the connection is gone or closing.
async fn send_line(sender: &Sender, line: &str, options: &InputOptions) -> bool {
    let message = match line.strip_prefix('/').filter(|_| options.slash) {
        Some(command) => match parse_command(command) {
            Ok(Command::Ping(text)) => Message::Ping(Bytes::from(text)),
            Ok(Command::Close(code, reason)) => {
                let _ = sender.close(code, reason);
                return false;
            }
            Err(e) => {
                options.display.status(&e);
                return true;
            }
        },
        None => data(line, options.binary),
    };
    sender.send(message).await.is_ok()
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

fn control(kind: &str, data: &[u8]) -> String {
    if data.is_empty() {
        format!("[{kind}]")
    } else {
        format!("[{kind}] {}", hex(data))
    }
}

fn hex(data: &[u8]) -> String {
    data.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_commands_parse() {
        let (name, value) = parse_header("X-Trace:  abc ").unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("x-trace", "abc"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
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
        assert_eq!(hex(b"\x00\xffA"), "00 ff 41");
    }
}
