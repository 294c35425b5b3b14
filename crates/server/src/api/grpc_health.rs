//! `grpc.health.v1.Health` for gRPC probes (Kubernetes `grpc:` probes, grpc_health_probe): SERVING
//! exactly when `/v2/health/ready` answers 200, so NOT_SERVING from the moment SIGTERM arrives
//! while calls in flight still finish. The server as a whole (`""`) and the inference service
//! (`inference.GRPCInferenceService`) are known; any other name is NOT_FOUND, as the protocol says.

use std::time::Duration;

use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::state::AppState;

/// How often a Watch stream looks at readiness again (it sends only changes).
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub fn service(state: AppState) -> HealthServer<Probe> {
    HealthServer::new(Probe { state })
}

pub struct Probe {
    state: AppState,
}

impl Probe {
    fn status(&self, service: &str) -> Result<ServingStatus, Status> {
        if !service.is_empty() && service != grpc::SERVICE {
            return Err(Status::not_found(format!(
                "unknown service '{service}': this server has '' and '{}'",
                grpc::SERVICE
            )));
        }
        Ok(if self.state.all_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        })
    }
}

fn reply(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

#[tonic::async_trait]
impl Health for Probe {
    async fn check(
        &self,
        r: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let status = self.status(&r.into_inner().service)?;
        Ok(Response::new(reply(status)))
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    /// The current status at once, then each change, until the client goes away.
    async fn watch(
        &self,
        r: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = r.into_inner().service;
        let mut last = self.status(&service)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let probe = Probe {
            state: self.state.clone(),
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            if tx.send(Ok(reply(last))).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = tx.closed() => return,
                }
                let now = probe.status(&service).unwrap_or(ServingStatus::Unknown);
                if now != last {
                    last = now;
                    if tx.send(Ok(reply(now))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
