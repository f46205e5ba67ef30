//! Why a request to the Pusher HTTP API was refused: a status and a plain text reason, as
//! Pusher answers (the official libraries show the text in the error they raise).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::hub::HubError;

/// A refused request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) reason: String,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    /// 400: a body or parameter that is not what the endpoint takes.
    pub(super) fn bad(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    pub(super) fn response(&self) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(format!("{}\n", self.reason)));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// A hub call that failed: too large is 413, the broker's failures 503, the rest 400.
impl From<HubError> for Refusal {
    fn from(e: HubError) -> Self {
        let status = match e {
            HubError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HubError::Unavailable(_) | HubError::Partial { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}
