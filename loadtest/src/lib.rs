//! torchship load tester: drives an inference server in open loop (requests on schedule; latency
//! measured from each request's intended send time, so a stalled server cannot hide behind a stalled
//! client) or closed loop, with bounded memory at any rate, and reports a summary, a per-second
//! series and pass/fail thresholds.
//!
//! Map of the crate:
//! - [`cli`]: the flags (names fixed by the interface scripts rely on).
//! - [`payload`]: request bodies generated from the model's v2 metadata, encoded by the shared
//!   codec (`protocol::codec`); [`check`]: answers decoded by it.
//! - [`engine`]: open and closed loop sending; [`conn`] the connections it sends on.
//! - [`schedule`]: open-loop send times for constant rates and `--stages` ramps.
//! - [`stats`]: HdrHistograms and the per-second series.
//! - [`kube_watch`]: `--watch-hpa`, the HPA and its Deployment on the same time axis.
//! - [`live`]: the progress line while the load runs.
//! - [`scrape`]: `--scrape-metrics`, the server's queue and batch sizes from its `/metrics`.
//! - [`report`]: text and JSON reports, thresholds; [`html`] the self-contained HTML report,
//!   its charts drawn by [`chart`] (plotters' SVG backend, legends and hover added);
//!   [`compare`]: `loadtest compare`, runs side by side from their JSON reports, with
//!   [`autoscale`]'s measures of how the HPA met a step in the load.

pub mod autoscale;
pub mod chart;
pub mod check;
pub mod cli;
pub mod compare;
pub mod conn;
pub mod engine;
pub mod html;
pub mod kube_watch;
pub mod live;
pub mod payload;
pub mod report;
pub mod schedule;
pub mod scrape;
pub mod stats;

use std::future::Future;

pub use cli::{Api, Args};
pub use report::Report;

/// Why the load test could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither --rate nor --concurrency, or nonsense values.
    #[error("{0}")]
    Usage(String),
    /// The model's metadata could not be read.
    #[error("cannot read the metadata of model '{model}' at {url}: {reason}")]
    Metadata {
        model: String,
        url: String,
        reason: String,
    },
    /// No payload can be generated for the model.
    #[error("cannot generate a request: {0}")]
    Payload(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// No Kubernetes client for --watch-hpa (kubeconfig unreadable, no context).
    #[error("--watch-hpa: {0}")]
    Kube(String),
}

impl LoadError {
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Usage(_) => "usage",
            LoadError::Metadata { .. } => "metadata",
            LoadError::Payload(_) => "payload",
            LoadError::Client(_) => "client",
            LoadError::Kube(_) => "kube",
        }
    }
}

/// Reads the model's metadata, runs the load until done or `stop` resolves, and returns the report.
pub async fn run(args: &Args, stop: impl Future<Output = ()>) -> Result<Report, LoadError> {
    check_mode(args)?;
    // Only for the metadata and scrapes; the load goes over `conn`'s connections.
    let mut builder = reqwest::Client::builder();
    if args.h2c {
        builder = builder.http2_prior_knowledge();
    }
    let client = builder
        .build()
        .map_err(|e| LoadError::Client(e.to_string()))?;
    let grpc = args.api == cli::Api::Grpc;
    let (meta, server) = match grpc {
        true => grpc_metadata(args).await?,
        false => (
            metadata(&client, args).await?,
            server_version(&client, args).await,
        ),
    };
    let payload = payload::build(&meta, args.api, &mut payload::Rng::new(args.seed))?;
    let kube = match &args.watch_hpa {
        Some(_) => {
            Some(kube_watch::client(args.kubeconfig.as_deref(), args.context.as_deref()).await?)
        }
        None => None,
    };
    let mut target = conn::Target::new(&args.url, &payload.path, args.h2c || grpc, args.timeout)?;
    target.lifetime = args.connection_lifetime;
    target.grpc = grpc;
    target.streams = match (args.streams_per_connection, grpc) {
        (Some(n), _) => n.into(),
        (None, true) => 100,
        (None, false) => 1,
    };
    target.check = Some(std::sync::Arc::new(check::Check::new(args.api, &meta)));
    let slots = target
        .open(match args.concurrency {
            Some(c) => c.max(1),
            None => args.connections.max(1),
        })
        .await;
    let start = tokio::time::Instant::now();
    let watch = kube
        .zip(args.watch_hpa.as_deref())
        .map(|(client, name)| kube_watch::Watch::start(client, &args.namespace, name, start));
    let scraper = args
        .scrape_metrics
        .then(|| scrape::Scraper::start(client.clone(), &args.url, &args.model, start));
    let stats = std::sync::Arc::default();
    let view = live::LiveView::start(
        args.planned(),
        std::sync::Arc::clone(&stats),
        watch.as_ref().map(|w| w.timeline.clone()),
    );
    let collector = engine::run(args, target, slots, payload, start, stats, stop).await;
    view.finish();
    let mut report = Report::new(args, collector, start);
    report.meta.server = server;
    report.kubernetes = watch.map(kube_watch::Watch::stop);
    report.server_metrics = scraper.map(|s| {
        let (points, errors) = s.stop();
        report::ServerMetrics { points, errors }
    });
    Ok(report)
}

