//! Arbitrary bytes as a server's response head: parsing and validating never panic, a
//! response is accepted only with the right accept key, and a permessage-deflate answer only
//! within what was offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_proto::deflate::DeflateConfig;
use switchboard_proto::handshake::{accept_key, client};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let Ok(Some((response, len))) = client::parse_response(data, 4096) else {
        return;
    };
    assert!(len <= data.len());
    if client::validate_response(&response, KEY, &["chat"]).is_ok() {
        let accept = response.headers()["sec-websocket-accept"]
            .to_str()
            .unwrap_or("");
        assert_eq!(accept.trim(), accept_key(KEY.as_bytes()));
    }
    // Offered: server_max_window_bits=10, client_max_window_bits (any value).
    let offer = DeflateConfig { server_max_window_bits: 10, ..DeflateConfig::default() };
    if let Ok(agreed) = client::validate_response_with(&response, KEY, &[], Some(&offer)) {
        assert!(agreed.protocol.is_none());
        if let Some(params) = agreed.deflate {
            assert!((8..=10).contains(&params.server_window_bits()));
            assert!((8..=15).contains(&params.client_window_bits()));
        }
    }
});
