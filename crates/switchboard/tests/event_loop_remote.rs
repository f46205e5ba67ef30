//! Sending to an event loop's connections through a `Remote`: from another connection's
//! callback, from a task, from another thread, and to a connection in a task of its own (TLS).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::event_loop::{EventLoop, Handler, Remote, Socket};
use switchboard::http::Request;
use switchboard::tls::{ClientTls, ServerTls};
use switchboard::{
    Backpressure, CloseCode, ConnectOptions, Error, Message, Metrics, Server, ServerBuilder,
};
use tokio::time::timeout;

type Client = switchboard::WebSocket<switchboard::MaybeTlsStream>;

/// The `Remote` of each connection by its request's path, and the paths of those closed.
#[derive(Clone, Default)]
struct Registry {
    remotes: Arc<Mutex<HashMap<String, Remote>>>,
    closed: Arc<Mutex<Vec<String>>>,
    /// Mail dropped for want of room, as `Handler::dropped` heard.
    dropped: Arc<std::sync::atomic::AtomicUsize>,
}

impl Registry {
    /// Waits until the connection of `path` is open, and returns its `Remote`.
    async fn remote(&self, path: &str) -> Remote {
        timeout(Duration::from_secs(5), async {
            loop {
                if let Some(remote) = self.remotes.lock().unwrap().get(path) {
                    return remote.clone();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{path} never opened"))
    }

    /// Waits until the connection of `path` is over.
    async fn closed(&self, path: &str) {
        timeout(Duration::from_secs(5), async {
            while !self.closed.lock().unwrap().iter().any(|p| p == path) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{path} never closed"));
    }
}

/// Relays "PATH BODY" to the connection of PATH, through its `Remote`.
struct Relay(Registry);

impl Handler for Relay {
    type State = String;

    fn open(&self, socket: &mut Socket<'_>, request: &Request<()>) -> String {
        let path = request.uri().path().to_owned();
        let remote = socket.remote();
        self.0.remotes.lock().unwrap().insert(path.clone(), remote);
        path
    }

    fn message(&self, _: &mut String, _: &mut Socket<'_>, message: Message) {
        let Message::Text(text) = message else { return };
        let (to, body) = text.as_str().split_once(' ').unwrap();
        let remote = self.0.remotes.lock().unwrap().get(to).cloned();
        remote
            .unwrap()
            .send(Message::text(body.to_owned()))
            .unwrap();
    }

    fn dropped(&self, _: &mut String, _: &mut Socket<'_>) {
        self.0
            .dropped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn close(&self, path: String, _: Option<Result<Message, Error>>) {
        self.0.closed.lock().unwrap().push(path);
    }
}

async fn start(builder: ServerBuilder) -> (SocketAddr, Registry, Metrics) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    let registry = Registry::default();
    let relay = EventLoop::new(Relay(registry.clone()));
    tokio::spawn(server.serve(move |ws, request| relay.serve(ws, request)));
    (addr, registry, metrics)
}

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let (ws, _) = switchboard::connect(&format!("ws://{addr}{path}"))
        .await
        .unwrap();
    ws
}

async fn next_text(ws: &mut Client) -> String {
    match timeout(Duration::from_secs(5), ws.recv()).await.unwrap() {
        Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
        other => panic!("not a text message: {other:?}"),
    }
}

#[tokio::test]
async fn mail_from_another_connections_callback_arrives_in_order() {
    let (addr, registry, _) = start(Server::builder()).await;
    let mut a = connect(addr, "/a").await;
    let mut b = connect(addr, "/b").await;
    registry.remote("/b").await;
    for i in 0..300 {
        a.feed(Message::text(format!("/b m{i}"))).unwrap();
    }
    a.flush().await.unwrap();
    for i in 0..300 {
        assert_eq!(next_text(&mut b).await, format!("m{i}"));
    }
    // And back, through the other connection's `Remote`.
    b.send(Message::text("/a back")).await.unwrap();
    assert_eq!(next_text(&mut a).await, "back");
}

#[tokio::test]
async fn mail_from_a_task_and_from_another_thread_arrives_in_order() {
    let (addr, registry, _) = start(Server::builder()).await;
    let mut b = connect(addr, "/b").await;
    let remote = registry.remote("/b").await;
    let from_task = remote.clone();
    tokio::spawn(async move {
        for i in 0..100 {
            from_task.send(Message::text(format!("m{i}"))).unwrap();
        }
    })
    .await
    .unwrap();
    std::thread::spawn(move || {
        for i in 100..200 {
            remote.send(Message::text(format!("m{i}"))).unwrap();
        }
    })
    .join()
    .unwrap();
    for i in 0..200 {
        assert_eq!(next_text(&mut b).await, format!("m{i}"));
    }
}

#[tokio::test]
async fn mail_for_a_closed_connection_never_reaches_the_next_of_its_token() {
    let (addr, registry, _) = start(Server::builder()).await;
    let mut a = connect(addr, "/a").await;
    let for_a = registry.remote("/a").await;
    a.close(CloseCode::NORMAL, "").await.unwrap();
    registry.closed("/a").await;
    // The test's runtime has one thread, so one loop: `/b` takes the slot `/a` left.
    let mut b = connect(addr, "/b").await;
    let for_b = registry.remote("/b").await;
    assert_ne!(for_a, for_b);
    // The loop is still there: the mail is taken, and dropped.
    for_a.send(Message::text("for a")).unwrap();
    for_b.send(Message::text("for b")).unwrap();
    assert_eq!(next_text(&mut b).await, "for b");
}

#[tokio::test]
async fn a_remote_starts_the_closing_handshake() {
    let (addr, registry, _) = start(Server::builder()).await;
    let mut a = connect(addr, "/a").await;
    let remote = registry.remote("/a").await;
    assert!(matches!(
        remote.close(CloseCode(1005), ""),
        Err(Error::Send(_))
    ));
    remote.close(CloseCode(4000), "bye").unwrap();
    // Nothing more once closing.
    remote.send(Message::text("late")).unwrap();
    let close = timeout(Duration::from_secs(5), a.recv()).await.unwrap();
    assert!(
        matches!(&close, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode(4000)),
        "{close:?}"
    );
    assert!(a.recv().await.is_none());
    registry.closed("/a").await;
}

/// A burst of 200 messages of 64 KiB, posted together, meets a 64 KiB send queue in one turn
/// of the loop: the first fits the empty queue, the next is over the limit.
async fn burst_over_the_send_queue(policy: Backpressure) -> (Client, Remote, Metrics, Registry) {
    let builder = Server::builder()
        .max_send_queue(64 << 10)
        .backpressure(policy);
    let (addr, registry, metrics) = start(builder).await;
    let mut a = connect(addr, "/a").await;
    let remote = registry.remote("/a").await;
    for _ in 0..200 {
        remote.send(Message::binary(vec![7u8; 64 << 10])).unwrap();
    }
    let first = timeout(Duration::from_secs(5), a.recv()).await.unwrap();
    assert_eq!(
        first.unwrap().unwrap(),
        Message::binary(vec![7u8; 64 << 10])
    );
    (a, remote, metrics, registry)
}

#[tokio::test]
async fn mail_over_the_send_queue_limit_closes_with_1013_by_default() {
    let (mut a, _remote, metrics, registry) =
        burst_over_the_send_queue(Backpressure::Disconnect).await;
    let close = timeout(Duration::from_secs(5), a.recv()).await.unwrap();
    assert!(
        matches!(&close, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::TRY_AGAIN_LATER),
        "{close:?}"
    );
    assert_eq!(metrics.backpressure_disconnects(), 1);
    assert_eq!(
        registry.dropped.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn mail_over_the_send_queue_limit_is_dropped_under_the_drop_policy() {
    let (mut a, remote, metrics, registry) = burst_over_the_send_queue(Backpressure::Drop).await;
    assert_eq!(metrics.backpressure_drops(), 199);
    // The handler heard of each.
    assert_eq!(
        registry.dropped.load(std::sync::atomic::Ordering::Relaxed),
        199
    );
    remote.send(Message::text("after")).unwrap();
    assert_eq!(next_text(&mut a).await, "after");
}

#[tokio::test]
async fn a_remote_reaches_a_tls_connection_in_its_task_until_it_ends() {
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let ca = tls.self_signed_pem().unwrap().to_owned();
    let (addr, registry, _) = start(Server::builder().tls(tls)).await;
    let options = ConnectOptions {
        tls: Some(ClientTls::from_ca_pem(ca.as_bytes()).unwrap()),
        ..ConnectOptions::default()
    };
    let url = format!("wss://localhost:{}/secure", addr.port());
    let (mut ws, _) = switchboard::connect_with(&url, &options).await.unwrap();
    let remote = registry.remote("/secure").await;
    for i in 0..50 {
        remote.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 0..50 {
        assert_eq!(next_text(&mut ws).await, format!("m{i}"));
    }
    // Its own mail, through its own callback.
    ws.send(Message::text("/secure self")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "self");
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    registry.closed("/secure").await;
    // Its task has ended: mail is refused.
    timeout(Duration::from_secs(5), async {
        while remote.send(Message::text("gone")).is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(matches!(
        remote.send(Message::text("gone")),
        Err(Error::Closed)
    ));
}
