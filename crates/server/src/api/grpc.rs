//! The KServe v2 gRPC service (`inference.GRPCInferenceService`, what `tritonclient.grpc` speaks)
//! over the same stages as HTTP: the codec's checks (`decode_binary`), the registry, the same
//! admission, deadlines, priorities and batcher (a gRPC and an HTTP request can share a forward
//! pass), and [`ApiError`]'s one mapping to status codes. Outputs go back as
//! `raw_output_contents`, as Triton answers.

use std::collections::HashMap;
use std::time::Duration;

use grpc::contents;
use grpc::pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use grpc::pb::{self, infer_parameter::ParameterChoice, InferParameter};
use protocol::codec::{self, BinaryInput, BinaryRequest, Decoded};
use protocol::{wire, Datatype, TensorMetadata};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::forward::{forward, observed};
use super::settings::{no_shared_memory, no_trace};
use super::v2;
use crate::error::ApiError;
use crate::metrics::Protocol;
use crate::repository::{ModelConfig, TensorSpec};
use crate::runtime::{Model, TensorData};
use crate::state::AppState;

type Reply<T> = Result<Response<T>, Status>;

/// The service, its message size limit that of HTTP bodies (`--max-body-size`), counted on
/// inflated bytes for gzip and deflate messages (tonic stops inflating at the limit). Answers go
/// uncompressed: every grpc client advertises gzip, and compressing every answer costs CPU that
/// the forward passes need.
pub fn service(state: AppState) -> GrpcInferenceServiceServer<Inference> {
    use tonic::codec::CompressionEncoding;
    let limit = state.max_body_size();
    GrpcInferenceServiceServer::new(Inference { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
}

/// The gRPC routes (inference and `grpc.health.v1`) as an axum router, served by the same accept
/// loop and drain as HTTP.
pub fn router(state: AppState) -> axum::Router {
    tonic::service::Routes::new(service(state.clone()))
        .add_service(super::grpc_health::service(state))
        .into_axum_router()
}

pub struct Inference {
    state: AppState,
}

/// Protobuf's "not given" for a string: empty.
fn given(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

fn tensor_metadata(list: Vec<TensorMetadata>) -> Vec<pb::model_metadata_response::TensorMetadata> {
    list.into_iter()
        .map(|t| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Reply<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Reply<pb::ServerReadyResponse> {
        let ready = self.state.all_ready();
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Reply<pb::ModelReadyResponse> {
        let r = r.into_inner();
        let ready = v2::is_ready(&self.state, &r.name, given(&r.version))?;
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Reply<pb::ServerMetadataResponse> {
        let m = v2::server_info();
        Ok(Response::new(pb::ServerMetadataResponse {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Reply<pb::ModelMetadataResponse> {
        let r = r.into_inner();
        let m = v2::metadata(&self.state, &r.name, given(&r.version))?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: tensor_metadata(m.inputs),
            outputs: tensor_metadata(m.outputs),
        }))
    }

    async fn model_config(
        &self,
        r: Request<pb::ModelConfigRequest>,
    ) -> Reply<pb::ModelConfigResponse> {
        let r = r.into_inner();
        let model = self
            .state
            .registry()
            .lookup(&r.name, given(&r.version))
            .map_err(ApiError::from)?;
        let config = Some(config_message(&model.name, &model.config));
        Ok(Response::new(pb::ModelConfigResponse { config }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Reply<pb::ModelInferResponse> {
        Ok(Response::new(infer(&self.state, r.into_inner()).await?))
    }

    type ModelStreamInferStream = ReceiverStream<Result<pb::ModelStreamInferResponse, Status>>;

    /// Each request on the stream is served as a ModelInfer call would be, concurrently (so they
    /// can share forward passes); each gets one answer, in the order they finish, with its `id`.
    /// A failed request answers `error_message` and leaves the stream open.
    async fn model_stream_infer(
        &self,
        r: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Reply<Self::ModelStreamInferStream> {
        let mut incoming = r.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut calls = tokio::task::JoinSet::new();
            while let Ok(Some(request)) = incoming.message().await {
                let (state, tx) = (state.clone(), tx.clone());
                calls.spawn(async move {
                    let answer = stream_answer(&state, request).await;
                    let _ = tx.send(Ok(answer)).await;
                });
            }
            while calls.join_next().await.is_some() {}
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn repository_index(
        &self,
        r: Request<pb::RepositoryIndexRequest>,
    ) -> Reply<pb::RepositoryIndexResponse> {
        super::repository::restricted(&self.state, &r.metadata().clone().into_headers())?;
        // gRPC's `ready` is a plain bool: false means every model, not the ones that are not ready.
        let ready = r.into_inner().ready.then_some(true);
        let models = super::repository::index_rows(&self.state, ready)
            .into_iter()
            .map(|row| pb::repository_index_response::ModelIndex {
                name: row.name,
                version: row.version.unwrap_or_default(),
                state: row.state.to_string(),
                reason: row.reason,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        r: Request<pb::RepositoryModelLoadRequest>,
    ) -> Reply<pb::RepositoryModelLoadResponse> {
        let headers = r.metadata().clone().into_headers();
        let r = r.into_inner();
        self.change(&headers, &r.model_name, &r.parameters, true)
            .await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Reply<pb::RepositoryModelUnloadResponse> {
        let headers = r.metadata().clone().into_headers();
        let r = r.into_inner();
        self.change(&headers, &r.model_name, &r.parameters, false)
            .await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }

    async fn model_statistics(
        &self,
        r: Request<pb::ModelStatisticsRequest>,
    ) -> Reply<pb::ModelStatisticsResponse> {
        let stats = super::grpc_extensions::statistics(&self.state, r.into_inner())?;
        Ok(Response::new(stats))
    }

    /// As HTTP's `/v2/logging`: a change needs the control key when one is configured.
    async fn log_settings(
        &self,
        r: Request<pb::LogSettingsRequest>,
    ) -> Reply<pb::LogSettingsResponse> {
        if !r.get_ref().settings.is_empty() {
            super::repository::restricted(&self.state, &r.metadata().clone().into_headers())?;
        }
        let settings = super::grpc_extensions::log_settings(r.into_inner())?;
        Ok(Response::new(settings))
    }

    async fn trace_setting(
        &self,
        _: Request<pb::TraceSettingRequest>,
    ) -> Reply<pb::TraceSettingResponse> {
        Err(no_trace().into())
    }

    async fn system_shared_memory_status(
        &self,
        _: Request<pb::SystemSharedMemoryStatusRequest>,
    ) -> Reply<pb::SystemSharedMemoryStatusResponse> {
        Err(no_shared_memory().into())
    }

    async fn system_shared_memory_register(
        &self,
        _: Request<pb::SystemSharedMemoryRegisterRequest>,
    ) -> Reply<pb::SystemSharedMemoryRegisterResponse> {
        Err(no_shared_memory().into())
    }

    async fn system_shared_memory_unregister(
        &self,
        _: Request<pb::SystemSharedMemoryUnregisterRequest>,
    ) -> Reply<pb::SystemSharedMemoryUnregisterResponse> {
        Err(no_shared_memory().into())
    }

    async fn cuda_shared_memory_status(
        &self,
        _: Request<pb::CudaSharedMemoryStatusRequest>,
    ) -> Reply<pb::CudaSharedMemoryStatusResponse> {
        Err(no_shared_memory().into())
    }

    async fn cuda_shared_memory_register(
        &self,
        _: Request<pb::CudaSharedMemoryRegisterRequest>,
    ) -> Reply<pb::CudaSharedMemoryRegisterResponse> {
        Err(no_shared_memory().into())
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Reply<pb::CudaSharedMemoryUnregisterResponse> {
        Err(no_shared_memory().into())
    }
}

impl Inference {
    /// Load (or unload) a model as HTTP does: the control key (in the same metadata key as HTTP's
    /// header), no overrides, then the registry.
    async fn change(
        &self,
        headers: &axum::http::HeaderMap,
        name: &str,
        params: &HashMap<String, pb::ModelRepositoryParameter>,
        load: bool,
    ) -> Result<(), ApiError> {
        super::repository::restricted(&self.state, headers)?;
        no_overrides(params)?;
        let registry = self.state.registry();
        match load {
            true => registry.load(name).await?,
            false => registry.unload(name).await?,
        }
        Ok(())
    }
}

/// Triton's load parameters override the config or the model file: not served, so refused rather
/// than silently ignored. `unload_dependents` (tritonclient always sends it) has nothing to do
/// here: a TorchScript model has no dependents.
fn no_overrides(params: &HashMap<String, pb::ModelRepositoryParameter>) -> Result<(), ApiError> {
    match params.keys().find(|k| *k != "unload_dependents") {
        None => Ok(()),
        Some(key) => Err(ApiError::InvalidInput(format!(
            "repository parameter '{key}' (config or file overrides) is not supported; change the model's folder instead"
        ))),
    }
}

/// One ModelInfer: look-up, then the same stages as HTTP, counted under the model.
async fn infer(
    state: &AppState,
    r: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, ApiError> {
    let model = state
        .registry()
        .lookup(&r.model_name, given(&r.model_version))?;
    observed(state, &model, Protocol::Grpc, async {
        let _permit = super::admit(state)?;
        let decoded = decode(&model, r)?;
        let outputs = forward(
            state,
            &model,
            decoded.inputs,
            decoded.timeout,
            decoded.priority,
        )
        .await?;
        encode(&model, decoded.id, &decoded.outputs, outputs)
    })
    .await
}

/// A stream's answer to one request: the response, or the error's message with the request's id.
async fn stream_answer(
    state: &AppState,
    request: pb::ModelInferRequest,
) -> pb::ModelStreamInferResponse {
    let (id, model_name) = (request.id.clone(), request.model_name.clone());
    match infer(state, request).await {
        Ok(reply) => pb::ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(reply),
        },
        Err(e) => pb::ModelStreamInferResponse {
            error_message: Status::from(e).message().to_string(),
            infer_response: Some(pb::ModelInferResponse {
                model_name,
                id,
                ..Default::default()
            }),
        },
    }
}

/// A dimension list without the batch dimension when the model batches (Triton's `dims`).
fn dims(config: &ModelConfig, spec: &TensorSpec) -> Vec<i64> {
    let skip = usize::from(config.max_batch_size > 0);
    spec.shape.iter().skip(skip).copied().collect()
}

/// The model's config.toml as Triton's `ModelConfig` message (what `get_model_config` returns).
fn config_message(name: &str, config: &ModelConfig) -> pb::ModelConfig {
    let b = &config.batching;
    pb::ModelConfig {
        name: name.to_string(),
        platform: config.platform.name().into(),
        backend: "pytorch".into(),
        max_batch_size: i32::try_from(config.max_batch_size).unwrap_or(i32::MAX),
        input: config
            .inputs
            .iter()
            .map(|s| pb::ModelInput {
                name: s.name.clone(),
                data_type: contents::config_type(s.datatype).into(),
                dims: dims(config, s),
            })
            .collect(),
        output: config
            .outputs
            .iter()
            .map(|s| pb::ModelOutput {
                name: s.name.clone(),
                data_type: contents::config_type(s.datatype).into(),
                dims: dims(config, s),
                label_filename: s.label_filename.clone().unwrap_or_default(),
            })
            .collect(),
        instance_group: vec![pb::ModelInstanceGroup {
            name: name.to_string(),
            count: i32::try_from(config.instance_count).unwrap_or(i32::MAX),
            kind: pb::model_instance_group::Kind::Auto.into(),
        }],
        dynamic_batching: b.dynamic.then(|| pb::ModelDynamicBatching {
            preferred_batch_size: b
                .preferred_batch_sizes
                .iter()
                .map(|&p| i32::try_from(p).unwrap_or(i32::MAX))
                .collect(),
            max_queue_delay_microseconds: b.max_queue_delay_us,
            priority_levels: b.priority_levels as u64,
        }),
    }
}

/// A request parameter as an unsigned number (`timeout` in microseconds, `priority`).
fn param_u64(params: &HashMap<String, InferParameter>, key: &str) -> Result<Option<u64>, ApiError> {
    let Some(p) = params.get(key) else {
        return Ok(None);
    };
    match &p.parameter_choice {
        Some(ParameterChoice::Int64Param(n)) if *n >= 0 => Ok(Some(*n as u64)),
        Some(ParameterChoice::Uint64Param(n)) => Ok(Some(*n)),
        Some(ParameterChoice::StringParam(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        _ => Err(ApiError::InvalidInput(format!(
            "parameter '{key}' must be a non-negative integer"
        ))),
    }
}

/// The request's tensors as bytes (raw contents as sent, typed contents converted), then the
/// codec's checks, as for HTTP.
fn decode(model: &Model, r: pb::ModelInferRequest) -> Result<Decoded, ApiError> {
    let raw = r.raw_input_contents;
    if !raw.is_empty() && raw.len() != r.inputs.len() {
        return Err(ApiError::InvalidInput(format!(
            "raw_input_contents holds {} entries for {} inputs",
            raw.len(),
            r.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for input in &r.inputs {
        let shape = input
            .shape
            .iter()
            .map(|&d| u64::try_from(d))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| {
                ApiError::InvalidInput(format!(
                    "input '{}': shape {:?} has a negative dimension",
                    input.name, input.shape
                ))
            })?;
        let bytes = match raw.next() {
            Some(bytes) => bytes,
            None => typed(input)?.into(),
        };
        inputs.push(BinaryInput {
            name: &input.name,
            datatype: &input.datatype,
            shape,
            bytes,
        });
    }
    let request = BinaryRequest {
        id: given(&r.id).map(str::to_string),
        outputs: r
            .outputs
            .iter()
            .map(|o| Ok((o.name.as_str(), classes(o)?)))
            .collect::<Result<_, ApiError>>()?,
        timeout: param_u64(&r.parameters, wire::TIMEOUT)?.map(Duration::from_micros),
        priority: param_u64(&r.parameters, wire::PRIORITY)?,
    };
    let signature = model.config.signature();
    Ok(codec::decode_binary(&signature, inputs, request)?)
}

/// A requested output's `classification` count (the classification extension), 0 when not asked.
fn classes(o: &pb::model_infer_request::InferRequestedOutputTensor) -> Result<u64, ApiError> {
    let n = param_u64(&o.parameters, wire::CLASSIFICATION)?;
    Ok(n.unwrap_or(0))
}

/// Typed contents as bytes; an unknown datatype is left to the codec to name.
fn typed(input: &pb::model_infer_request::InferInputTensor) -> Result<Vec<u8>, ApiError> {
    let Some(datatype) = Datatype::parse(&input.datatype) else {
        return Ok(Vec::new());
    };
    let empty = pb::InferTensorContents::default();
    contents::to_bytes(datatype, input.contents.as_ref().unwrap_or(&empty))
        .map_err(|e| ApiError::InvalidInput(format!("input '{}': {e}", input.name)))
}

/// The chosen outputs (classified where asked, as for HTTP) as raw contents.
fn encode(
    model: &Model,
    id: Option<String>,
    chosen: &[codec::OutputChoice],
    outputs: Vec<TensorData>,
) -> Result<pb::ModelInferResponse, ApiError> {
    let signature = model.config.signature();
    let (outputs, raw) = codec::chosen_outputs(&signature, chosen, &outputs)?
        .into_iter()
        .map(|(name, t)| {
            let meta = pb::model_infer_response::InferOutputTensor {
                name: name.to_string(),
                datatype: t.datatype.as_str().to_string(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                parameters: HashMap::new(),
                contents: None,
            };
            (meta, t.into_owned().bytes)
        })
        .unzip();
    Ok(pb::ModelInferResponse {
        model_name: model.name.clone(),
        model_version: model.version.to_string(),
        id: id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    })
}
