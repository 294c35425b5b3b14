//! The one place where errors become HTTP answers: status code, `{"error", "error_type"}` body, and
//! `Retry-After` on overload. Server-side failures are logged in full and answered briefly.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::ErrorBody;

use crate::runtime::RuntimeError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON, or not the expected JSON shape.
    #[error("malformed request body: {0}")]
    MalformedJson(String),
    /// Valid JSON that does not fit the model: names, shapes, datatypes, counts.
    #[error("{0}")]
    InvalidInput(String),
    /// No such model (or version).
    #[error("{0}")]
    ModelNotFound(String),
    /// The body is larger than `--max-body-size`.
    #[error("request body is larger than the {0}-byte limit")]
    PayloadTooLarge(usize),
    /// The body could not be read (client went away, broken framing).
    #[error("cannot read request body: {0}")]
    BodyRead(String),
    /// The runtime could not serve it.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl ApiError {
    /// Stable label used as `error_type` and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyRead(_) => "body_read_failed",
            ApiError::Runtime(e) => e.kind(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::InvalidInput(_) | ApiError::BodyRead(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Runtime(RuntimeError::QueueFull(_)) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Runtime(RuntimeError::NotReady(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Runtime(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            // libtorch messages carry C++ backtraces: the log gets all of it, the client the first line.
            tracing::error!(error = %self, kind = self.kind(), "request failed");
            let full = self.to_string();
            let first = full.lines().next().unwrap_or_default();
            first.chars().take(300).collect()
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            error,
            error_type: Some(self.kind().to_string()),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_protocol_table() {
        let cases = [
            (ApiError::MalformedJson("x".into()), 400, "malformed_json"),
            (ApiError::InvalidInput("x".into()), 400, "invalid_input"),
            (ApiError::ModelNotFound("x".into()), 404, "model_not_found"),
            (ApiError::PayloadTooLarge(1), 413, "payload_too_large"),
            (RuntimeError::QueueFull(1).into(), 429, "queue_full"),
            (
                RuntimeError::NotReady("x".into()).into(),
                503,
                "model_not_ready",
            ),
            (RuntimeError::Tensor("x".into()).into(), 500, "tensor_error"),
        ];
        for (err, status, kind) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.kind(), kind);
        }
    }

    #[test]
    fn overload_says_when_to_retry() {
        let r = ApiError::from(RuntimeError::QueueFull(3)).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
