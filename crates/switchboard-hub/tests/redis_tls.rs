//! How the Redis broker connects, against real `redis-server`s started here on free loopback
//! ports: `rediss://` with a private CA (and a client certificate), ACL users and passwords,
//! and the connect timeout against a listener that never answers. Every error must name the
//! server and never the password.
#![cfg(feature = "redis")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::value::RawValue;
use switchboard_hub::{
    BoxFuture, Broker, BrokerEvents, ClientInfo, Hub, HubConfig, NodeCommand, NodeReply,
    Publication, RedisBroker, RedisConfig,
};
use tokio::sync::Notify;

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

#[path = "support/probe.rs"]
#[allow(dead_code)] // The burst helper is for the other Redis tests.
mod probe;
use probe::healthz;
#[path = "support/serving.rs"]
mod serving;

#[path = "support/temp.rs"]
mod temp;
use temp::TempDir;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(10);

const PASSWORD: &str = "hunter2-correct";
const WRONG: &str = "hunter2-wrong";

/// A private CA, the certificate it signed for a Redis server on 127.0.0.1, and one it signed
/// for a client; PEM files in `dir`.
struct Pki {
    dir: TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "switchboard test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf = |names: &[&str], purpose| {
            let key = KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(&["client"], ExtendedKeyUsagePurpose::ClientAuth);
        let dir = TempDir::new("redis-tls");
        for (name, pem) in [
            ("ca.pem", ca.pem()),
            ("server.pem", server_cert),
            ("server.key", server_key),
        ] {
            std::fs::write(dir.0.join(name), pem).unwrap();
        }
        Self {
            dir,
            ca: ca.pem(),
            client_cert,
            client_key,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.0.join(name).display().to_string()
    }

