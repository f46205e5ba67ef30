//! Connecting through real proxies from Debian, each started here on a free loopback port and
//! stopped by PID: `tinyproxy` for HTTP CONNECT (with and without Basic auth), `danted` (Dante)
//! for SOCKS5 without auth and for a ruleset's refusal, `microsocks` for SOCKS5 with a username
//! and password. A WebSocket echo through each, plain and over TLS (HTTP/2 too), and each
//! refusal as the error a user reads.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::http::Version;
use switchboard::tls::{ClientTls, ServerTls};
use switchboard::{ConnectOptions, Error, Message, Proxy, ProxyError, Server};
use tokio::time::timeout;

#[path = "support/proxy_servers.rs"]
mod proxy_servers;
mod support;
#[path = "../../switchboard-hub/tests/support/temp.rs"]
mod temp;

use proxy_servers::{danted, free_port, microsocks, tinyproxy};

const WAIT: Duration = Duration::from_secs(10);

/// An echo server over TLS for `localhost` (HTTP/2 offered); its address and the trust for
/// its certificate.
async fn tls_echo() -> (SocketAddr, ClientTls) {
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let trust = ClientTls::from_ca_pem(tls.self_signed_pem().unwrap().as_bytes()).unwrap();
    let (addr, _) = support::echo_server(Server::builder().tls(tls)).await;
    (addr, trust)
}

/// `proxy`'s URL with `credentials` (`user:pass@` or empty) as a [`Proxy`].
fn proxy_url(proxy: &proxy_servers::Daemon, scheme: &str, credentials: &str) -> Proxy {
    proxy.url_string(scheme, credentials).parse().unwrap()
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
    echoes(&url, &through(proxy_url(&proxy, "http", ""))).await;
}

#[tokio::test]
async fn tls_and_http2_run_inside_an_http_proxys_tunnel_with_basic_auth() {
    let (addr, trust) = tls_echo().await;
    let proxy = tinyproxy(addr.port(), true);
    let url = format!("wss://localhost:{}/", addr.port());
    let options = ConnectOptions {
        tls: Some(trust),
        ..through(proxy_url(&proxy, "http", "ann:s3cret@"))
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
        let (err, text) = refusal(&url, &through(proxy_url(&proxy, "http", credentials))).await;
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
    let (err, text) = refusal(&url, &through(proxy_url(&proxy, "http", ""))).await;
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
    echoes(&url, &through(proxy_url(&proxy, "socks5", ""))).await;
    echoes(&url, &through(proxy_url(&proxy, "socks5h", ""))).await;
    let proxy = danted(Some(secure.port()));
    let options = ConnectOptions {
        tls: Some(trust),
        http2: true,
        ..through(proxy_url(&proxy, "socks5h", ""))
    };
    let url = format!("wss://localhost:{}/", secure.port());
    assert_eq!(echoes(&url, &options).await, Version::HTTP_2);
}

#[tokio::test]
async fn a_socks5_proxys_ruleset_refusal_is_named() {
    let (addr, _) = support::echo_server(Server::builder()).await;
    let proxy = danted(None);
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let (err, text) = refusal(&url, &through(proxy_url(&proxy, "socks5", ""))).await;
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
    echoes(&url, &through(proxy_url(&proxy, "socks5h", "ann:s3cret@"))).await;

    let (err, text) = refusal(&url, &through(proxy_url(&proxy, "socks5", "ann:wrong@"))).await;
    assert!(
        matches!(err, Error::Proxy(ProxyError::Socks5Auth)),
        "{err:?}"
    );
    assert_eq!(text, "SOCKS5 proxy refused the username or password");

    let (err, text) = refusal(&url, &through(proxy_url(&proxy, "socks5", ""))).await;
    assert!(
        matches!(err, Error::Proxy(ProxyError::Socks5Methods(false))),
        "{err:?}"
    );
    assert!(
        text.starts_with("SOCKS5 proxy accepts none of the offered"),
        "{text}"
    );
}

/// A fake proxy on loopback that reads what the client sends first, then writes `answer` and
/// ends its side (reading on until the client goes, so that nothing is reset); its URL with
/// `scheme`.
async fn fake_proxy(scheme: &str, answer: Vec<u8>) -> Proxy {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = [0; 1024];
        let _ = tcp.read(&mut request).await;
        let _ = tcp.write_all(&answer).await;
        let _ = tcp.shutdown().await;
        while tcp.read(&mut request).await.is_ok_and(|n| n > 0) {}
    });
    format!("{scheme}://127.0.0.1:{port}").parse().unwrap()
}

#[tokio::test]
async fn a_misbehaving_proxy_is_a_clear_error() {
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "http",
            b"SSH-2.0-OpenSSH_9.2\r\n".to_vec(),
            "not an HTTP answer",
        ),
        (
            "http",
            b"HTTP/1.1 200 OK\r\n\r\nearly".to_vec(),
            "5 bytes after its 200 answer to CONNECT",
        ),
        (
            "http",
            [&b"HTTP/1.1 200 OK\r\nX: "[..], &[b'a'; 20_000]].concat(),
            "longer than 16384 bytes",
        ),
        (
            "http",
            Vec::new(),
            "closed the connection without answering",
        ),
        ("socks5", vec![4, 0], "version 4 where SOCKS5 answers 5"),
    ];
    for (scheme, answer, expected) in cases {
        let proxy = fake_proxy(scheme, answer).await;
        let err = switchboard::connect_with("ws://127.0.0.1:9/", &through(proxy))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Proxy(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
    }
}
