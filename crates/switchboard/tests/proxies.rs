//! Connecting through real proxies from Debian, each started here on a free loopback port and
//! stopped by PID: `tinyproxy` for HTTP CONNECT (with and without Basic auth), `danted` (Dante)
//! for SOCKS5 without auth and for a ruleset's refusal, `microsocks` for SOCKS5 with a username
//! and password. A WebSocket echo through each, plain and over TLS (HTTP/2 too), and each
//! refusal as the error a user reads.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard::http::Version;
use switchboard::tls::{ClientTls, ServerTls};
use switchboard::{ConnectOptions, Error, Message, Proxy, ProxyError, Server};
use tokio::time::timeout;

mod support;
#[path = "../../switchboard-hub/tests/support/temp.rs"]
mod temp;

use temp::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// A proxy's process, killed by its PID when dropped (a failed test included).
struct Daemon {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Daemon {
    /// Runs `program` with `args` until `port` on loopback takes connections.
    fn start(program: &str, package: &str, args: &[&str], port: u16, dir: TempDir) -> Self {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} must be installed (apt-get install {package}): {e}")
            });
        let mut daemon = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{program} exited with {status}");
            }
            assert!(Instant::now() < deadline, "{program} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn url(&self, scheme: &str, credentials: &str) -> Proxy {
        format!("{scheme}://{credentials}127.0.0.1:{}", self.port)
            .parse()
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (until a proxy is started on it).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `tinyproxy` allowing CONNECT to `connect_port` only, with `BasicAuth ann s3cret` when
/// `auth`.
fn tinyproxy(connect_port: u16, auth: bool) -> Daemon {
    let dir = TempDir::new("tinyproxy");
    let port = free_port();
    let mut config = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n\
         LogLevel Info\nLogFile \"{}\"\nConnectPort {connect_port}\n",
        dir.0.join("tinyproxy.log").display()
    );
    if auth {
        config.push_str("BasicAuth ann s3cret\n");
    }
    let path = write(&dir.0, "tinyproxy.conf", &config);
    Daemon::start("tinyproxy", "tinyproxy", &["-d", "-c", &path], port, dir)
}

/// `danted` without authentication, letting loopback clients reach `allowed` on loopback
/// (nothing when `None`: every request meets the `block` rule).
fn danted(allowed: Option<u16>) -> Daemon {
    let dir = TempDir::new("danted");
    let port = free_port();
    let pass = match allowed {
        Some(allowed) => {
            format!("socks pass {{ from: 127.0.0.0/8 to: 127.0.0.1/32 port = {allowed} }}\n")
        }
        None => String::new(),
    };
    let config = format!(
        "logoutput: {}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
         socksmethod: none\nclientmethod: none\n\
         client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n{pass}\
         socks block {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}\n",
        dir.0.join("danted.log").display()
    );
    let path = write(&dir.0, "danted.conf", &config);
    let pid = dir.0.join("danted.pid").display().to_string();
    Daemon::start(
        "danted",
        "dante-server",
        &["-f", &path, "-p", &pid, "-N", "1"],
        port,
        dir,
    )
}

/// `microsocks` asking for the username `ann` and the password `s3cret`.
fn microsocks() -> Daemon {
    let port = free_port();
    let args = [
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-u",
        "ann",
        "-P",
        "s3cret",
    ];
    Daemon::start(
        "microsocks",
        "microsocks",
        &args,
        port,
        TempDir::new("microsocks"),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// An echo server over TLS for `localhost` (HTTP/2 offered); its address and the trust for
/// its certificate.
async fn tls_echo() -> (SocketAddr, ClientTls) {
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let trust = ClientTls::from_ca_pem(tls.self_signed_pem().unwrap().as_bytes()).unwrap();
    let (addr, _) = support::echo_server(Server::builder().tls(tls)).await;
    (addr, trust)
}

fn through(proxy: Proxy) -> ConnectOptions {
    ConnectOptions {
        proxy: Some(proxy),
        timeout: WAIT,
        ..ConnectOptions::default()
    }
}

/// Connects to `url` with `options` and checks that a message comes back.
async fn echoes(url: &str, options: &ConnectOptions) -> Version {
    let (mut ws, response) = switchboard::connect_with(url, options).await.unwrap();
    let message = Message::text(format!("through {:?}", options.proxy));
    ws.send(message.clone()).await.unwrap();
    let got = timeout(WAIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, message);
    response.version()
}

/// The error connecting to `url` with `options`, as a user reads it; it never shows the
/// password.
async fn refusal(url: &str, options: &ConnectOptions) -> (Error, String) {
    let err = switchboard::connect_with(url, options).await.unwrap_err();
    let text = err.to_string();
    assert!(
        !text.contains("s3cret") && !text.contains("wrong"),
        "{text}"
    );
    (err, text)
}

#[tokio::test]
async fn an_http_proxy_tunnels_a_websocket() {
    let (addr, _) = support::echo_server(Server::builder()).await;
    let proxy = tinyproxy(addr.port(), false);
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    echoes(&url, &through(proxy.url("http", ""))).await;
}

#[tokio::test]
async fn tls_and_http2_run_inside_an_http_proxys_tunnel_with_basic_auth() {
    let (addr, trust) = tls_echo().await;
    let proxy = tinyproxy(addr.port(), true);
    let url = format!("wss://localhost:{}/", addr.port());
    let options = ConnectOptions {
        tls: Some(trust),
        ..through(proxy.url("http", "ann:s3cret@"))
    };
    assert_eq!(echoes(&url, &options).await, Version::HTTP_11);
    let options = ConnectOptions {
        http2: true,
        ..options
    };
    assert_eq!(echoes(&url, &options).await, Version::HTTP_2);
}

#[tokio::test]
async fn an_http_proxy_refusing_the_password_says_so() {
    let (addr, _) = support::echo_server(Server::builder()).await;
    let proxy = tinyproxy(addr.port(), true);
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    for credentials in ["ann:wrong@", ""] {
        let (err, text) = refusal(&url, &through(proxy.url("http", credentials))).await;
        // tinyproxy (1.11) answers a refused CONNECT with 407 or, at times, 401: the user
        // reads the proxy's own status.
        match err {
            Error::Proxy(ProxyError::Status { status: 407, .. }) => {
                assert_eq!(text, "proxy answered 407 Proxy Authentication Required");
            }
            Error::Proxy(ProxyError::Status { status: 401, .. }) => {
                assert_eq!(text, "proxy answered 401 Unauthorized");
            }
            err => panic!("{err:?}"),
        }
    }
}

/// A proxy answering 407 with a body: the status and reason are the error.
#[tokio::test]
async fn a_407_names_its_status_and_reason() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = [0; 1024];
        let _ = tcp.read(&mut request).await;
        let answer = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"test\"\r\n\
                      Content-Length: 5\r\n\r\nnope!";
        let _ = tcp.write_all(answer.as_bytes()).await;
    });
    let proxy: Proxy = format!("http://ann:s3cret@127.0.0.1:{port}")
        .parse()
        .unwrap();
    let (_, text) = refusal("ws://127.0.0.1:9/", &through(proxy)).await;
    assert_eq!(text, "proxy answered 407 Proxy Authentication Required");
}

