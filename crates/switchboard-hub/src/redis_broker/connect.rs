//! How the broker opens its connections to one Redis server: TLS (`rediss://`, with a CA of
//! one's own and a client certificate), ACL user and password, and the connect timeout.
//!
//! The broker's other parts ask a [`Server`] for connections and never read the URL: errors
//! name the server (scheme, user, host and port), never the password.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo as _, ProtocolVersion, TlsCertificates,
};
use tokio::sync::mpsc;

use super::subscriber::Subscriber;
use crate::broker::BrokerError;

/// How the broker connects to Redis, besides the URL: TLS trust, credentials, and how long
/// opening a connection may take.
///
/// A `rediss://` URL trusts the Mozilla roots (`webpki-roots`) unless [`ca_pem`] is given.
/// User and password come from the URL (`redis://user:password@host:port`) unless given here,
/// which keeps a password out of the URL (and out of a process listing).
///
/// [`ca_pem`]: Self::ca_pem
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConnectOptions {
    /// CA certificates (PEM) that a `rediss://` server's certificate must chain to, instead of
    /// the Mozilla roots: for a Redis whose certificate a private CA signed.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its private key (PEM), for a server that asks for one
    /// (Redis's `tls-auth-clients`).
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The ACL user, instead of the URL's.
    pub username: Option<String>,
    /// The password (of the ACL user, or Redis's `requirepass`), instead of the URL's.
    pub password: Option<String>,
    /// The longest opening one connection may take: TCP, the TLS handshake and
    /// authentication.
    pub connect_timeout: Duration,
}

impl Default for RedisConnectOptions {
    /// The Mozilla roots, the URL's credentials, 3 s to connect.
    fn default() -> Self {
        Self {
            ca_pem: None,
            client_cert_pem: None,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Shows no key and no password.
impl fmt::Debug for RedisConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnectOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| ".."))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|_| ".."),
            )
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// One Redis server and how to open connections to it.
pub(super) struct Server {
    client: redis::Client,
    /// `redis://host:port` or `rediss://user@host:port`: which server, without a password.
    name: String,
    /// Where it is and how it is reached: the model for the other masters of its cluster.
    info: ConnectionInfo,
    options: RedisConnectOptions,
    /// A master of a Redis Cluster: its Pub/Sub is sharded (SSUBSCRIBE), over RESP3.
    sharded: bool,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("name", &self.name).finish()
    }
}

impl Server {
    /// The server at `url`, connected to as `options` say; a request on its connections
    /// fails after `response_timeout` without an answer.
    pub(super) fn new(
        url: &str,
        options: &RedisConnectOptions,
        response_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        // The message never quotes the URL: it may hold a password.
        let invalid = |e: &dyn fmt::Display| unavailable(format!("invalid redis url: {e}"));
        let info = url.into_connection_info().map_err(|e| invalid(&e))?;
        let mut redis = info.redis_settings().clone();
        if let Some(username) = &options.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &options.password {
            redis = redis.set_password(password);
        }
        // Requests are small and latency matters: no Nagle delay behind an unacknowledged one.
        let info = info
            .set_redis_settings(redis)
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        Self::build(info, options, response_timeout, false)
    }

    /// The master of this server's cluster at `host:port`, reached the same way (scheme,
    /// TLS trust, credentials); its Pub/Sub is sharded.
    pub(super) fn member(&self, host: &str, port: u16) -> Result<Self, BrokerError> {
        let addr = match self.info.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let info = self.info.clone().set_addr(addr);
        Self::build(info, &self.options, self.response_timeout, true)
    }

    fn build(
        info: ConnectionInfo,
        options: &RedisConnectOptions,
        response_timeout: Duration,
        sharded: bool,
    ) -> Result<Self, BrokerError> {
        let invalid = |e: &dyn fmt::Display| unavailable(format!("invalid redis url: {e}"));
        let name = name(info.addr(), info.redis_settings().username());
        let info = if sharded {
            // Sharded Pub/Sub messages arrive as RESP3 pushes on an ordinary connection.
            let redis = info.redis_settings().clone();
            info.set_redis_settings(redis.set_protocol(ProtocolVersion::RESP3))
        } else {
            info
        };
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let client = if options.ca_pem.is_none() && options.client_cert_pem.is_none() {
            redis::Client::open(info.clone()).map_err(|e| invalid(&format_args!("{name}: {e}")))?
        } else if !tls {
            return Err(invalid(&format_args!(
                "a CA or client certificate needs rediss:// ({name})"
            )));
        } else {
            let has_certificate = |pem: &[u8]| {
                const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
                pem.windows(BEGIN.len()).any(|w| w == BEGIN)
            };
            if let Some(ca) = &options.ca_pem
                && !has_certificate(ca)
            {
                return Err(unavailable(format!(
                    "the CA for {name} holds no PEM certificate"
                )));
            }
            let certificates = TlsCertificates {
                client_tls: options
                    .client_cert_pem
                    .clone()
                    .map(|(client_cert, client_key)| ClientTlsConfig {
                        client_cert,
                        client_key,
                    }),
                root_cert: options.ca_pem.clone(),
            };
            redis::Client::build_with_tls(info.clone(), certificates)
                .map_err(|e| unavailable(format!("invalid TLS settings for {name}: {e}")))?
        };
        Ok(Self {
            client,
            name,
            info,
            options: options.clone(),
            sharded,
            connect_timeout: options.connect_timeout,
            response_timeout,
        })
    }