    /// Arguments for `redis-server` to serve TLS only, asking clients for a certificate or
    /// not.
    fn server_args(&self, port: u16, client_certs: bool) -> Vec<String> {
        let auth = if client_certs { "yes" } else { "no" };
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &self.path("server.pem"),
            "--tls-key-file",
            &self.path("server.key"),
            "--tls-ca-cert-file",
            &self.path("ca.pem"),
            "--tls-auth-clients",
            auth,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// A `redis-server` of this test's own, killed (by PID) when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    /// Starts `redis-server` with `args` (which listen on `port`), without persistence.
    fn start(port: u16, args: &[String], dir: &Path) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let mut redis = Self { port, child };
        let deadline = std::time::Instant::now() + STEP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.child.try_wait() {
                panic!("redis-server exited: {status} (args {args:?})");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// A plain server whose only user is `alice` with [`PASSWORD`].
    fn with_acl(dir: &Path) -> Self {
        let port = free_port();
        let args = [
            "--port",
            &port.to_string(),
            "--user",
            "default",
            "off",
            "--user",
            "alice",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ]
        .map(str::to_owned);
        Self::start(port, &args, dir)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records the offsets a broker delivers.
#[derive(Default)]
struct Recorder {
    offsets: Mutex<Vec<u64>>,
    changed: Notify,
}

impl Recorder {
    async fn until(&self, n: usize) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let changed = self.changed.notified();
            let offsets = self.offsets.lock().unwrap().clone();
            if offsets.len() >= n {
                return offsets;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {n} publications; got {offsets:?}");
            }
        }
    }
}

impl BrokerEvents for Recorder {
    fn publication(&self, _channel: &str, publication: &Arc<Publication>) {
        self.offsets.lock().unwrap().push(publication.offset);
        self.changed.notify_waiters();
    }
    fn join(&self, _channel: &str, _client: &ClientInfo) {}
    fn leave(&self, _channel: &str, _client: &ClientInfo) {}
    fn stream_lost(&self, _channel: &str) {}
    fn command(&self, _command: NodeCommand) -> BoxFuture<'static, NodeReply> {
        Box::pin(std::future::ready(NodeReply::default()))
    }
}

fn config(url: String) -> RedisConfig {
    let mut config = RedisConfig::new(url);
    config.timeout = Duration::from_secs(2);
    config
}

/// Connects and starts a broker, bounded by [`STEP`].
async fn node(config: RedisConfig) -> (RedisBroker, Arc<Recorder>) {
    let broker = tokio::time::timeout(STEP, RedisBroker::connect(config))
        .await
        .expect("connect is bounded")
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    broker.start(recorder.clone()).await.unwrap();
    (broker, recorder)
}

/// The error of connecting with `config` (which must fail within [`STEP`]).
async fn connect_error(config: RedisConfig) -> String {
    match tokio::time::timeout(STEP, RedisBroker::connect(config)).await {
        Err(_) => panic!("connecting did not end within {STEP:?}"),
        Ok(Ok(_)) => panic!("connecting should have failed"),
        Ok(Err(e)) => e.to_string(),
    }
}

/// One node publishes on `channel` (new), the other one (subscribed) gets it.
async fn publishes_and_delivers(channel: &str, a: RedisConfig, b: RedisConfig) {
    let (a, _) = node(a).await;
    let (b, seen) = node(b).await;
    b.subscribe(channel).await.unwrap();
    let from = ClientInfo {
        user: "u".into(),
        conn: "c".into(),
        authenticated: false,
        info: None,
    };
    for n in 0..3 {
        let data = RawValue::from_string(format!("{n}")).unwrap();
        a.publish(channel, from.clone(), data).await.unwrap();
    }
    assert_eq!(seen.until(3).await, [1, 2, 3]);
}

#[tokio::test]
async fn rediss_with_a_private_ca_publishes_and_delivers() {
    let pki = Pki::new();
    let port = free_port();
    let _redis = Redis::start(port, &pki.server_args(port, false), &pki.dir.0);
    let url = format!("rediss://127.0.0.1:{port}");
    let with_ca = || {
        let mut config = config(url.clone());
        config.connect.ca_pem = Some(pki.ca.clone().into_bytes());
        config
    };
    publishes_and_delivers("room", with_ca(), with_ca()).await;

    // The Mozilla roots do not know the private CA.
    let e = connect_error(config(url.clone())).await;
    assert!(
        e.contains(&format!("cannot connect to redis at {url}")),
        "{e}"
    );
    assert!(e.contains("certificate"), "{e}");

    // A file that holds no certificate is refused before connecting.
    let mut no_ca = config(url.clone());
    no_ca.connect.ca_pem = Some(pki.client_key.clone().into_bytes());
    let e = connect_error(no_ca).await;
    assert!(e.contains("holds no PEM certificate"), "{e}");

    // A plain client gets no answer it understands from a TLS port.
    let mut plain = config(format!("redis://127.0.0.1:{port}"));
    plain.connect.connect_timeout = Duration::from_millis(500);
    let e = connect_error(plain).await;
    assert!(e.contains(&format!("redis://127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_the_server_asks_for_one() {
    let pki = Pki::new();
    let port = free_port();
    let _redis = Redis::start(port, &pki.server_args(port, true), &pki.dir.0);
    let url = format!("rediss://127.0.0.1:{port}");
    let mut without = config(url.clone());
    without.connect.ca_pem = Some(pki.ca.clone().into_bytes());
    let with_cert = || {
        let mut config = without.clone();
        config.connect.client_cert_pem = Some((
            pki.client_cert.clone().into_bytes(),
            pki.client_key.clone().into_bytes(),
        ));
        config
    };
    publishes_and_delivers("room", with_cert(), with_cert()).await;
    // Redis ends the handshake of a client without a certificate.
    let e = connect_error(without).await;
    assert!(
        e.contains(&format!("cannot connect to redis at {url}")),
        "{e}"
    );
}

#[tokio::test]
async fn acl_user_and_password_from_the_url_or_the_options() {
    let dir = TempDir::new("redis-acl");
    let redis = Redis::with_acl(&dir.0);
    let port = redis.port;
    let in_url = format!("redis://alice:{PASSWORD}@127.0.0.1:{port}");
    publishes_and_delivers("in-url", config(in_url.clone()), config(in_url)).await;

    let given = || {
        let mut config = config(format!("redis://alice@127.0.0.1:{port}"));
        config.connect.password = Some(PASSWORD.into());
        config
    };
    publishes_and_delivers("given", given(), given()).await;
    let mut user_given = config(format!("redis://127.0.0.1:{port}"));
    user_given.connect.username = Some("alice".into());
    user_given.connect.password = Some(PASSWORD.into());
    publishes_and_delivers("user-given", user_given.clone(), user_given).await;

    // A wrong password: the error names the server and the user, never the password.
    let e = connect_error(config(format!("redis://alice:{WRONG}@127.0.0.1:{port}"))).await;
    assert!(
        e.contains(&format!(
            "cannot connect to redis at redis://alice@127.0.0.1:{port}"
        )),
        "{e}"
    );
    assert!(e.contains("authentication failed"), "{e}");
    assert!(!e.contains(WRONG), "{e}");
    // No credentials: the default user is off.
    let e = connect_error(config(format!("redis://127.0.0.1:{port}"))).await;
    assert!(e.contains(&format!("redis://127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn credentials_that_stop_working_later_make_healthz_answer_503() {
    let dir = TempDir::new("redis-acl");
    let redis = Redis::with_acl(&dir.0);
    let port = redis.port;
    let broker = RedisBroker::connect(config(format!("redis://alice:{PASSWORD}@127.0.0.1:{port}")))
        .await
        .unwrap();
    let hub = Hub::new(Arc::new(broker), HubConfig::default())
        .await
        .unwrap();
    let checked = hub.clone();
    let server = switchboard::Server::builder()
        .health_check("/healthz", move || {
            checked.health().map_err(|e| e.to_string())
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|_ws, _request| async {}));
    assert_eq!(healthz(addr).await.0, 200);

    // The password changes in Redis and alice's connections are cut: reconnecting fails.
    let admin = redis::Client::open(format!("redis://alice:{PASSWORD}@127.0.0.1:{port}")).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "alice", "resetpass", &format!(">{WRONG}")])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "alice"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let last = Mutex::new((0, String::new()));
    let waited = tokio::time::timeout(STEP, async {
        loop {
            let (status, body) = healthz(addr).await;
            if status == 503 && body.contains("authentication failed") {
                return body;
            }
            *last.lock().unwrap() = (status, body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let body = waited
        .unwrap_or_else(|_| panic!("/healthz never answered 503 with the reason; last {last:?}"));
    assert!(
        body.contains(&format!("redis://alice@127.0.0.1:{port}")),
        "{body}"
    );
    assert!(!body.contains(PASSWORD) && !body.contains(WRONG), "{body}");
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_fails_within_the_connect_timeout() {
    // Accepts every connection and keeps it open without a byte in return.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("rediss://127.0.0.1:{port}"),
    ] {
        let mut config = config(url.clone());
        config.connect.connect_timeout = Duration::from_millis(300);
        let e = connect_error(config).await;
        assert!(
            e.contains(&format!(
                "cannot connect to redis at {url}: no answer within the connect timeout (300ms)"
            )),
            "{e}"
        );
    }
    silent.abort();
}
