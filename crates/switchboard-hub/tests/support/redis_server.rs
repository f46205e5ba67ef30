//! A `redis-server` of a test's own on a free loopback port, stopped by PID.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Every wait for the server is bounded by this.
const STEP: Duration = Duration::from_secs(10);

/// A `redis-server` of a test's own, killed (by PID) when dropped.
pub(crate) struct Redis {
    pub(crate) port: u16,
    /// Where a `SAVE` writes its dump (`None`: the current directory, never saved).
    dir: Option<std::path::PathBuf>,
    child: Option<Child>,
}

impl Redis {
    pub(crate) fn start() -> Self {
        Self::start_in(None)
    }

    /// With `dir`, a `SAVE` keeps the data for the next `run`.
    pub(crate) fn start_in(dir: Option<std::path::PathBuf>) -> Self {
        let port = crate::ports::free_port();
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.run();
        redis
    }

    /// Starts the server on its port (again, after `stop`); it never saves by itself.
    pub(crate) fn run(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        if let Some(dir) = &self.dir {
            command.arg("--dir").arg(dir);
        }
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + STEP;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a command on a connection of its own.
    pub(crate) async fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut con).await.unwrap()
    }

    /// Whether `key` exists.
    #[allow(dead_code)] // for the tests that look where keys went
    pub(crate) async fn exists(&self, key: &str) -> bool {
        self.command(&["EXISTS", key]).await == redis::Value::Int(1)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
