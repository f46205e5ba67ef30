//! Arbitrary bytes as a client's request head: parsing and validating never panic, and an
//! accepted request yields a 101 whose accept key is right.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_proto::handshake::{accept_key, server};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((request, len))) = server::parse_request(data, 4096) else {
        return;
    };
    assert!(len <= data.len() && len <= 4096);
    let _ = server::is_upgrade_request(&request);
    let _ = server::requested_protocols(&request).count();
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
