//! The one place where errors become HTTP answers: status code, `{"error", "error_type"}` body, and
//! `Retry-After` on overload. Server-side failures are logged in full and answered briefly.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::ErrorBody;

use crate::runtime::RuntimeError;

/// Every value the `outcome` metric label can take: `success` and the `kind()` of one value of
/// each error variant ([`ApiError::one_of_each`]), derived rather than copied.
pub fn outcomes() -> Vec<&'static str> {
    let mut all = vec!["success"];
    for e in ApiError::one_of_each() {
        if !all.contains(&e.kind()) {
            all.push(e.kind());
        }
    }
    all
}

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
    /// Model control over HTTP is disabled.
    #[error("{0}")]
    Forbidden(String),
    /// A repository `load` failed; the index shows the reason too.
    #[error("{0}")]
    LoadFailed(String),
    /// More inference requests in flight than `--max-inflight`.
    #[error("the server is at its in-flight limit; retry later")]
    Overloaded,
    /// The client took longer than `--body-timeout` to send its body.
    #[error("the request body was not received within the body timeout")]
    BodyTimeout,
    /// The body could not be read (client went away, broken framing).
    #[error("cannot read request body: {0}")]
    BodyRead(String),
    /// A known path asked with a method it does not take (the router adds `Allow`, listing those
    /// it does).
    #[error("{method} is not allowed on {path} (the Allow header lists the methods that are)")]
    MethodNotAllowed { method: String, path: String },
    /// A restricted endpoint without the control key header (its name given).
    #[error("this endpoint is restricted: send the control key in the {0} header")]
    ControlKeyMissing(String),
    /// A restricted endpoint with a wrong control key.
    #[error("the control key in the {0} header is not the server's")]
    ControlKeyRejected(String),
    /// The router refused the request before a handler ran (e.g. a path parameter that is not
    /// valid UTF-8 once percent-decoded); the router's own reason.
    #[error("{0}")]
    BadRequest(String),
    /// The runtime could not serve it.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl ApiError {
    /// One value of every variant, runtime errors included (both kinds of deadline). A variant
    /// missing here fails `one_of_each_covers_every_variant`: [`variant`]'s match is exhaustive.
    pub fn one_of_each() -> Vec<ApiError> {
        let s = || String::from("x");
        vec![
            ApiError::MalformedJson(s()),
            ApiError::InvalidInput(s()),
            ApiError::ModelNotFound(s()),
            ApiError::PayloadTooLarge(1),
            ApiError::Forbidden(s()),
            ApiError::LoadFailed(s()),
            ApiError::Overloaded,
            ApiError::BodyTimeout,
            ApiError::BodyRead(s()),
            ApiError::MethodNotAllowed {
                method: s(),
                path: s(),
            },
            ApiError::BadRequest(s()),
            ApiError::ControlKeyMissing(s()),
            ApiError::ControlKeyRejected(s()),
            RuntimeError::QueueFull(1).into(),
            RuntimeError::NotReady(s()).into(),
            RuntimeError::DeadlineExceeded { client: false }.into(),
            RuntimeError::DeadlineExceeded { client: true }.into(),
            RuntimeError::Torch(s()).into(),
            RuntimeError::Tensor(s()).into(),
            RuntimeError::OutputMismatch(s()).into(),
            RuntimeError::Panicked(s()).into(),
        ]
    }

    /// Stable label used as `error_type` and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyRead(_) => "body_read_failed",
            ApiError::Forbidden(_) => "model_control_disabled",
            ApiError::Overloaded => "overloaded",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::LoadFailed(_) => "load_failed",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::ControlKeyMissing(_) => "control_key_missing",
            ApiError::ControlKeyRejected(_) => "control_key_rejected",
            ApiError::Runtime(e) => e.kind(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidInput(_)
            | ApiError::BodyRead(_)
            | ApiError::LoadFailed(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Forbidden(_) | ApiError::ControlKeyRejected(_) => StatusCode::FORBIDDEN,
            ApiError::ControlKeyMissing(_) => StatusCode::UNAUTHORIZED,
            ApiError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Runtime(RuntimeError::DeadlineExceeded { client: true }) => {
                StatusCode::REQUEST_TIMEOUT
            }
            ApiError::Runtime(RuntimeError::DeadlineExceeded { client: false }) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Runtime(RuntimeError::QueueFull(_)) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Runtime(RuntimeError::NotReady(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Runtime(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One line for the client: a TorchScript error's own `...Error: message` line when there is one
/// (the interpreter puts it last, after its traceback), else the first line; at most 300 characters.
pub fn summarize(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let raised = message.lines().rev().map(str::trim).find(|l| {
        l.split_once(": ")
            .is_some_and(|(head, _)| head.ends_with("Error") && !head.contains(' '))
    });
    let line = match raised {
        Some(r) if !first.contains(r) => format!("{first} {r}"),
        _ => first.to_string(),
    };
    line.chars().take(300).collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = if status.is_server_error()
            && !matches!(
                status,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
            ) {
            // libtorch messages carry backtraces: the log gets all of it, the client a summary.
            tracing::error!(error = %self, kind = self.kind(), "request failed");
            summarize(&self.to_string())
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

    /// A distinct number per variant (and per deadline kind); the match is exhaustive, so a new
    /// variant does not compile until it has one, and then must be in `one_of_each`.
    fn variant(e: &ApiError) -> usize {
        match e {
            ApiError::MalformedJson(_) => 0,
            ApiError::InvalidInput(_) => 1,
            ApiError::ModelNotFound(_) => 2,
            ApiError::PayloadTooLarge(_) => 3,
            ApiError::Forbidden(_) => 4,
            ApiError::LoadFailed(_) => 5,
            ApiError::Overloaded => 6,
            ApiError::BodyTimeout => 7,
            ApiError::BodyRead(_) => 8,
            ApiError::MethodNotAllowed { .. } => 9,
            ApiError::BadRequest(_) => 10,
            ApiError::ControlKeyMissing(_) => 11,
            ApiError::ControlKeyRejected(_) => 12,
            ApiError::Runtime(r) => match r {
                RuntimeError::QueueFull(_) => 13,
                RuntimeError::NotReady(_) => 14,
                RuntimeError::DeadlineExceeded { client: false } => 15,
                RuntimeError::DeadlineExceeded { client: true } => 16,
                RuntimeError::Torch(_) => 17,
                RuntimeError::Tensor(_) => 18,
                RuntimeError::OutputMismatch(_) => 19,
                RuntimeError::Panicked(_) => 20,
            },
        }
    }

    #[test]
    fn one_of_each_covers_every_variant() {
        let mut seen: Vec<usize> = ApiError::one_of_each().iter().map(variant).collect();
        seen.sort();
        assert_eq!(seen, (0..=20).collect::<Vec<_>>());
        let kinds = outcomes();
        assert_eq!(kinds.len(), 22, "success and 21 distinct kinds: {kinds:?}");
    }

    /// The README's error table lists exactly these kinds, each with its status code.
    #[test]
    fn the_readme_error_table_lists_every_kind_with_its_status() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("### Errors")
            .nth(1)
            .expect("README has ### Errors");
        let rows: Vec<(String, String)> = table
            .lines()
            .skip_while(|l| !l.starts_with("| case |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[2].to_string(), cells[3].trim_matches('`').to_string())
            })
            .collect();
        let mut listed: Vec<&str> = rows.iter().map(|(_, k)| k.as_str()).collect();
        listed.sort();
        listed.dedup();
        let mut kinds = outcomes();
        kinds.retain(|k| *k != "success");
        kinds.sort();
        assert_eq!(
            listed, kinds,
            "the README's error table and the code's kinds"
        );
        for e in ApiError::one_of_each() {
            let status = e.status().as_u16().to_string();
            assert!(
                rows.iter()
                    .any(|(st, k)| k == e.kind() && st.starts_with(&status)),
                "README row for {} says another status than {status}: {rows:?}",
                e.kind()
            );
        }
    }

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
            (
                RuntimeError::DeadlineExceeded { client: false }.into(),
                504,
                "deadline_exceeded",
            ),
            (
                RuntimeError::DeadlineExceeded { client: true }.into(),
                408,
                "client_timeout",
            ),
            (
                ApiError::Forbidden("x".into()),
                403,
                "model_control_disabled",
            ),
            (
                ApiError::MethodNotAllowed {
                    method: "GET".into(),
                    path: "/p".into(),
                },
                405,
                "method_not_allowed",
            ),
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
        ];
        for (err, status, kind) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.kind(), kind);
            assert!(outcomes().contains(&kind), "{kind} missing from outcomes()");
        }
    }

    #[test]
    fn torchscript_errors_are_summarised_with_their_raised_message() {
        let msg = "libtorch error: The following operation failed in the TorchScript interpreter.\n\
                   Traceback of TorchScript (most recent call last):\n  File \"code/__torch__.py\", line 9\n\
                   RuntimeError: input value above 1000\n";
        assert_eq!(
            summarize(msg),
            "libtorch error: The following operation failed in the TorchScript interpreter. RuntimeError: input value above 1000"
        );
        assert_eq!(summarize("plain\nsecond"), "plain");
        assert_eq!(summarize(&"x".repeat(400)).len(), 300);
    }

    #[test]
    fn overload_says_when_to_retry() {
        let r = ApiError::from(RuntimeError::QueueFull(3)).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
