//! The hub's HTTP API, called directly: each refusal status with its JSON error, and
//! publish (idempotent too) and info answered.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use switchboard_hub::{HttpApi, Hub, HubConfig, LocalBroker};

async fn api() -> HttpApi {
    let hub = Hub::new(Arc::new(LocalBroker::default()), HubConfig::default())
        .await
        .unwrap();
    assert!(HttpApi::new(hub.clone(), []).is_none(), "no key, no API");
    HttpApi::new(hub, ["k1".to_owned(), "k2".to_owned()]).unwrap()
}

async fn call(
    api: &HttpApi,
    method: Method,
    path: &str,
    key: &str,
    body: &str,
) -> (StatusCode, Value, Response<Bytes>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body.to_owned()))
        .unwrap();
    let response = api.handle(request).await;
    let value = serde_json::from_slice(response.body()).unwrap();
    (response.status(), value, response)
}

#[tokio::test]
async fn refusals_are_json_with_their_status() {
    let api = api().await;
    let (status, body, _) = call(&api, Method::POST, "/api/nope", "k1", "{}").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, _, response) = call(&api, Method::GET, "/api/info", "k1", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    let (status, _, _) = call(&api, Method::POST, "/api/info", "bad", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) = call(&api, Method::POST, "/api/publish", "k2", r#"{"data":1}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "channel: missing");
    let (status, body, _) = call(
        &api,
        Method::POST,
        "/api/history",
        "k2",
        r#"{"channel":"a","limit":"x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("limit: "),
        "{body}"
    );
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/info")
        .header(header::AUTHORIZATION, "Bearer k1")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    assert_eq!(
        api.handle(request).await.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn publish_is_idempotent_and_info_answers() {
    let api = api().await;
    let body = r#"{"channel":"orders","data":{"id":7},"idempotency_key":"o7"}"#;
    let (status, first, _) = call(&api, Method::POST, "/api/publish", "k1", body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["offset"], 1);
    let (_, again, _) = call(&api, Method::POST, "/api/publish", "k1", body).await;
    assert_eq!(again, first);
    let (_, history, _) = call(
        &api,
        Method::POST,
        "/api/history",
        "k1",
        r#"{"channel":"orders"}"#,
    )
    .await;
    assert_eq!(history["publications"].as_array().unwrap().len(), 1);
    assert_eq!(history["publications"][0]["data"], json!({"id": 7}));
    let (status, info, _) = call(&api, Method::POST, "/api/info", "k1", "").await;
    assert_eq!((status, &info["connections"]), (StatusCode::OK, &json!(0)));
}
