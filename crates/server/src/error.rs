//! The one place where errors become HTTP answers: status code, `{"error", "error_type"}` body, and
//! `Retry-After` on overload. Server-side failures are logged in full and answered briefly.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::ErrorBody;

use protocol::CodecError;

use crate::control_key::ControlKeyError;
use crate::registry::RegistryError;
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

/// Everything a request can fail with: each stage's own error, and what the HTTP layer adds.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body did not decode against the model (see [`protocol::codec`]).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The registry could not look the model up, load or unload it.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The runtime could not serve it.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A restricted endpoint without the right control key.
    #[error(transparent)]
    ControlKey(#[from] ControlKeyError),
    /// A request parameter that decodes but that this model cannot honour (e.g. a priority
    /// beyond its levels).
    #[error("{0}")]
    InvalidInput(String),
    /// The body is larger than `--max-body-size`.
    #[error("request body is larger than the {0}-byte limit")]
    PayloadTooLarge(usize),
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
    /// No route has this path. Same `error_type` as an unknown model (clients written for
    /// Triton treat both as "nothing served here").
    #[error("no such endpoint: {0}")]
    NoSuchEndpoint(String),
    /// A `Content-Encoding` other than gzip and deflate (the decompression layer's 415).
    #[error("Content-Encoding not supported: send the body as it is, gzip or deflate (Accept-Encoding lists them)")]
    UnsupportedEncoding,
    /// The router refused the request before a handler ran (e.g. a path parameter that is not
    /// valid UTF-8 once percent-decoded); the router's own reason.
    #[error("{0}")]
    BadRequest(String),
    /// A Triton endpoint this server deliberately does not serve (trace settings, shared memory,
    /// a log setting with no counterpart here); the message says why and what to use instead.
    #[error("{0}")]
    NotSupported(String),
}

impl ApiError {
    /// One value of every variant, the stages' errors included (each from its own
    /// `one_of_each`, both kinds of deadline). A variant missing here fails
    /// `one_of_each_covers_every_variant`: its `variant` match is exhaustive.
    pub fn one_of_each() -> Vec<ApiError> {
        let s = || String::from("x");
        let mut all: Vec<ApiError> = vec![
            ApiError::InvalidInput(s()),
            ApiError::PayloadTooLarge(1),
            ApiError::Overloaded,
            ApiError::BodyTimeout,
            ApiError::BodyRead(s()),
            ApiError::MethodNotAllowed {
                method: s(),
                path: s(),
            },
            ApiError::BadRequest(s()),
            ApiError::NoSuchEndpoint(s()),
            ApiError::UnsupportedEncoding,
            ApiError::NotSupported(s()),
            ControlKeyError::Missing(s()).into(),
            ControlKeyError::Rejected(s()).into(),
            RuntimeError::QueueFull(1).into(),
            RuntimeError::NotReady(s()).into(),
            RuntimeError::DeadlineExceeded { client: false }.into(),
            RuntimeError::DeadlineExceeded { client: true }.into(),
            RuntimeError::Torch(s()).into(),
            RuntimeError::Tensor(s()).into(),
            RuntimeError::OutputMismatch(s()).into(),
            RuntimeError::Panicked(s()).into(),
        ];
        all.extend(CodecError::one_of_each().into_iter().map(ApiError::from));
        all.extend(RegistryError::one_of_each().into_iter().map(ApiError::from));
        all
    }

    /// Stable label used as `error_type` and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Codec(e) => e.kind(),
            ApiError::Registry(e) => e.kind(),
            ApiError::Runtime(e) => e.kind(),
            ApiError::ControlKey(e) => e.kind(),
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyRead(_) => "body_read_failed",
            ApiError::Overloaded => "overloaded",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NoSuchEndpoint(_) => "model_not_found",
            ApiError::UnsupportedEncoding => "unsupported_encoding",
            ApiError::NotSupported(_) => "not_supported",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Codec(CodecError::Encode(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Codec(_)
            | ApiError::InvalidInput(_)
            | ApiError::BodyRead(_)
            | ApiError::Registry(RegistryError::InvalidName(_) | RegistryError::LoadFailed(_))
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Registry(RegistryError::NotFound(_)) | ApiError::NoSuchEndpoint(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Registry(RegistryError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Registry(RegistryError::ControlDisabled)
            | ApiError::ControlKey(ControlKeyError::Rejected(_)) => StatusCode::FORBIDDEN,
            ApiError::ControlKey(ControlKeyError::Missing(_)) => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Runtime(e) => runtime_status(e),
        }
    }
}

impl ApiError {
    /// What the client is told (HTTP body and gRPC status alike). libtorch messages carry
    /// backtraces: the log gets all of it, the client a summary.
    fn client_message(&self) -> String {
        let status = self.status();
        if status.is_server_error()
            && !matches!(
                status,
                StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
                    | StatusCode::NOT_IMPLEMENTED
            )
        {
            tracing::error!(error = %self, kind = self.kind(), "request failed");
            summarize(&self.to_string())
        } else {
            self.to_string()
        }
    }

    /// The gRPC status code, from the HTTP status (the one mapping), as KServe's gRPC protocol
    /// pairs them.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                tonic::Code::InvalidArgument
            }
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
                tonic::Code::Unimplemented
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => {
                tonic::Code::ResourceExhausted
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                tonic::Code::DeadlineExceeded
            }
            _ => tonic::Code::Internal,
        }
    }
}

