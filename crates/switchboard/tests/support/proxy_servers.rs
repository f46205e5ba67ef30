//! Real proxies from Debian for tests, each on a free loopback port, its configuration in a
//! directory of its own, stopped by its PID when dropped: `tinyproxy` (HTTP CONNECT, with or
//! without Basic auth), `danted` (Dante: SOCKS5 without auth, with a port allowed or
//! nothing), `microsocks` (SOCKS5 with a username and password). Shared by the library's
//! and the command line's tests; the test crate declares `mod temp` (the hub's TempDir).
#![allow(dead_code)] // each test binary uses a part

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::temp::TempDir;

/// How long a proxy may take to start listening.
const START: Duration = Duration::from_secs(10);

/// A proxy's process, killed by its PID when dropped (a failed test included).
pub(crate) struct Daemon {
    child: Child,
    pub(crate) port: u16,
    _dir: TempDir,
}

impl Daemon {
    /// Runs `program` with `args` until `port` on loopback takes connections.
    fn start(program: &str, package: &str, args: &[&str], port: u16, dir: TempDir) -> Self {
        Self::start_until(program, package, args, port, dir, |port| {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// Runs `program` with `args` until `ready(port)`.
    fn start_until(
        program: &str,
        package: &str,
        args: &[&str],
        port: u16,
        dir: TempDir,
        ready: impl Fn(u16) -> bool,
    ) -> Self {
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
        let deadline = Instant::now() + START;
        while !ready(port) {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{program} exited with {status}");
            }
            assert!(Instant::now() < deadline, "{program} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// `SCHEME://CREDENTIALS127.0.0.1:PORT`, e.g. `url("http", "ann:s3cret@")`.
    pub(crate) fn url_string(&self, scheme: &str, credentials: &str) -> String {
        format!("{scheme}://{credentials}127.0.0.1:{}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (until a proxy is started on it).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `tinyproxy` allowing CONNECT to `connect_port` only, with `BasicAuth ann s3cret` when
/// `auth`.
pub(crate) fn tinyproxy(connect_port: u16, auth: bool) -> Daemon {
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
pub(crate) fn danted(allowed: Option<u16>) -> Daemon {
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
    // Dante listens before its worker processes are up, and resets what arrives meanwhile:
    // ready once it answers a SOCKS5 greeting.
    Daemon::start_until(
        "danted",
        "dante-server",
        &["-f", &path, "-p", &pid, "-N", "1"],
        port,
        dir,
        socks5_answers,
    )
}

/// Whether a SOCKS5 server on `port` answers a greeting offering no authentication.
fn socks5_answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 2];
    stream.write_all(&[5, 1, 0]).is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && answer == [5, 0]
}

/// `microsocks` asking for the username `ann` and the password `s3cret`.
pub(crate) fn microsocks() -> Daemon {
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
