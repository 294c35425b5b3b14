//! The gRPC side of the statistics and logging extensions: the same [`stats::ModelStats`] and
//! [`crate::logging`] settings as HTTP, as Triton's messages.

use std::collections::HashMap;

use grpc::pb::{self, log_settings_request, log_settings_response};
use serde_json::{Map, Value};

use super::stats::{self, Duration};
use crate::error::ApiError;
use crate::state::AppState;

fn duration(d: Duration) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

fn model_statistics(s: stats::ModelStats) -> pb::ModelStatistics {
    let i = s.inference_stats;
    pb::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(i.success),
            fail: duration(i.fail),
            queue: duration(i.queue),
            compute_input: duration(i.compute_input),
            compute_infer: duration(i.compute_infer),
            compute_output: duration(i.compute_output),
            cache_hit: duration(i.cache_hit),
            cache_miss: duration(i.cache_miss),
        }),
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(b.compute_input),
                compute_infer: duration(b.compute_infer),
                compute_output: duration(b.compute_output),
            })
            .collect(),
    }
}

/// ModelStatistics: empty name, every model; empty version, every version.
pub fn statistics(
    state: &AppState,
    r: pb::ModelStatisticsRequest,
) -> Result<pb::ModelStatisticsResponse, ApiError> {
    let name = (!r.name.is_empty()).then_some(r.name.as_str());
    let version = (!r.version.is_empty()).then_some(r.version.as_str());
    let model_stats = stats::select(state, name, version)?
        .into_iter()
        .map(model_statistics)
        .collect();
    Ok(pb::ModelStatisticsResponse { model_stats })
}

/// LogSettings: the settings given are applied (none: read only), then all are answered.
pub fn log_settings(r: pb::LogSettingsRequest) -> Result<pb::LogSettingsResponse, ApiError> {
    use log_settings_request::setting_value::ParameterChoice as In;
    use log_settings_response::setting_value::ParameterChoice as Out;
    let current = if r.settings.is_empty() {
        crate::logging::settings()?
    } else {
        let changes: Map<String, Value> = r
            .settings
            .into_iter()
            .map(|(k, v)| {
                let value = match v.parameter_choice {
                    Some(In::BoolParam(b)) => Value::from(b),
                    Some(In::Uint32Param(n)) => Value::from(n),
                    Some(In::StringParam(s)) => Value::from(s),
                    None => Value::Null,
                };
                (k, value)
            })
            .collect();
        crate::logging::update(&changes)?
    };
    let settings: HashMap<String, log_settings_response::SettingValue> = current
        .into_iter()
        .map(|(k, v)| {
            let choice = match v {
                Value::Bool(b) => Out::BoolParam(b),
                Value::Number(n) => Out::Uint32Param(n.as_u64().unwrap_or(0) as u32),
                other => Out::StringParam(other.as_str().unwrap_or_default().to_string()),
            };
            let value = log_settings_response::SettingValue {
                parameter_choice: Some(choice),
            };
            (k, value)
        })
        .collect();
    Ok(pb::LogSettingsResponse { settings })
}
