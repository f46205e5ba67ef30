//! A claim on a TCP port for `serve --threads`, whose listeners share the port with
//! `SO_REUSEPORT`.
//!
//! `SO_REUSEPORT` lets any socket of the same user with the option join the port, so a second
//! `serve --threads` on the same address would start and silently take a share of the
//! connections. Before binding, the process claims the port: it binds a Unix socket in the
//! abstract namespace (Linux), named after the port. The kernel refuses a second bind of the
//! name and frees it when the process exits, however it exits, so there is no stale file to
//! clean up; and the namespace is per network namespace, as ports are. The claim is by port
//! alone, whatever the address: two `--threads` servers on one port of different addresses
//! refuse each other, the safe side of telling `0.0.0.0:P` from `127.0.0.1:P` (which do
//! overlap). Other listeners need no claim: a socket without `SO_REUSEPORT` and one with it
//! already refuse each other's bind.

use std::net::SocketAddr;

/// Held for as long as the port is served; dropping it frees the claim.
#[derive(Debug)]
pub(crate) struct PortLock {
    #[cfg(target_os = "linux")]
    _socket: std::os::unix::net::UnixDatagram,
}

/// Claims `addr`'s port for this process, or says that another process serves it.
///
/// # Errors
///
/// When another `switchboard serve --threads` holds the port ("address in use").
#[cfg(target_os = "linux")]
pub(crate) fn claim(addr: SocketAddr) -> anyhow::Result<PortLock> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};

    let name = format!("switchboard:tcp-port:{}", addr.port());
    let unix = UnixAddr::from_abstract_name(name.as_bytes())?;
    match UnixDatagram::bind_addr(&unix) {
        Ok(socket) => Ok(PortLock { _socket: socket }),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "cannot listen on {addr}: address in use (another switchboard serves port {})",
            addr.port()
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot claim port {}", addr.port()))),
    }
}

/// Elsewhere there is no abstract namespace, and no claim: `SO_REUSEPORT` is as the system
/// has it.
#[cfg(not(target_os = "linux"))]
pub(crate) fn claim(_addr: SocketAddr) -> anyhow::Result<PortLock> {
    Ok(PortLock {})
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_claimed_once_until_its_claim_is_dropped() {
        // A port no test binds: the claim is only a name.
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let first = claim(addr).unwrap();
        let second = claim("0.0.0.0:1".parse().unwrap()).unwrap_err();
        let message = format!("{second:#}");
        assert!(message.contains("0.0.0.0:1"), "{message}");
        assert!(message.contains("address in use"), "{message}");
        drop(first);
        claim(addr).unwrap();
    }
}
