//! Negotiation: the offers browsers and `ws` make, RFC 7692's examples, and answers our own
//! client must accept from our own server.

use http::HeaderValue;
use http::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};
use proptest::prelude::*;

use super::*;

fn headers(values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for v in values {
        map.append(SEC_WEBSOCKET_EXTENSIONS, v.parse().unwrap());
    }
    map
}

fn negotiate(config: &DeflateConfig, values: &[&str]) -> Option<String> {
    config
        .negotiate(&headers(values))
        .map(|p| p.to_header().to_str().unwrap().to_owned())
}

#[test]
fn server_accepts_the_offers_browsers_and_ws_make() {
    let config = DeflateConfig::default();
    // Chromium and Firefox.
    assert_eq!(
        negotiate(&config, &["permessage-deflate; client_max_window_bits"]).as_deref(),
        Some("permessage-deflate")
    );
    // Node's ws.
    assert_eq!(
        negotiate(&config, &["permessage-deflate; client_max_window_bits=15"]).as_deref(),
        Some("permessage-deflate")
    );
    assert_eq!(
        negotiate(&config, &["permessage-deflate"]).as_deref(),
        Some("permessage-deflate")
    );
}

#[test]
fn rfc_7692_section_5_2_example_offers() {
    let config = DeflateConfig::default();
    // §7.1.2.1's example: both windows limited.
    assert_eq!(
        negotiate(
            &config,
            &["permessage-deflate; client_max_window_bits; server_max_window_bits=10"]
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    // §5.2: "permessage-deflate; server_max_window_bits=10, permessage-deflate": the
    // first is acceptable here.
    assert_eq!(
        negotiate(
            &config,
            &["permessage-deflate; server_max_window_bits=10, permessage-deflate"]
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    assert_eq!(
        negotiate(
            &config,
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"]
        )
        .as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

#[test]
fn bad_offers_are_declined_and_the_next_one_taken() {
    let config = DeflateConfig::default();
    for bad in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=x",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; foo",
    ] {
        assert_eq!(negotiate(&config, &[bad]), None, "{bad}");
        let list = format!("{bad}, permessage-deflate; client_no_context_takeover");
        assert_eq!(
            negotiate(&config, &[&list]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover"),
            "{list}"
        );
    }
    // Other extensions and malformed header lines are skipped.
    assert_eq!(
        negotiate(
            &config,
            &[
                "x-foo; a=\"unterminated",
                "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=\"12\""
            ]
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=12")
    );
    assert_eq!(negotiate(&config, &["x-foo"]), None);
    assert_eq!(negotiate(&config, &[]), None);
}

#[test]
fn server_configuration_limits_what_it_answers() {
    let config = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 12,
        client_max_window_bits: 10,
        ..DeflateConfig::default()
    };
    assert_eq!(
        negotiate(&config, &["permessage-deflate; client_max_window_bits"]).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=10"
        )
    );
    // Without the client's permission, no client_max_window_bits in the answer.
    assert_eq!(
        negotiate(&config, &["permessage-deflate; server_max_window_bits=9"]).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9"
        )
    );
}

#[test]
fn window_of_8_bits_is_accepted() {
    let config = DeflateConfig::default();
    assert_eq!(
        negotiate(
            &config,
            &["permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"]
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=8; client_max_window_bits=8")
    );
}

fn response(config: &DeflateConfig, value: &str) -> Result<Option<DeflateParams>, DeflateError> {
    config.accept_response(&headers(&[value]))
}

#[test]
fn client_accepts_answers_its_offer_allows() {
    let config = DeflateConfig::default();
    assert_eq!(
        response(&config, "permessage-deflate"),
        Ok(Some(DeflateParams::default()))
    );
    let agreed = response(
        &config,
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
    )
    .unwrap()
    .unwrap();
    assert!(agreed.server_no_context_takeover);
    assert_eq!(agreed.client_window_bits(), 9);
    assert_eq!(response(&config, "x-other"), Ok(None));
    let config = DeflateConfig {
        server_max_window_bits: 10,
        server_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let agreed = response(
        &config,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
    )
    .unwrap()
    .unwrap();
    assert_eq!(agreed.server_window_bits(), 9);
}

#[test]
fn client_refuses_answers_it_did_not_allow() {
    let config = DeflateConfig::default();
    for bad in [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; x=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; =",
    ] {
        assert!(response(&config, bad).is_err(), "{bad}");
    }
    let asked = DeflateConfig {
        server_max_window_bits: 10,
        server_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    assert_eq!(
        response(&asked, "permessage-deflate; server_max_window_bits=10"),
        Err(DeflateError::MissingParameter(
            "server_no_context_takeover".into()
        ))
    );
    assert_eq!(
        response(
            &asked,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"
        ),
        Err(DeflateError::InvalidValue("server_max_window_bits".into()))
    );
    assert_eq!(
        response(&asked, "permessage-deflate; server_no_context_takeover"),
        Err(DeflateError::MissingParameter(
            "server_max_window_bits".into()
        ))
    );
}

#[test]
fn offer_names_what_the_client_asks_for() {
    let config = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 12,
        ..DeflateConfig::default()
    };
    assert_eq!(
        config.offer(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=12"
    );
    // The server's side of the same configuration accepts it.
    let agreed = DeflateConfig::default()
        .negotiate(&headers(&[config.offer().to_str().unwrap()]))
        .unwrap();
    assert_eq!(
        config.accept_response(&headers(&[agreed.to_header().to_str().unwrap()])),
        Ok(Some(agreed))
    );
}
fn any_config() -> impl Strategy<Value = DeflateConfig> {
    (any::<[bool; 2]>(), 8u8..=15, 8u8..=15).prop_map(|([snct, cnct], sbits, cbits)| {
        DeflateConfig {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
            ..DeflateConfig::default()
        }
    })
}

proptest! {
    #[test]
    fn our_client_accepts_every_answer_of_our_server(
        client in any_config(),
        server in any_config(),
    ) {
        let offer = client.offer();
        let agreed = server.negotiate(&headers(&[offer.to_str().unwrap()]));
        let agreed = agreed.expect("a valid offer is accepted");
        let answer = agreed.to_header();
        let got = client.accept_response(&headers(&[answer.to_str().unwrap()]));
        let got = got.expect("our server's answer is valid").expect("accepted");
        // What each side then uses stays within what the other allowed.
        let server_bits = client.server_max_window_bits.min(server.server_max_window_bits);
        prop_assert!(got.server_window_bits() <= server_bits);
        let client_bits = client.client_max_window_bits.min(server.client_max_window_bits);
        prop_assert!(got.client_window_bits() <= client_bits);
        prop_assert_eq!(got.server_no_context_takeover,
            client.server_no_context_takeover || server.server_no_context_takeover);
    }

    #[test]
    fn arbitrary_extension_headers_never_panic(value in "[ -~]{0,80}") {
        if let Ok(value) = HeaderValue::from_str(&value) {
            let mut map = HeaderMap::new();
            map.insert(SEC_WEBSOCKET_EXTENSIONS, value);
            let _ = DeflateConfig::default().negotiate(&map);
            let _ = DeflateConfig::default().accept_response(&map);
        }
    }
}
