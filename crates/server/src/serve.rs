//! The accept loop and the shutdown sequence Kubernetes needs, on hyper-util (axum's own `serve`
//! has no header-read timeout and no drain deadline):
//!
//! 1. `shutdown` resolves (SIGTERM): readiness answers 503 at once, but everything keeps serving for
//!    `--shutdown-delay`, while the endpoints controller takes the pod out of the Service;
//! 2. the listener closes (new connections are refused, never half-served);
//! 3. requests queued and in flight finish (idle keep-alive connections are closed) within
//!    `--drain-timeout`; past it, [`StartupError::DrainTimeout`].

use std::future::Future;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{AppState, StartupError};

pub use crate::config::Timings;

/// Serves `app` on `listener` until `stop` resolves, then drains connections within
/// `drain_timeout`.
pub async fn run_listener(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<(), StartupError> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(
                    app.clone().map_request(|r: Request<Incoming>| r.map(axum::body::Body::new)),
                );
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    tracing::info!(
        seconds = drain_timeout.as_secs_f64(),
        "listener closed; draining requests in flight"
    );
    tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .map_err(|_| StartupError::DrainTimeout(drain_timeout))
}

/// Where the server listens: the HTTP API, and optionally `/metrics` alone and the gRPC service.
pub struct Listeners {
    pub http: TcpListener,
    pub metrics: Option<TcpListener>,
    pub grpc: Option<TcpListener>,
}

/// Serves the API (and `/metrics` and gRPC on their listeners, if given) until `shutdown`
/// resolves, then runs the shutdown sequence described above; gRPC follows the same sequence as
/// HTTP (its own readiness answers false at once, its listener closes after the delay, its calls
/// in flight drain within the same deadline).
pub async fn serve(
    listeners: Listeners,
    state: AppState,
    timings: Timings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(false);
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let when = |rx: &tokio::sync::watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    };
    let metrics_task = listeners.metrics.map(|l| {
        let app = crate::api::metrics_router(state.clone());
        let stop = when(&closed_rx);
        tokio::spawn(async move {
            run_listener(l, app, timings.header_timeout, stop, Duration::from_secs(1)).await
        })
    });
    let grpc_task = listeners.grpc.map(|l| {
        let app = crate::api::grpc::router(state.clone());
        let stop = when(&closing_rx);
        tokio::spawn(async move {
            run_listener(l, app, timings.header_timeout, stop, timings.drain_timeout).await
        })
    });
    let drain_state = state.clone();
    let stop = async move {
        shutdown.await;
        drain_state.begin_drain();
        tracing::info!(
            seconds = timings.shutdown_delay.as_secs_f64(),
            "draining: readiness is 503; still serving until the shutdown delay has passed"
        );
        tokio::time::sleep(timings.shutdown_delay).await;
        let _ = closing_tx.send(true);
    };
    let app = crate::api::router(state);
    let mut result = run_listener(
        listeners.http,
        app,
        timings.header_timeout,
        stop,
        timings.drain_timeout,
    )
    .await;
    if let Some(task) = grpc_task {
        let grpc = task.await.unwrap_or(Ok(()));
        result = result.and(grpc);
    }
    let _ = closed_tx.send(true);
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    result
}
