//! TLS for `wss://`, with rustls (the *ring* provider): a server identity ([`ServerTls`]) from
//! PEM files or a self-signed certificate for local development, and the client's trust
//! ([`ClientTls`]): the Mozilla roots of `webpki-roots`, a CA file, or, for development only,
//! none.
//!
//! Both sides offer ALPN `http/1.1`, the protocol a WebSocket handshake runs over (RFC 6455
//! §4.1); a client that offers nothing is accepted too. A server with HTTP/2 on (the default)
//! offers `h2` first, for browsers to open their WebSockets on the page's own connection
//! (RFC 8441), and so does a client that asks for HTTP/2.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The rustls crate, for callers that build their own [`rustls::ServerConfig`] or
/// [`rustls::ClientConfig`].
pub use rustls;

/// The ALPN protocol both sides offer.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The ALPN protocol of HTTP/2 over TLS (RFC 9113 §3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// PEM input held no certificate.
    #[error("{0}: no certificate found in the pem input")]
    NoCertificate(String),
    /// PEM input held no private key, or one that could not be parsed.
    #[error("{what}: no usable private key in the pem input: {reason}")]
    NoPrivateKey {
        /// Where the key was looked for.
        what: String,
        /// What the parser said.
        reason: String,
    },
    /// PEM input was malformed.
    #[error("{what}: invalid pem: {reason}")]
    Pem {
        /// Where.
        what: String,
        /// What the parser said.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// The server side of TLS: the certificate chain and key to present.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use switchboard::{Server, tls::ServerTls};
///
/// let tls = ServerTls::from_pem_files("cert.pem", "key.pem")?;
/// let server = Server::builder().tls(tls).bind("0.0.0.0:443").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// Whether the server sets the ALPN protocols (not for a configuration given as it is).
    own_alpn: bool,
    leaf: Option<CertificateDer<'static>>,
    self_signed_pem: Option<String>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads a certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1)
    /// from PEM files.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, holds no certificate or key, or a key that does not match.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = parse_certificates(&cert_pem, &cert.display().to_string())?;
        let key = parse_key(&key_pem, &key.display().to_string())?;
        Self::from_parts(chain, key, None)
    }

    /// A certificate chain and key given as PEM text.
    ///
    /// # Errors
    ///
    /// As [`from_pem_files`](Self::from_pem_files).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = parse_certificates(cert_pem, "certificate")?;
        let key = parse_key(key_pem, "key")?;
        Self::from_parts(chain, key, None)
    }

    /// Generates a self-signed certificate for `names` (DNS names or IP addresses), for local
    /// development: clients trust it only when told to (its PEM as a CA, its
    /// [`fingerprint`](Self::fingerprint), or an insecure client).
    ///
    /// # Errors
    ///
    /// [`TlsError::Generate`] for a name that cannot go in a certificate.
    pub fn self_signed<I, S>(names: I) -> Result<Self, TlsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let key = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let pem = cert.pem();
        Self::from_parts(vec![cert.der().clone()], key, Some(pem))
    }

    /// Uses a rustls configuration as it is, ALPN included: list `http/1.1`, and `h2` before
    /// it for HTTP/2 (served when the server's [`http2`](crate::ServerBuilder::http2) is on).
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            config,
            own_alpn: false,
            leaf: None,
            self_signed_pem: None,
        }
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        self_signed_pem: Option<String>,
    ) -> Result<Self, TlsError> {
        let leaf = chain.first().cloned();
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Self {
            config: Arc::new(config),
            own_alpn: true,
            leaf,
            self_signed_pem,
        })
    }

    /// The SHA-256 fingerprint of the leaf certificate, as colon-separated upper-case hex
    /// (the form browsers and `openssl x509 -fingerprint -sha256` show); `None` for a
    /// configuration given with [`from_config`](Self::from_config).
    pub fn fingerprint(&self) -> Option<String> {
        self.leaf.as_ref().map(|der| fingerprint(der))
    }

    /// The PEM text of a certificate made by [`self_signed`](Self::self_signed), for a client
    /// to trust ([`ClientTls::from_ca_pem`]).
    pub fn self_signed_pem(&self) -> Option<&str> {
        self.self_signed_pem.as_deref()
    }

    /// The acceptor, offering ALPN `h2` then `http/1.1` when `http2`, else `http/1.1` only.
    pub(crate) fn acceptor(&self, http2: bool) -> tokio_rustls::TlsAcceptor {
        if !self.own_alpn || !http2 {
            return tokio_rustls::TlsAcceptor::from(self.config.clone());
        }
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// The ALPN protocols the server offers, for the log.
    pub(crate) fn alpn_offered(&self, http2: bool) -> Vec<String> {
        let acceptor = self.acceptor(http2);
        let config = acceptor.config();
        config
            .alpn_protocols
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }
}