/// The same message as the HTTP body's `error`, the stable kind in `torchship-error-kind`, and for
/// overload the same `retry-after` as HTTP's 429.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        let mut status = tonic::Status::new(e.grpc_code(), e.client_message());
        let meta = status.metadata_mut();
        if let Ok(kind) = e.kind().parse() {
            meta.insert("torchship-error-kind", kind);
        }
        if e.status() == StatusCode::TOO_MANY_REQUESTS {
            meta.insert(
                "retry-after",
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        status
    }
}

fn runtime_status(e: &RuntimeError) -> StatusCode {
    match e {
        RuntimeError::DeadlineExceeded { client: true } => StatusCode::REQUEST_TIMEOUT,
        RuntimeError::DeadlineExceeded { client: false } => StatusCode::GATEWAY_TIMEOUT,
        RuntimeError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
        RuntimeError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        RuntimeError::Torch(_)
        | RuntimeError::Tensor(_)
        | RuntimeError::OutputMismatch(_)
        | RuntimeError::Panicked(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
        let error = self.client_message();
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
            ApiError::InvalidInput(_) => 0,
            ApiError::PayloadTooLarge(_) => 1,
            ApiError::Overloaded => 2,
            ApiError::BodyTimeout => 3,
            ApiError::BodyRead(_) => 4,
            ApiError::MethodNotAllowed { .. } => 5,
            ApiError::BadRequest(_) => 6,
            ApiError::ControlKey(ControlKeyError::Missing(_)) => 7,
            ApiError::ControlKey(ControlKeyError::Rejected(_)) => 8,
            ApiError::Runtime(r) => match r {
                RuntimeError::QueueFull(_) => 9,
                RuntimeError::NotReady(_) => 10,
                RuntimeError::DeadlineExceeded { client: false } => 11,
                RuntimeError::DeadlineExceeded { client: true } => 12,
                RuntimeError::Torch(_) => 13,
                RuntimeError::Tensor(_) => 14,
                RuntimeError::OutputMismatch(_) => 15,
                RuntimeError::Panicked(_) => 16,
            },
            ApiError::Codec(c) => match c {
                CodecError::Malformed(_) => 17,
                CodecError::Invalid(_) => 18,
                CodecError::Encode(_) => 19,
            },
            ApiError::Registry(r) => match r {
                RegistryError::NotFound(_) => 20,
                RegistryError::Unavailable(_) => 21,
                RegistryError::ControlDisabled => 22,
                RegistryError::InvalidName(_) => 23,
                RegistryError::LoadFailed(_) => 24,
            },
            ApiError::NoSuchEndpoint(_) => 25,
            ApiError::UnsupportedEncoding => 26,
            ApiError::NotSupported(_) => 27,
        }
    }

    #[test]
    fn one_of_each_covers_every_variant() {
        let mut seen: Vec<usize> = ApiError::one_of_each().iter().map(variant).collect();
        seen.sort();
        assert_eq!(seen, (0..=27).collect::<Vec<_>>());
        let kinds = outcomes();
        assert_eq!(kinds.len(), 25, "success and 24 distinct kinds: {kinds:?}");
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
            (
                CodecError::Malformed("x".into()).into(),
                400,
                "malformed_json",
            ),
            (CodecError::Invalid("x".into()).into(), 400, "invalid_input"),
            (CodecError::Encode("x".into()).into(), 500, "encode_failed"),
            (ApiError::InvalidInput("x".into()), 400, "invalid_input"),
            (
                RegistryError::NotFound("x".into()).into(),
                404,
                "model_not_found",
            ),
            (
                RegistryError::Unavailable("x".into()).into(),
                503,
                "model_not_ready",
            ),
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
                RegistryError::ControlDisabled.into(),
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
        let s = tonic::Status::from(ApiError::from(RuntimeError::QueueFull(3)));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "1");
        assert_eq!(
            s.metadata().get("torchship-error-kind").unwrap(),
            "queue_full"
        );
    }

    /// Every error has a gRPC code of its own kind: only the 500s are INTERNAL, and the message is
    /// the HTTP body's.
    #[test]
    fn every_error_maps_to_a_grpc_code_with_the_http_message() {
        for e in ApiError::one_of_each() {
            let (status, code) = (e.status(), e.grpc_code());
            assert_eq!(
                code == tonic::Code::Internal,
                status == StatusCode::INTERNAL_SERVER_ERROR,
                "{} ({status}) -> {code:?}",
                e.kind()
            );
            let message = e.client_message();
            assert_eq!(tonic::Status::from(e).message(), message);
        }
    }
}
