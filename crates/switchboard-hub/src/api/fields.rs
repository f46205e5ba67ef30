//! A request body's fields, each read on its own so that an error names the field, and the
//! JSON refusal every failed request gets.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// Why a request gets no result: its status, code and message.
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            status,
            code,
            message,
        }
    }

    /// 400 for `field`.
    pub(super) fn field(field: &str, reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{field}: {reason}"),
        )
    }

    pub(super) fn response(self) -> Response<Bytes> {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// The top-level fields of a JSON object body, unparsed.
pub(super) struct Fields(HashMap<String, Box<RawValue>>);

impl Fields {
    /// An empty body counts as `{}`.
    pub(super) fn parse(body: &Bytes) -> Result<Self, Refusal> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(HashMap::new()));
        }
        serde_json::from_slice(body)
            .map(Self)
            .map_err(|e| Refusal::field("body", &format!("not a JSON object: {e}")))
    }

    pub(super) fn optional<T: DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, Refusal> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|e| Refusal::field(name, &e.to_string())),
        }
    }

    pub(super) fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, Refusal> {
        self.optional(name)?
            .ok_or_else(|| Refusal::field(name, "missing"))
    }

    /// `data`, as the exact JSON sent.
    pub(super) fn data(&mut self) -> Result<Box<RawValue>, Refusal> {
        self.0
            .remove("data")
            .ok_or_else(|| Refusal::field("data", "missing"))
    }
}
