//! `switchboard connect --hub`: the hub's channels from a terminal or a script, on the Rust
//! client (`switchboard-client`), so a dropped connection comes back by itself and every
//! subscription resumes with nothing missed or repeated.
//!
//! Lines are commands (`subscribe CH`, `unsubscribe CH`, `publish CH JSON`, `presence CH`,
//! `history CH [N]`); what the hub sends is printed as one JSON object per line on stdout;
//! connection changes and errors go to stderr (above the prompt, at a terminal). Typed at a
//! terminal, the lines come from the line editor (`connect/interactive.rs`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchboard::ConnectOptions;
use switchboard_client::{
    ClientError, ClientInfo, ClientOptions, Event, HubClient, Publication, State, Subscription,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::terminal::Display;

/// The commands, as a typo's error lists them.
const COMMANDS: &str = "subscribe CH, unsubscribe CH, publish CH JSON, presence CH, history CH [N]";

/// What the hub mode needs of `connect`'s arguments.
pub(crate) struct HubArgs {
    pub(crate) url: String,
    pub(crate) name: Option<String>,
    pub(crate) token: Option<String>,
    /// The lines typed or piped; none with --execute.
    pub(crate) lines: Option<mpsc::Receiver<String>>,
    pub(crate) execute: Vec<String>,
    pub(crate) wait: Duration,
    pub(crate) display: Display,
}

pub(crate) async fn run(args: HubArgs, connect: ConnectOptions) -> anyhow::Result<ExitCode> {
    let mut options = ClientOptions::default().connect_options(connect);
    if let Some(name) = &args.name {
        options = options.name(name);
    }
    if let Some(token) = &args.token {
        options = options.token(token);
    }
    let client = match HubClient::connect(&args.url, options).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {}: {e}", args.url);
            return Ok(ExitCode::FAILURE);
        }
    };
    let display = args.display;
    let watching = tokio::spawn(watch_state(client.clone(), display.clone()));
    let (lines, mut printed) = mpsc::unbounded_channel::<String>();
    let mut session = Session {
        client: client.clone(),
        lines,
        readers: HashMap::new(),
        display: display.clone(),
    };
    let printer = tokio::spawn({
        let display = display.clone();
        async move {
            while let Some(line) = printed.recv().await {
                display.received(&line);
            }
        }
    });
    display.prompt();
    if let Some(mut input) = args.lines {
        loop {
            tokio::select! {
                line = input.recv() => match line {
                    Some(line) => session.run(&line).await,
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => break,
            }
            display.prompt();
        }
    } else {
        for line in &args.execute {
            session.run(line).await;
        }
    }
    tokio::select! {
        () = tokio::time::sleep(args.wait) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let stopped = match &*client.state().borrow() {
        State::Closed(Some(why)) => Some(why.clone()),
        _ => None,
    };
    client.close();
    for (_, reader) in session.readers.drain() {
        reader.abort();
    }
    drop(session);
    let _ = printer.await;
    watching.abort();
    Ok(match stopped {
        Some(why) => {
            eprintln!("error: {why}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

/// The client and the subscriptions being printed.
struct Session {
    client: HubClient,
    lines: mpsc::UnboundedSender<String>,
    readers: HashMap<String, JoinHandle<()>>,
    /// Where status lines go: stderr, or above the line editor's prompt.
    display: Display,
}

impl Session {
    /// Runs one command line; errors go to stderr.
    async fn run(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if let Err(e) = self.command(line).await {
            self.display.status(&format!("error: {e}"));
        }
    }

    async fn command(&mut self, line: &str) -> Result<(), String> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (channel, rest) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
        let failed = |e: ClientError| e.to_string();
        if channel.is_empty() {
            return Err(format!("{verb}: which channel? Commands: {COMMANDS}"));
        }
        match verb {
            "subscribe" => {
                let subscription = self.client.subscribe(channel).await.map_err(failed)?;
                let reader = tokio::spawn(print_events(subscription, self.lines.clone()));
                self.readers.insert(channel.to_owned(), reader);
                self.display.status(&format!("subscribed to {channel}"));
            }
            "unsubscribe" => match self.readers.remove(channel) {
                // Dropping the subscription unsubscribes.
                Some(reader) => {
                    reader.abort();
                    self.display.status(&format!("unsubscribed from {channel}"));
                }
                None => return Err(format!("not subscribed to {channel}")),
            },
            "publish" => {
                let data: Box<RawValue> = serde_json::from_str(rest.trim()).map_err(|e| {
                    format!("publish {channel} JSON: the data is not JSON ({e}); e.g. publish {channel} {{\"text\":\"hi\"}}")
                })?;
                let offset = self.client.publish(channel, &data).await.map_err(failed)?;
                let ack = json!({"type": "ack", "channel": channel, "offset": offset});
                let _ = self.lines.send(ack.to_string());
            }
            "presence" => {
                let clients = self.client.presence(channel).await.map_err(failed)?;
                let clients: Vec<Value> = clients.iter().map(client).collect();
                let line = json!({"type": "presence", "channel": channel, "clients": clients});
                let _ = self.lines.send(line.to_string());
            }
            "history" => {
                let limit =
                    match rest.trim() {
                        "" => None,
                        n => Some(n.parse::<usize>().map_err(|_| {
                            format!("history {channel} [N]: N is a count, not {n:?}")
                        })?),
                    };
                let history = self.client.history(channel, limit).await.map_err(failed)?;
                for publication in &history.publications {
                    let _ = self.lines.send(message(channel, publication).to_string());
                }
                let position = json!({
                    "type": "history",
                    "channel": channel,
                    "epoch": history.position.epoch,
                    "offset": history.position.offset,
                });
                let _ = self.lines.send(position.to_string());
            }
            _ => return Err(format!("unknown command {verb:?}; commands: {COMMANDS}")),
        }
        Ok(())
    }
}

fn client(info: &ClientInfo) -> Value {
    let mut value = json!({"user": info.user, "conn": info.conn});
    if let Some(extra) = &info.info {
        value["info"] = serde_json::from_str(extra.get()).unwrap_or(Value::Null);
    }
    value
}

fn message(channel: &str, publication: &Publication) -> Value {
    json!({
        "type": "message",
        "channel": channel,
        "offset": publication.offset,
        "time": publication.time,
        "from": client(&publication.from),
        "data": serde_json::from_str::<Value>(publication.data.get()).unwrap_or(Value::Null),
    })
}

/// Prints a subscription's events until it ends.
async fn print_events(mut subscription: Subscription, lines: mpsc::UnboundedSender<String>) {
    let channel = subscription.channel().to_owned();
    while let Some(event) = subscription.next().await {
        let line = match event {
            Event::Message(publication) => message(&channel, &publication),
            Event::Join(info) => {
                json!({"type": "join", "channel": channel, "client": client(&info)})
            }
            Event::Leave(info) => {
                json!({"type": "leave", "channel": channel, "client": client(&info)})
            }
            Event::Recovered { missed } => {
                json!({"type": "recovered", "channel": channel, "missed": missed})
            }
            Event::Gap {
                code,
                reason,
                position,
            } => json!({
                "type": "gap", "channel": channel, "code": code, "reason": reason,
                "epoch": position.epoch, "offset": position.offset,
            }),
            Event::Unsubscribed { code, reason } => {
                json!({"type": "unsubscribed", "channel": channel, "code": code, "reason": reason})
            }
            _ => continue,
        };
        if lines.send(line.to_string()).is_err() {
            return;
        }
    }
}

/// Tells of the connection coming and going, on stderr.
async fn watch_state(client: HubClient, display: Display) {
    let mut state = client.state();
    loop {
        let line = match &*state.borrow_and_update() {
            State::Connected(me) => format!("connected as {} ({})", me.user, me.conn),
            State::Connecting => "connecting…".to_owned(),
            State::Disconnected { reason, .. } => format!("disconnected: {reason}; reconnecting"),
            State::Closed(Some(why)) => format!("stopped: {why}"),
            State::Closed(None) | _ => String::new(),
        };
        if !line.is_empty() {
            display.status(&line);
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
