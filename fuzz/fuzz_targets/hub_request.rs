//! Arbitrary text as a hub client's request, and as a JWT: decoding never panics, a refusal
//! always has a code and a reason, and a token is never accepted without the right signature.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use switchboard_hub::JwtKey;
use switchboard_hub::protocol::check_request;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match check_request(text) {
        Ok(_) => {}
        Err(e) => assert!(!e.reason.is_empty() && !e.code.as_str().is_empty()),
    }
    let key = JwtKey::hs256("fuzzing-secret-fuzzing-secret-32");
    // Only a token signed with the key verifies; the fuzzer cannot forge HMAC-SHA256.
    assert!(key.verify(text, SystemTime::now()).is_err());
});
