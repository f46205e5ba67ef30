//! Which proxy the environment names for a URL, following curl (`detect_proxy` in its
//! `lib/url.c`, `Curl_check_noproxy` in `lib/noproxy.c`): the variables it reads, in its
//! order, and its `no_proxy` matching.

use std::net::IpAddr;

use http::Uri;

use super::{Proxy, ProxyError};

/// The proxy `lookup` (an environment) names for `url`; `None` for none, or when `no_proxy`
/// exempts the host.
pub(super) fn for_url(
    url: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, ProxyError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ProxyError::Url(format!("{url}: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| ProxyError::Url(format!("{url}: no host")))?;
    let tls = matches!(uri.scheme_str(), Some("wss" | "https"));
    // Uppercase HTTP_PROXY is never read: in a CGI program it is the client's `Proxy:`
    // header, which would let any client pick the proxy ("httpoxy").
    let names: &[&str] = if tls {
        &[
            "wss_proxy",
            "WSS_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ]
    } else {
        &[
            "ws_proxy",
            "WS_PROXY",
            "http_proxy",
            "all_proxy",
            "ALL_PROXY",
        ]
    };
    let Some((variable, value)) = names
        .iter()
        .find_map(|name| lookup(name).map(|value| (*name, value)))
    else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let no_proxy = lookup("no_proxy").or_else(|| lookup("NO_PROXY"));
    if no_proxy.is_some_and(|list| exempts(&list, host)) {
        return Ok(None);
    }
    Proxy::parse(value).map(Some).map_err(|e| ProxyError::Env {
        variable: variable.to_owned(),
        why: match e {
            ProxyError::Url(why) => why,
            e => e.to_string(),
        },
    })
}

/// Whether the `no_proxy` list exempts `host` (as a URI gives it: IPv6 in brackets).
fn exempts(list: &str, host: &str) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<IpAddr> = bare.parse().ok();
    let name = host.strip_suffix('.').unwrap_or(host);
    list.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|entry| !entry.is_empty())
        .any(|entry| match ip {
            Some(ip) => ip_matches(entry, ip),
            None => name_matches(entry, name),
        })
}

/// `example.com` and `.example.com` match `example.com` and every name under it, not
/// `notexample.com`; case does not matter.
fn name_matches(entry: &str, name: &str) -> bool {
    let entry = entry.strip_suffix('.').unwrap_or(entry);
    let entry = entry.strip_prefix('.').unwrap_or(entry);
    if entry.is_empty() || entry.len() > name.len() {
        return false;
    }
    let (head, tail) = name.split_at(name.len() - entry.len());
    tail.eq_ignore_ascii_case(entry) && (head.is_empty() || head.ends_with('.'))
}

/// An address, or a block as `address/bits`, of the same family as `ip`.
fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let (address, bits) = match entry.split_once('/') {
        Some((address, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (address, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let address = address.trim_start_matches('[').trim_end_matches(']');
    match (address.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(block)), IpAddr::V4(ip)) => {
            prefix_matches(&block.octets(), &ip.octets(), bits)
        }
        (Ok(IpAddr::V6(block)), IpAddr::V6(ip)) => {
            prefix_matches(&block.octets(), &ip.octets(), bits)
        }
        _ => false,
    }
}

/// Whether the first `bits` bits agree (all of them when `None` or 0, as curl reads 0).
fn prefix_matches(block: &[u8], ip: &[u8], bits: Option<u32>) -> bool {
    let all = block.len() as u32 * 8;
    let bits = match bits {
        None | Some(0) => all,
        Some(bits) if bits > all => return false,
        Some(bits) => bits,
    };
    let whole = (bits / 8) as usize;
    if block[..whole] != ip[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        block[whole] & mask == ip[whole] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy_for(url: &str, env: &[(&str, &str)]) -> Option<String> {
        for_url(url, |name| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
        .map(|p| p.to_string())
    }

    #[test]
    fn the_scheme_picks_the_variable_as_curl_does() {
        let env = [
            ("http_proxy", "http://plain:1"),
            ("HTTPS_PROXY", "http://secure:2"),
            ("ALL_PROXY", "socks5h://all:3"),
        ];
        assert_eq!(proxy_for("ws://h/", &env).unwrap(), "http://plain:1");
        assert_eq!(proxy_for("wss://h/", &env).unwrap(), "http://secure:2");
        // Lowercase first, and ws_proxy/wss_proxy before the http ones.
        let env = [
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
            ("wss_proxy", "http://wss:3"),
        ];
        assert_eq!(proxy_for("wss://h/", &env).unwrap(), "http://wss:3");
        assert_eq!(proxy_for("wss://h/", &env[..2]).unwrap(), "http://lower:1");
    }

    #[test]
    fn uppercase_http_proxy_is_ignored() {
        let env = [("HTTP_PROXY", "http://attacker:1")];
        assert_eq!(proxy_for("ws://h/", &env), None);
        let env = [
            ("HTTP_PROXY", "http://attacker:1"),
            ("all_proxy", "http://all:2"),
        ];
        assert_eq!(proxy_for("ws://h/", &env).unwrap(), "http://all:2");
    }

    #[test]
    fn an_empty_variable_means_no_proxy() {
        let env = [("https_proxy", ""), ("ALL_PROXY", "http://all:2")];
        assert_eq!(proxy_for("wss://h/", &env), None);
    }

    #[test]
    fn a_bad_proxy_url_names_its_variable_not_its_password() {
        let e = for_url("ws://h/", |n| {
            (n == "all_proxy").then(|| "ftp://u:secret@p".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("invalid proxy url in all_proxy: "), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn no_proxy_names_match_themselves_and_their_subdomains() {
        let list = "localhost, .internal.example,Example.com.";
        assert!(exempts(list, "localhost"));
        assert!(exempts(list, "example.com"));
        assert!(exempts(list, "API.example.com"));
        assert!(exempts(list, "a.internal.example"));
        assert!(exempts(list, "internal.example"));
        assert!(exempts(list, "example.com."));
        assert!(!exempts(list, "notexample.com"));
        assert!(!exempts(list, "example.org"));
        assert!(!exempts(list, "localhost.example.org"));
    }

    #[test]
    fn no_proxy_addresses_match_exactly_or_by_prefix() {
        let list = "127.0.0.1,10.0.0.0/8,[::1],fd00::/8,192.168.1.0/33";
        assert!(exempts(list, "127.0.0.1"));
        assert!(!exempts(list, "127.0.0.2"));
        assert!(exempts(list, "10.200.3.4"));
        assert!(!exempts(list, "11.0.0.1"));
        assert!(exempts(list, "[::1]"));
        assert!(exempts(list, "[fdab::5]"));
        assert!(!exempts(list, "[fe80::1]"));
        // A prefix longer than the address matches nothing; names never match addresses.
        assert!(!exempts(list, "192.168.1.1"));
        assert!(!exempts("localhost", "127.0.0.1"));
        assert!(prefix_matches(&[10, 1, 2, 3], &[10, 1, 2, 100], Some(25)));
        assert!(!prefix_matches(&[10, 1, 2, 3], &[10, 1, 2, 100], Some(26)));
    }

    #[test]
    fn a_lone_star_exempts_every_host() {
        let env = [("all_proxy", "http://p:1"), ("NO_PROXY", "*")];
        assert_eq!(proxy_for("ws://anything/", &env), None);
        let env = [
            ("all_proxy", "http://p:1"),
            ("no_proxy", "other"),
            ("NO_PROXY", "*"),
        ];
        assert_eq!(proxy_for("ws://anything/", &env).unwrap(), "http://p:1");
        // In a list a star is no wildcard, as in curl.
        assert!(!exempts("*,other", "anything"));
    }
}
