//! Restricted endpoints (like Triton's `--http-restricted-api`): with a control key configured,
//! the repository endpoints (index, load, unload) answer only callers presenting it in a header;
//! without the header a JSON 401, with a wrong key a JSON 403, both counted like every answer.
//! The key comes from a file (a mounted Secret) or an env var, never a log line, and is compared
//! in constant time. Off by default, as load/unload themselves are (`--model-control none`).

use std::fmt;
use std::path::Path;

use axum::http::{HeaderMap, HeaderName};

/// Why a request may not use a restricted endpoint; the header's name is given.
#[derive(Debug, thiserror::Error)]
pub enum ControlKeyError {
    /// No control key header.
    #[error("this endpoint is restricted: send the control key in the {0} header")]
    Missing(String),
    /// A control key that is not the server's.
    #[error("the control key in the {0} header is not the server's")]
    Rejected(String),
}

impl ControlKeyError {
    /// Stable label used as `error_type` and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlKeyError::Missing(_) => "control_key_missing",
            ControlKeyError::Rejected(_) => "control_key_rejected",
        }
    }
}

/// The header and the key a restricted endpoint requires.
#[derive(Clone)]
pub struct ControlKey {
    header: HeaderName,
    key: Vec<u8>,
}

impl fmt::Debug for ControlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlKey")
            .field("header", &self.header)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ControlKey {
    /// From the flags: a key given directly, or read from a file (trailing newline dropped), or none.
    pub fn load(
        header: &str,
        key: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<ControlKey>, String> {
        let key = match (key, file) {
            (Some(_), Some(_)) => {
                return Err("give --control-key or --control-key-file, not both".into())
            }
            (Some(k), None) => k.to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("--control-key-file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            (None, None) => return Ok(None),
        };
        if key.len() < 16 {
            return Err(
                "the control key must be at least 16 characters (e.g. openssl rand -hex 32)".into(),
            );
        }
        let header = HeaderName::try_from(header)
            .map_err(|_| format!("--control-key-header '{header}' is not a valid header name"))?;
        Ok(Some(ControlKey {
            header,
            key: key.into_bytes(),
        }))
    }

    /// Ok when the request carries the key; the error says which header is expected.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ControlKeyError> {
        match headers.get(&self.header) {
            None => Err(ControlKeyError::Missing(self.header.to_string())),
            Some(v) if constant_time_eq(v.as_bytes(), &self.key) => Ok(()),
            Some(_) => Err(ControlKeyError::Rejected(self.header.to_string())),
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right
/// (only whether its length was).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_never_printed() {
        let k = ControlKey::load("x-key", Some("0123456789abcdef0123"), None)
            .unwrap()
            .unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(k.check(&h).unwrap_err().kind(), "control_key_missing");
        h.insert("x-key", "0123456789abcdef0124".parse().unwrap());
        assert_eq!(k.check(&h).unwrap_err().kind(), "control_key_rejected");
        h.insert("x-key", "0123456789abcdef0123".parse().unwrap());
        assert!(k.check(&h).is_ok());
        assert!(!format!("{k:?}").contains("0123"), "{k:?}");
        assert!(ControlKey::load("x-key", Some("short"), None).is_err());
        assert!(ControlKey::load("bad header", Some("0123456789abcdef0123"), None).is_err());
        assert!(ControlKey::load("x", None, None).unwrap().is_none());
        assert!(!constant_time_eq(b"abc", b"abd") && constant_time_eq(b"abc", b"abc"));
    }

    #[test]
    fn a_key_file_is_read_without_its_newline() {
        let path = std::env::temp_dir().join(format!("torchship-key-{}", std::process::id()));
        std::fs::write(&path, "fedcba9876543210fedcba\n").unwrap();
        let k = ControlKey::load("x-key", None, Some(&path))
            .unwrap()
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-key", "fedcba9876543210fedcba".parse().unwrap());
        assert!(k.check(&h).is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(ControlKey::load("x-key", None, Some(&path))
            .unwrap_err()
            .contains("--control-key-file"));
    }
}
