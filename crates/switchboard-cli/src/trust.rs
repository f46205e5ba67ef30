//! How the client commands (`connect`, `publish`, `bench`) trust a `wss://` or `https://`
//! server, from their `--ca` and `--insecure` flags.

use std::path::Path;

use anyhow::Context as _;
use switchboard::tls::ClientTls;

/// `None` for the default, the Mozilla roots; `--insecure` wins over `--ca` (clap keeps them
/// apart).
pub(crate) fn client_tls(ca: Option<&Path>, insecure: bool) -> anyhow::Result<Option<ClientTls>> {
    if insecure {
        return Ok(Some(ClientTls::dangerous_insecure()));
    }
    ca.map(|ca| ClientTls::from_ca_file(ca).with_context(|| format!("--ca {}", ca.display())))
        .transpose()
}
