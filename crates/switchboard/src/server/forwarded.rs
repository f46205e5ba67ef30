//! The client's address behind proxies the server trusts: from `Forwarded` (RFC 7239) or else
//! `X-Forwarded-For`, and only when the connection comes from a trusted proxy. Anyone can send
//! those headers, so the chain is read from the right: each hop a trusted proxy added is
//! believed, and the first address not of a trusted proxy is the client. An entry that is not
//! an address (`unknown`, an obfuscated name) ends the walk at the proxy that wrote it.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub(crate) fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.ip().to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_for(headers).unwrap_or_else(|| x_forwarded_for(headers));
        for hop in hops.iter().rev() {
            let Some(ip) = hop else { break };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The `for=` of every `Forwarded` element, first hop first; `None` without the header.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut values = headers.get_all(FORWARDED).iter().peekable();
    values.peek()?;
    let mut hops = Vec::new();
    for value in values {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.eq_ignore_ascii_case("for").then_some(value)
            });
            if let Some(node) = node {
                hops.push(parse_node(node.trim().trim_matches('"')));
            }
        }
    }
    Some(hops)
}

/// The addresses of `X-Forwarded-For`, first hop first.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| {
            let list = value.to_str().unwrap_or("?");
            list.split(',').map(|hop| parse_node(hop.trim()))
        })
        .collect()
}

/// An address with or without a port: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `[2001:db8::1]` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 4711)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            trusted.client(peer("198.51.100.1"), &h),
            peer("198.51.100.1").ip()
        );
    }

    #[test]
    fn reads_x_forwarded_for_from_the_right() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client forged the first entry; the trusted proxy appended the address it saw.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.2")]);
        let client = trusted.client(peer("10.0.0.1"), &h);
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn prefers_forwarded_and_reads_its_forms() {
        let trusted = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let h = headers(&[
            ("x-forwarded-for", "192.0.2.99"),
            (
                "forwarded",
                r#"for="[2001:db8::5]:4711";proto=https, for=2001:db8:ffff::1"#,
            ),
        ]);
        let client = trusted.client(peer("10.1.2.3"), &h);
        assert_eq!(client, "2001:db8::5".parse::<IpAddr>().unwrap());
        let h = headers(&[("forwarded", "for=192.0.2.60:80;by=10.0.0.1")]);
        let client = trusted.client(peer("10.1.2.3"), &h);
        assert_eq!(client, "192.0.2.60".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn stops_at_an_entry_that_is_not_an_address() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("forwarded", "for=192.0.2.1, for=unknown, for=10.0.0.9")]);
        let client = trusted.client(peer("10.0.0.1"), &h);
        assert_eq!(client, "10.0.0.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_trusted_peer_without_headers_is_the_client() {
        let trusted = proxies(&["127.0.0.1/32"]);
        let client = trusted.client(peer("127.0.0.1"), &HeaderMap::new());
        assert_eq!(client, "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