    /// `redis://host:port` or `rediss://user@host:port`: which server, without a password.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The connection for requests, which reconnects by itself after it is lost. It has
    /// answered a PING: a server that wants credentials and got none refuses only commands,
    /// not the connection.
    pub(super) async fn manager(&self) -> Result<ConnectionManager, BrokerError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let mut con = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| self.cannot_connect(&e))?;
        match redis::cmd("PING").query_async::<()>(&mut con).await {
            Ok(()) => Ok(con),
            Err(e) if e.is_timeout() => Err(unavailable(format!(
                "redis at {} did not answer PING within the response timeout ({:?})",
                self.name, self.response_timeout
            ))),
            Err(e) => Err(self.cannot_connect(&e)),
        }
    }

    /// A Pub/Sub connection (made again by the follower when it is lost).
    pub(super) async fn pubsub(&self) -> Result<Subscriber, BrokerError> {
        let connect = async {
            if !self.sharded {
                return self
                    .client
                    .get_async_pubsub()
                    .await
                    .map(Subscriber::classic);
            }
            let (pushes, received) = mpsc::unbounded_channel();
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                .set_push_sender(pushes);
            let con = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            Ok(Subscriber::sharded(con, received))
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(subscriber)) => Ok(subscriber),
            Ok(Err(e)) => Err(self.cannot_connect(&e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn cannot_connect(&self, e: &redis::RedisError) -> BrokerError {
        if e.is_timeout() {
            return self.timed_out();
        }
        unavailable(format!("cannot connect to redis at {}: {e}", self.name))
    }

    fn timed_out(&self) -> BrokerError {
        unavailable(format!(
            "cannot connect to redis at {}: no answer within the connect timeout ({:?})",
            self.name, self.connect_timeout
        ))
    }
}

fn unavailable(why: String) -> BrokerError {
    BrokerError::Unavailable(why)
}

fn name(addr: &ConnectionAddr, username: Option<&str>) -> String {
    let user = username.map(|u| format!("{u}@")).unwrap_or_default();
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("redis://{user}{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{user}{host}:{port}"),
        other => format!("redis at {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str, options: &RedisConnectOptions) -> Result<Server, String> {
        Server::new(url, options, Duration::from_secs(1)).map_err(|e| e.to_string())
    }

    #[test]
    fn names_hide_the_password() {
        let options = RedisConnectOptions::default();
        let plain = server("redis://alice:s3cret@127.0.0.1:6390/2", &options).unwrap();
        assert_eq!(plain.name, "redis://alice@127.0.0.1:6390");
        let tls = server("rediss://:s3cret@localhost", &options).unwrap();
        assert_eq!(tls.name, "rediss://localhost:6379");
        let given = RedisConnectOptions {
            username: Some("bob".into()),
            password: Some("s3cret".into()),
            ..RedisConnectOptions::default()
        };
        let named = server("redis://127.0.0.1:6390", &given).unwrap();
        assert_eq!(named.name, "redis://bob@127.0.0.1:6390");
        assert!(!format!("{given:?}").contains("s3cret"));
        assert!(!format!("{named:?}").contains("s3cret"));
    }

    #[test]
    fn tls_options_need_rediss() {
        let options = RedisConnectOptions {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            ..RedisConnectOptions::default()
        };
        let e = server("redis://:s3cret@127.0.0.1:6390", &options).unwrap_err();
        assert!(e.contains("needs rediss://"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let bad_key = RedisConnectOptions {
            client_cert_pem: Some((b"no cert".to_vec(), b"no key".to_vec())),
            ..RedisConnectOptions::default()
        };
        let e = server("rediss://:s3cret@127.0.0.1:6390", &bad_key).unwrap_err();
        assert!(
            e.contains("invalid TLS settings for rediss://127.0.0.1:6390"),
            "{e}"
        );
        let e = server("redis://:s3cret@[bad", &RedisConnectOptions::default()).unwrap_err();
        assert!(e.contains("invalid redis url"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