#[tokio::test]
async fn an_http_proxy_refusing_the_port_says_so() {
    let (addr, _) = support::echo_server(Server::builder()).await;
    let proxy = tinyproxy(addr.port().wrapping_add(1).max(1), false);
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let (err, text) = refusal(&url, &through(proxy.url("http", ""))).await;
    assert!(
        matches!(err, Error::Proxy(ProxyError::Status { status: 403, .. })),
        "{err:?}"
    );
    assert!(text.starts_with("proxy answered 403 "), "{text}");
}

#[tokio::test]
async fn a_proxy_that_is_not_there_cannot_be_reached() {
    let port = free_port();
    for scheme in ["http", "socks5"] {
        let proxy: Proxy = format!("{scheme}://ann:s3cret@127.0.0.1:{port}")
            .parse()
            .unwrap();
        let (_, text) = refusal("ws://127.0.0.1:9/", &through(proxy)).await;
        assert_eq!(
            text,
            format!("cannot reach proxy 127.0.0.1:{port}: connection refused")
        );
    }
}

#[tokio::test]
async fn a_socks5_proxy_connects_to_an_address_or_resolves_the_name() {
    let (plain, _) = support::echo_server(Server::builder()).await;
    let (secure, trust) = tls_echo().await;
    // Dante's rules allow one port, so each target has its proxy.
    let proxy = danted(Some(plain.port()));
    let url = format!("ws://localhost:{}/", plain.port());
    echoes(&url, &through(proxy.url("socks5", ""))).await;
    echoes(&url, &through(proxy.url("socks5h", ""))).await;
    let proxy = danted(Some(secure.port()));
    let options = ConnectOptions {
        tls: Some(trust),
        http2: true,
        ..through(proxy.url("socks5h", ""))
    };
    let url = format!("wss://localhost:{}/", secure.port());
    assert_eq!(echoes(&url, &options).await, Version::HTTP_2);
}

#[tokio::test]
async fn a_socks5_proxys_ruleset_refusal_is_named() {
    let (addr, _) = support::echo_server(Server::builder()).await;
    let proxy = danted(None);
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let (err, text) = refusal(&url, &through(proxy.url("socks5", ""))).await;
    assert!(
        matches!(err, Error::Proxy(ProxyError::Socks5Refused(2))),
        "{err:?}"
    );
    assert_eq!(
        text,
        "SOCKS5 proxy refused: connection not allowed by ruleset"
    );
}

#[tokio::test]
async fn a_socks5_proxy_takes_a_username_and_password() {
    let (addr, _) = support::echo_server(Server::builder()).await;
    let proxy = microsocks();
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    echoes(&url, &through(proxy.url("socks5h", "ann:s3cret@"))).await;

    let (err, text) = refusal(&url, &through(proxy.url("socks5", "ann:wrong@"))).await;
    assert!(
        matches!(err, Error::Proxy(ProxyError::Socks5Auth)),
        "{err:?}"
    );
    assert_eq!(text, "SOCKS5 proxy refused the username or password");

    let (err, text) = refusal(&url, &through(proxy.url("socks5", ""))).await;
    assert!(
        matches!(err, Error::Proxy(ProxyError::Socks5Methods(false))),
        "{err:?}"
    );
    assert!(
        text.starts_with("SOCKS5 proxy accepts none of the offered"),
        "{text}"
    );
}
