//! Arbitrary bytes as a client's request head: parsing and validating never panic, an
//! accepted request yields a 101 whose accept key is right, and a permessage-deflate offer is
//! answered within the server's settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_proto::deflate::DeflateConfig;
use switchboard_proto::handshake::{accept_key, server};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((request, len))) = server::parse_request(data, 4096) else {
        return;
    };
    assert!(len <= data.len() && len <= 4096);
    let _ = server::is_upgrade_request(&request);
    let _ = server::requested_protocols(&request).count();
    let strict = DeflateConfig {
        server_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 12,
        ..DeflateConfig::default()
    };
    for config in [DeflateConfig::default(), strict] {
        if let Some(agreed) = config.negotiate(request.headers()) {
            assert!((8..=config.server_max_window_bits).contains(&agreed.server_window_bits()));
            assert!((8..=15).contains(&agreed.client_window_bits()));
            assert!(agreed.server_no_context_takeover || !config.server_no_context_takeover);
            assert!(agreed.to_header().to_str().is_ok());
        }
    }
    match server::accept_response(&request, None) {
        Ok(response) => {
            assert_eq!(response.status(), 101);
            let key = request.headers()["sec-websocket-key"].as_bytes();
            assert_eq!(
                response.headers()["sec-websocket-accept"],
                accept_key(key).as_str()
            );
            let mut out = Vec::new();
            server::write_response(&response, b"", &mut out);
        }
        Err(e) => {
            let (response, body) = server::reject_response(&e);
            assert!(response.status().is_client_error() || response.status().is_server_error());
            assert!(body.ends_with('\n'));
        }
    }
});
