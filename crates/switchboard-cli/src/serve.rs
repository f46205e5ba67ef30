//! `switchboard serve`: run a WebSocket server. Here the mode, the listeners (one, or one
//! per thread with `--threads`) and the drain; the hub it runs is built in `serve/hub.rs`,
//! the server's settings and TLS in `serve/server.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use switchboard::event_loop::EventLoop;
use switchboard::http::Request;
use switchboard::{CloseCode, MaybeTlsStream, ServerBuilder, WebSocket};
use switchboard_hub::{HttpApi, Hub, PusherApi, RESTART_REASON, restart_hint};

use crate::admin::{self, Admin};
use crate::config::{Mode, ServeOptions};
use crate::terminal::interrupt::{self, Signals};
use crate::web;

mod hub;
mod server;

use self::hub::hub;
use self::server::{builder, tls};

/// After a restart, the hub's clients wait at least this long before reconnecting...
const RESTART_FLOOR: Duration = Duration::from_secs(1);
/// ...and up to this much longer, at random (`--restart-spread`).
const RESTART_SPREAD: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
pub(crate) struct ServeArgs {
    /// Read settings from a TOML file (keys as the flags, without the dashes in front:
    /// `max-connections = 1000`); flags given here win
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    options: ServeOptions,
}

/// What the server runs, built from the mode before the listener binds.
enum Service {
    /// The hub, and its admin dashboard when there is a password.
    Hub(Hub, Option<Arc<Admin>>),
    Echo,
    Broadcast(switchboard_hub::Broadcast),
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let options = match &args.config {
        Some(path) => args.options.or(ServeOptions::from_file(path)?),
        None => args.options,
    };
    options.check()?;
    let listen = options
        .listen
        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)), |l| l.0);
    let mode = options.mode.unwrap_or(Mode::Hub);
    let tls = tls(&options, listen)?;
    let secure = tls.is_some();
    let (scheme, http) = if tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let mut builder = builder(&options, tls);
    let service = match mode {
        Mode::Hub => {
            let hub = hub(&options, builder.metrics()).await?;
            // Healthy while the broker is: a node that cannot reach Redis cannot serve. With
            // one shard of several down, it still serves the others' channels: 200, degraded.
            let checked = hub.clone();
            builder = builder.health_report("/healthz", move || match checked.health() {
                Ok(()) => Ok(checked.degraded()),
                Err(e) => Err(e.to_string()),
            });
            // A restart sends every client a hint to come back in 1 to 6 s, spread so that
            // they do not all come back at once.
            builder = builder.shutdown_close(CloseCode::SERVICE_RESTART, RESTART_REASON);
            let spread = options.restart_spread.map_or(RESTART_SPREAD, |s| s.0);
            if !spread.is_zero() {
                builder = builder.shutdown_message(restart_hint(RESTART_FLOOR, spread));
            }
            let admin = options
                .admin_password
                .as_deref()
                .filter(|password| !password.is_empty())
                .map(|password| {
                    Admin::new(hub.clone(), builder.metrics().clone(), password, secure)
                });
            if let Some(admin) = &admin {
                builder = admin::routes(builder, admin.clone());
                tracing::info!("admin dashboard at /admin");
            }
            // The origin allow-list is the server's, checked after this.
            let checked = admin.clone();
            let pusher = hub.serves_pusher();
            builder = web::routes(builder).check_upgrade(move |request| {
                match (request.uri().path(), &checked) {
                    ("/ws", _) => None,
                    (path, _) if pusher && path.starts_with("/app/") => None,
                    (admin::LIVE, Some(admin)) => admin.check_live(request),
                    _ => Some(web::not_found()),
                }
            });
            let keys = options.api_keys.clone().unwrap_or_default();
            if let Some(api) = HttpApi::new(hub.clone(), keys) {
                let counted = api.clone();
                builder
                    .metrics()
                    .extend(move |out| counted.render_metrics(out));
                builder = builder.api_route("/api/*", move |request| {
                    let api = api.clone();
                    async move { api.handle(request).await }
                });
            }
            // Pusher's HTTP API, for the official server libraries of the apps served.
            if let Some(api) = PusherApi::new(hub.clone()) {
                // `/users/`: where the Python library posts terminate_connections.
                for path in ["/apps/*", "/users/*"] {
                    let api = api.clone();
                    builder = builder.api_route(path, move |request| {
                        let api = api.clone();
                        async move { api.handle(request).await }
                    });
                }
            }
            Service::Hub(hub, admin)
        }
        Mode::Echo => Service::Echo,
        Mode::Broadcast => Service::Broadcast(switchboard_hub::Broadcast::new()),
    };
    // Said once the configuration has passed its checks: a refused one says only why.
    let alpn = builder.alpn_protocols();
    if builder.serves_h2c() {
        tracing::info!("offering http/1.1 and h2c (HTTP/2 with prior knowledge, no TLS)");
    } else if alpn.is_empty() {
        tracing::info!("offering http/1.1 (no TLS: no HTTP/2; --h2c for prior knowledge)");
    } else {
        let alpn = alpn.join(", ");
        tracing::info!("offering {alpn} (TLS ALPN)");
        if options.h2c == Some(true) {
            tracing::warn!("h2c is for clear text: with TLS, HTTP/2 is agreed through ALPN");
        }
    }
    let threads = options.threads.unwrap_or(0);
    match service {
        Service::Hub(hub, admin) => {
            let pusher = hub.serves_pusher();
            let on_loop = options.event_loop.unwrap_or(false);
            // The hub's futures are returned as they are, boxed: an `async` block around them
            // would keep room for the socket and the request in every idle client's task.
            let handler =
                move |ws, request: Request<()>| -> Pin<Box<dyn Future<Output = ()> + Send>> {
                    match &admin {
                        Some(admin) if request.uri().path() == admin::LIVE => {
                            let admin = admin.clone();
                            Box::pin(async move { admin.live(ws, &request).await })
                        }
                        _ if request.uri().path().starts_with("/app/") => {
                            Box::pin(hub.serve_pusher(ws, request))
                        }
                        _ if on_loop => Box::pin(hub.serve_on_event_loop(ws, request)),
                        _ => Box::pin(hub.serve(ws, request)),
                    }
                };
            serve(builder, listen, threads, handler, |addr| {
                let looped = if on_loop { " (event loop)" } else { "" };
                tracing::info!(
                    "chat on {http}://{addr}/, hub protocol on {scheme}://{addr}/ws{looped}"
                );
                if pusher {
                    tracing::info!(
                        "Pusher protocol on {scheme}://{addr}/app/KEY, its HTTP API on {http}://{addr}/apps/ID/"
                    );
                }
            })
            .await?;
        }
        Service::Echo if options.event_loop.unwrap_or(false) => {
            let echo = EventLoop::new(switchboard_hub::EchoHandler);
            let handler = move |ws, request| echo.serve(ws, request);
            serve(builder, listen, threads, handler, |addr| {
                tracing::info!(mode = "echo", "listening on {scheme}://{addr} (event loop)");
            })
            .await?;
        }
        Service::Echo => {
            let handler = |ws, _| switchboard_hub::echo(ws);
            serve(builder, listen, threads, handler, |addr| {
                tracing::info!(mode = "echo", "listening on {scheme}://{addr}");
            })
            .await?;
        }
        Service::Broadcast(_) if options.event_loop.unwrap_or(false) => {
            // One group for the loops of every thread.
            let group = EventLoop::new(switchboard_hub::BroadcastHandler::new());
            let handler = move |ws, request| group.serve(ws, request);
            serve(builder, listen, threads, handler, |addr| {
                tracing::info!(
                    mode = "broadcast",
                    "listening on {scheme}://{addr} (event loop)"
                );
            })
            .await?;
        }
        Service::Broadcast(group) => {
            let handler = move |ws, _| {
                let group = group.clone();
                async move { group.serve(ws).await }
            };
            serve(builder, listen, threads, handler, |addr| {
                tracing::info!(mode = "broadcast", "listening on {scheme}://{addr}");
            })
            .await?;
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Serves `handler` on `listen` until SIGINT or SIGTERM, then drains: on this runtime, or with
/// `threads` > 1 thread per core, each thread with a runtime and a listener of its own on the
/// one address (`SO_REUSEPORT`). `listening` is told the address once every listener is bound.
async fn serve<H, F>(
    builder: ServerBuilder,
    listen: SocketAddr,
    threads: usize,
    handler: H,
    listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()>
where
    H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    crate::memory::give_back_when_quiet();
    if threads <= 1 {
        let server = builder
            .bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        listening(server.local_addr()?);
        server
            .serve_with_shutdown(handler, shutdown_signal())
            .await?;
        return Ok(());
    }
    #[cfg(unix)]
    {
        // Each thread admits its share of the connection limit.
        let per_thread = builder.connection_limit().div_ceil(threads);
        // Claimed before binding, so that a second server never takes a connection; with
        // port 0, once the first listener has its port.
        let mut claim = match listen.port() {
            0 => None,
            _ => Some(crate::port_lock::claim(listen)?),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut addr = listen;
        let mut running = Vec::with_capacity(threads);
        for index in 0..threads {
            let (bound_tx, bound) = tokio::sync::oneshot::channel();
            let builder = builder.clone().max_connections(per_thread);
            let handler = handler.clone();
            let mut stopped = stopped.clone();
            let thread = std::thread::Builder::new()
                .name(format!("switchboard-{index}"))
                .spawn(move || -> std::io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        let server = match builder.bind_reuse_port(addr).await {
                            Ok(server) => server,
                            Err(e) => {
                                let _ = bound_tx.send(Err(e));
                                return Ok(());
                            }
                        };
                        let _ = bound_tx.send(server.local_addr());
                        let stop = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        server.serve_with_shutdown(handler, stop).await
                    })
                })
                .context("cannot start a server thread")?;
            running.push(thread);
            // The first listener may have picked the port; the others take the same.
            addr = bound
                .await
                .context("a server thread ended early")?
                .with_context(|| format!("cannot listen on {addr}"))?;
            if claim.is_none() {
                claim = Some(crate::port_lock::claim(addr)?);
            }
        }
        tracing::info!(threads, "thread per core");
        listening(addr);
        shutdown_signal().await;
        let _ = stop.send(true);
        let joined = tokio::task::spawn_blocking(move || {
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("a server thread panicked")))
                })
                .collect::<std::io::Result<Vec<()>>>()
        });
        joined.await??;
        drop(claim);
        Ok(())
    }
    #[cfg(not(unix))]
    anyhow::bail!("--threads needs SO_REUSEPORT (Unix)")
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, and from then on exits at once on a second one:
/// the drain can wait on clients that never answer, and whoever sends it again won't wait.
async fn shutdown_signal() {
    let mut signals = Signals::new();
    signals.recv().await;
    tracing::info!("shutdown requested (Ctrl-C again to exit at once)");
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::warn!("second stop signal: exiting at once, without draining");
        interrupt::exit_now(signal);
    });
}