/// An open loop needs a positive rate or stages; a closed loop a concurrency.
fn check_mode(args: &Args) -> Result<(), LoadError> {
    match (args.rate, args.concurrency, &args.stages) {
        (Some(r), _, _) if !(r > 0.0 && r.is_finite()) => Err(LoadError::Usage(format!(
            "--rate {r} must be a positive number"
        ))),
        _ if args.api == cli::Api::Grpc && args.scrape_metrics => Err(LoadError::Usage(
            "--scrape-metrics reads /metrics over HTTP; with --api grpc the --url is the gRPC port"
                .into(),
        )),
        (None, None, None) => Err(LoadError::Usage(
            "give --rate R or --stages (open loop), or --concurrency N (closed loop)".into(),
        )),
        _ => Ok(()),
    }
}

/// gRPC `ModelMetadata` (what the payload is generated from, for `--api grpc`) and, on the same
/// connection, `ServerMetadata`'s name and version for the report (None if it does not say).
async fn grpc_metadata(
    args: &Args,
) -> Result<(protocol::ModelMetadata, Option<String>), LoadError> {
    use grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
    let error = |reason: String| LoadError::Metadata {
        model: args.model.clone(),
        url: args.url.clone(),
        reason,
    };
    let mut client = GrpcInferenceServiceClient::connect(args.url.clone())
        .await
        .map_err(|e| error(format!("gRPC connect: {e}")))?;
    let request = grpc::pb::ModelMetadataRequest {
        name: args.model.clone(),
        version: String::new(),
    };
    let reply = client
        .model_metadata(request)
        .await
        .map_err(|s| error(format!("gRPC {:?}: {}", s.code(), s.message())))?;
    let server = client
        .server_metadata(grpc::pb::ServerMetadataRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
        .map(|m| format!("{} {}", m.name, m.version));
    Ok((grpc::wire::metadata(reply.into_inner()), server))
}

/// `GET /v2`: the server's name and version for the report (None if it does not say).
async fn server_version(client: &reqwest::Client, args: &Args) -> Option<String> {
    let url = format!("{}/v2", args.url.trim_end_matches('/'));
    let response = client.get(url).send().await.ok()?.error_for_status().ok()?;
    let meta: protocol::ServerMetadata = response.json().await.ok()?;
    Some(format!("{} {}", meta.name, meta.version))
}

/// `GET /v2/models/{model}`: what the payload is generated from.
async fn metadata(
    client: &reqwest::Client,
    args: &Args,
) -> Result<protocol::ModelMetadata, LoadError> {
    let url = format!(
        "{}/v2/models/{}",
        args.url.trim_end_matches('/'),
        args.model
    );
    let error = |reason: String| LoadError::Metadata {
        model: args.model.clone(),
        url: url.clone(),
        reason,
    };
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| error(e.to_string()))?;
    if !response.status().is_success() {
        return Err(error(format!("HTTP {}", response.status())));
    }
    response.json().await.map_err(|e| error(e.to_string()))
}
