//! The process's log: one tracing subscriber writing to stdout (text or JSON, `--log-format`), its
//! filter behind a reload handle so that Triton's logging extension (`/v2/logging`, gRPC
//! `LogSettings`) can change the level at run time.
//!
//! Triton's settings map onto the filter's default level: `log_verbose_level` 1 is `debug`, 2 and
//! more `trace`; else `info`, `warn` or `error` as `log_info` / `log_warning` / `log_error` allow;
//! all three false is `off`. RUST_LOG's per-target directives (`torchship::access=off`) stay as
//! they are. What has no counterpart is refused with the reason: `log_file` (the log is stdout's,
//! which Kubernetes collects), `log_format` other than the one the process started with, and
//! `log_error: false` with warnings on (a level shows errors whenever it shows warnings).

use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogFormat;
use crate::error::ApiError;

/// What the logging extension reads and sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    pub info: bool,
    pub warning: bool,
    pub error: bool,
    pub verbose: u32,
}

impl Levels {
    /// The levels a default directive (`info`, `debug`, ...) shows.
    fn of(level: &str) -> Levels {
        let rank = ["off", "error", "warn", "info", "debug", "trace"]
            .iter()
            .position(|l| level.eq_ignore_ascii_case(l))
            .unwrap_or(3);
        Levels {
            error: rank >= 1,
            warning: rank >= 2,
            info: rank >= 3,
            verbose: rank.saturating_sub(3) as u32,
        }
    }

    /// The default directive that shows these levels.
    fn directive(self) -> Result<&'static str, String> {
        if self.verbose > 0 && !self.info {
            return Err(
                "log_verbose_level above 0 shows info messages too: set log_info true".into(),
            );
        }
        if (self.warning && !self.error) || (self.info && !self.warning) {
            return Err(
                "log_error and log_warning cannot be off while a less severe level is on: the log shows a level and everything more severe"
                    .into(),
            );
        }
        Ok(match self.verbose {
            2.. => "trace",
            1 => "debug",
            _ if self.info => "info",
            _ if self.warning => "warn",
            _ if self.error => "error",
            _ => "off",
        })
    }
}

struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG's directives that name a target, kept through every change.
    targets: Vec<String>,
    levels: Mutex<Levels>,
    format: LogFormat,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Installs the process's subscriber: RUST_LOG's filter (`info` when unset or invalid), stdout.
pub fn init(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = EnvFilter::try_new(&spec)
        .ok()
        .filter(|_| !spec.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (targets, default): (Vec<&str>, Vec<&str>) = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .partition(|d| d.contains('=') || d.contains('['));
    let level = default.last().copied().unwrap_or("info");
    let (layer, handle) = reload::Layer::new(filter);
    let json = matches!(format, LogFormat::Json);
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(json.then(|| tracing_subscriber::fmt::layer().json()))
        .with((!json).then(tracing_subscriber::fmt::layer));
    if subscriber.try_init().is_ok() {
        let _ = CONTROL.set(Control {
            handle,
            targets: targets.into_iter().map(str::to_string).collect(),
            levels: Mutex::new(Levels::of(level)),
            format,
        });
    }
}

fn control() -> Result<&'static Control, ApiError> {
    CONTROL.get().ok_or_else(|| {
        ApiError::NotSupported(
            "log settings: this process's log was not set up by the server binary (library use)"
                .into(),
        )
    })
}

fn format_name(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    }
}

/// The settings in Triton's shape.
pub fn settings() -> Result<Map<String, Value>, ApiError> {
    let c = control()?;
    let l = *c.levels.lock().unwrap_or_else(|e| e.into_inner());
    let v = json!({
        "log_file": "",
        "log_info": l.info,
        "log_warning": l.warning,
        "log_error": l.error,
        "log_verbose_level": l.verbose,
        "log_format": format_name(c.format),
    });
    Ok(v.as_object().cloned().unwrap_or_default())
}

/// Applies the settings given (the others stay), then answers them all.
pub fn update(changes: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let c = control()?;
    let mut guard = c.levels.lock().unwrap_or_else(|e| e.into_inner());
    let mut next = *guard;
    for (key, value) in changes {
        let flag = || {
            value.as_bool().ok_or_else(|| {
                ApiError::InvalidInput(format!("log setting '{key}' must be true or false"))
            })
        };
        match key.as_str() {
            "log_info" => next.info = flag()?,
            "log_warning" => next.warning = flag()?,
            "log_error" => next.error = flag()?,
            "log_verbose_level" => {
                next.verbose = value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        ApiError::InvalidInput(
                            "log setting 'log_verbose_level' must be a non-negative integer".into(),
                        )
                    })?
            }
            "log_file" if value.as_str() == Some("") => {}
            "log_file" => return Err(ApiError::NotSupported(
                "log_file cannot be set: torchship logs to stdout, which the container runtime (Kubernetes) collects".into(),
            )),
            "log_format" if value.as_str() == Some(format_name(c.format)) => {}
            "log_format" => {
                return Err(ApiError::NotSupported(format!(
                    "log_format is '{}', set by --log-format at start; it cannot change at run time",
                    format_name(c.format)
                )))
            }
            other => {
                return Err(ApiError::InvalidInput(format!(
                "unknown log setting '{other}'; the settings are log_file, log_info, log_warning, log_error, log_verbose_level, log_format"
            )))
            }
        }
    }
    let level = next.directive().map_err(ApiError::InvalidInput)?;
    let spec = std::iter::once(level)
        .chain(c.targets.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(",");
    let filter = EnvFilter::try_new(&spec).map_err(|e| ApiError::InvalidInput(e.to_string()))?;
    c.handle
        .reload(filter)
        .map_err(|e| ApiError::NotSupported(format!("the log filter cannot change: {e}")))?;
    *guard = next;
    drop(guard);
    tracing::info!(filter = %spec, "log settings changed");
    settings()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_map_both_ways() {
        for level in ["off", "error", "warn", "info", "debug", "trace"] {
            assert_eq!(Levels::of(level).directive().unwrap(), level);
        }
        let mut l = Levels::of("info");
        l.error = false;
        assert!(l.directive().unwrap_err().contains("cannot be off"));
        l = Levels::of("warn");
        l.verbose = 7;
        assert!(l.directive().unwrap_err().contains("set log_info true"));
        l.info = true;
        assert_eq!(l.directive().unwrap(), "trace");
    }
}
