//! Arbitrary bytes as a server's response head: parsing and validating never panic, and a
//! response is accepted only with the right accept key.
#![no_main]

use libfuzzer_sys::fuzz_target;
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
});
