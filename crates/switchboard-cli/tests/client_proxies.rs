//! `connect --proxy` and `bench --proxy` (`--raw` too) through real proxies from Debian (tinyproxy,
//! microsocks; see the library's tests/support/proxy_servers.rs), and the proxy environment
//! variables as curl reads them: the flag wins, `--no-proxy` and `no_proxy` bypass them, and
//! uppercase `HTTP_PROXY` is never read. `-v` names the proxy without its password.

use std::process::{Command, Output, Stdio};

#[path = "../../switchboard/tests/support/proxy_servers.rs"]
mod proxy_servers;
mod support;
#[path = "../../switchboard-hub/tests/support/temp.rs"]
mod temp;

use proxy_servers::{free_port, microsocks, tinyproxy};
use support::Serve;

/// The proxy variables curl reads, removed from every run so that the machine's own do not
/// leak in.
const PROXY_VARIABLES: [&str; 12] = [
    "ws_proxy",
    "WS_PROXY",
    "wss_proxy",
    "WSS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// An echo server: its URL and port.
fn echo_server() -> (Serve, String, u16) {
    let serve = Serve::start(&["--mode", "echo"]);
    let url = serve.url();
    let port = url
        .trim_start_matches("ws://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    (serve, url, port)
}

/// `switchboard ARGS` with `env` as its only proxy variables.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args).stdin(Stdio::null());
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

/// `connect URL -x hello` (and `extra` flags): whether "hello" came back, and stderr.
fn hello(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut args = vec!["connect", url, "-x", "hello", "--connect-timeout", "10"];
    args.extend_from_slice(extra);
    let output = run(&args, env);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let echoed = output.status.success() && String::from_utf8_lossy(&output.stdout) == "hello\n";
    (echoed, stderr)
}

#[test]
fn connect_goes_through_the_proxy_flag_and_v_names_it_without_the_password() {
    let (_serve, url, port) = echo_server();
    let proxy = tinyproxy(port, true);
    let with_password = proxy.url_string("http", "ann:s3cret@");
    let (echoed, stderr) = hello(&url, &["-v", "--proxy", &with_password], &[]);
    assert!(echoed, "{stderr}");
    let shown = format!("proxy: http://ann:***@127.0.0.1:{}", proxy.port);
    assert!(stderr.contains(&shown), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let wrong = proxy.url_string("http", "ann:wrong@");
    let output = run(&["connect", &url, "-x", "hello", "--proxy", &wrong], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(": proxy answered 40"), "{stderr}");
    assert!(!stderr.contains("wrong"), "{stderr}");
}

#[test]
fn the_environment_picks_the_proxy_as_curl_does() {
    let (_serve, url, _) = echo_server();
    let socks = microsocks();
    let good = socks.url_string("socks5h", "ann:s3cret@");
    let dead = format!("http://127.0.0.1:{}", free_port());

    let (echoed, stderr) = hello(&url, &["-v"], &[("http_proxy", &good)]);
    assert!(echoed, "{stderr}");
    assert!(stderr.contains("proxy: socks5h://ann:***@"), "{stderr}");

    // A dead proxy in all_proxy is used, and reported...
    let (echoed, stderr) = hello(&url, &[], &[("all_proxy", &dead)]);
    assert!(!echoed);
    assert!(stderr.contains("cannot reach proxy 127.0.0.1:"), "{stderr}");
    // ...unless --no-proxy, no_proxy or the flag says otherwise.
    assert!(hello(&url, &["--no-proxy"], &[("all_proxy", &dead)]).0);
    assert!(
        hello(
            &url,
            &[],
            &[("all_proxy", &dead), ("NO_PROXY", "localhost,127.0.0.1")]
        )
        .0
    );
    assert!(hello(&url, &["--proxy", &good], &[("all_proxy", &dead)]).0);
    // Uppercase HTTP_PROXY is not read: a CGI program's environment holds a client's
    // `Proxy:` header under that name.
    let (echoed, stderr) = hello(&url, &["-v"], &[("HTTP_PROXY", &dead)]);
    assert!(echoed, "{stderr}");
    assert!(stderr.contains("proxy: none"), "{stderr}");
}

#[test]
fn bench_goes_through_the_proxy() {
    let (_serve, url, port) = echo_server();
    let proxy = tinyproxy(port, true);
    let with_password = proxy.url_string("http", "ann:s3cret@");
    let (report, stderr) = bench(&[&url, "--proxy", &with_password]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert!(stderr.contains("through proxy http://ann:***@"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// A second of `switchboard bench ARGS` on 2 connections: its JSON report and its stderr.
fn bench(args: &[&str]) -> (serde_json::Value, String) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend(["-c", "2", "--json", "--duration", "1s", "--warmup", "200ms"]);
    let output = run(&all, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {stderr}"));
    (report, stderr)
}

#[test]
fn bench_raw_goes_through_a_socks5_proxy() {
    let echo = support::RawEcho::start();
    let socks = microsocks();
    let proxy = socks.url_string("socks5", "ann:s3cret@");
    let (report, stderr) = bench(&[&echo.addr, "--raw", "--proxy", &proxy]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert!(
        stderr.contains("through proxy socks5://ann:***@"),
        "{stderr}"
    );
}