/// The client side of TLS: which servers to trust.
///
/// The client offers ALPN `http/1.1`, and `h2` before it when it asks for HTTP/2
/// ([`ConnectOptions::http2`](crate::ConnectOptions::http2)); a configuration given with
/// [`from_config`](Self::from_config) offers what it lists.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    /// The same with ALPN `h2` then `http/1.1`, made on first use (`None` for a configuration
    /// given as it is).
    http2: Option<Arc<OnceLock<Arc<rustls::ClientConfig>>>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl Default for ClientTls {
    /// [`webpki_roots`](Self::webpki_roots).
    fn default() -> Self {
        Self::webpki_roots()
    }
}

impl ClientTls {
    /// Trusts the Mozilla root certificates (the `webpki-roots` crate), as browsers do. The
    /// configuration is built once per process.
    pub fn webpki_roots() -> Self {
        static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        let config = CONFIG.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(client_config(roots))
        });
        Self::own(config.clone())
    }

    /// Trusts the certificates of a PEM file (a private CA, or a self-signed server
    /// certificate), and only those.
    ///
    /// # Errors
    ///
    /// A file that cannot be read or holds no usable certificate.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let pem = read(path)?;
        Self::from_ca(&pem, &path.display().to_string())
    }

    /// Trusts the certificates of PEM text, and only those.
    ///
    /// # Errors
    ///
    /// PEM text that holds no usable certificate.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::from_ca(pem, "ca certificate")
    }

    fn from_ca(pem: &[u8], what: &str) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in parse_certificates(pem, what)? {
            roots.add(cert)?;
        }
        Ok(Self::own(Arc::new(client_config(roots))))
    }

    /// Trusts any certificate for any name: the connection is encrypted but the server is not
    /// authenticated, so anyone on the path can impersonate it. For development against a
    /// self-signed certificate only.
    pub fn dangerous_insecure() -> Self {
        let provider = provider();
        let verifier = Arc::new(AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            // The ring provider supports the default versions.
            .expect("default protocol versions are supported")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Self::own(Arc::new(config))
    }

    /// Uses a rustls configuration as it is, ALPN included: list `h2` before `http/1.1` for
    /// HTTP/2.
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            config,
            http2: None,
        }
    }

    /// A configuration whose ALPN the client sets.
    fn own(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            config,
            http2: Some(Arc::default()),
        }
    }

    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }

    /// The connector offering ALPN `h2` then `http/1.1` (a configuration given as it is
    /// offers what it lists).
    pub(crate) fn connector_http2(&self) -> tokio_rustls::TlsConnector {
        let Some(http2) = &self.http2 else {
            return self.connector();
        };
        let config = http2.get_or_init(|| {
            let mut config = (*self.config).clone();
            config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
            Arc::new(config)
        });
        tokio_rustls::TlsConnector::from(config.clone())
    }
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:...`.
fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(roots: RootCertStore) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // The ring provider supports the default versions.
        .expect("default protocol versions are supported")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(what.to_owned()));
    }
    Ok(chain)
}

fn parse_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::NoPrivateKey {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// The server name to check a certificate against (and send as SNI).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))
}

/// Accepts every certificate; signatures are still checked, so the handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_has_a_sha256_fingerprint_and_pem() {
        let tls = ServerTls::self_signed(["localhost", "127.0.0.1"]).unwrap();
        let fp = tls.fingerprint().unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.split(':').all(|b| b.len() == 2));
        let pem = tls.self_signed_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        ClientTls::from_ca_pem(pem.as_bytes()).unwrap();
    }

    #[test]
    fn pem_without_a_certificate_or_key_is_an_error_that_says_so() {
        let err = ServerTls::from_pem(b"nothing here", b"").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
        let tls = ServerTls::self_signed(["localhost"]).unwrap();
        let cert = tls.self_signed_pem().unwrap();
        let err = ServerTls::from_pem(cert.as_bytes(), b"").unwrap_err();
        assert!(err.to_string().contains("no usable private key"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err =
            ServerTls::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
