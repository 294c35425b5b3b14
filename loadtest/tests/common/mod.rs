//! Shared by the load tester's end-to-end tests: a small v2 server on loopback (so the numbers
//! measure the load tester, not a model) and argument building.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use serde_json::json;

/// Serves v2 metadata for model `m` and answers infer at once, except that request number
/// `stall_at` (if any) holds a lock for `stall` while every other request waits on it. `/metrics`
/// counts each answered request as one forward pass of batch 1, as torchship's metrics would.
pub async fn server(stall_at: Option<u64>, stall: Duration) -> (String, Arc<AtomicU64>) {
    let (url, count, _) = server_with_peers(stall_at, stall).await;
    (url, count)
}

/// Client addresses (one per connection) that sent an infer request.
pub type Peers = Arc<std::sync::Mutex<std::collections::HashSet<std::net::SocketAddr>>>;

/// [`server`], also recording each connection's client address.
pub async fn server_with_peers(
    stall_at: Option<u64>,
    stall: Duration,
) -> (String, Arc<AtomicU64>, Peers) {
    let count = Arc::new(AtomicU64::new(0));
    let peers: Peers = Arc::default();
    let p = peers.clone();
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let stalled = Arc::new(AtomicBool::new(false));
    let c = count.clone();
    let metrics = count.clone();
    let app = Router::new()
        .route("/metrics", get(move || {
            let n = metrics.load(Ordering::SeqCst);
            async move {
                format!("# TYPE torchship_batch_size histogram\n\
                    torchship_batch_size_sum{{model=\"m\",version=\"1\"}} {n}\n\
                    torchship_batch_size_count{{model=\"m\",version=\"1\"}} {n}\n\
                    torchship_pending_requests{{model=\"m\",version=\"1\"}} 0\n")
            }
        }))
        .route("/v2/models/m", get(|| async {
            axum::Json(json!({"name": "m", "versions": ["1"], "platform": "pytorch_torchscript",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}))
        }))
        .route("/v2/models/m/infer", post(move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>, body: axum::body::Bytes| {
            let (c, gate, stalled) = (c.clone(), gate.clone(), stalled.clone());
            p.lock().unwrap().insert(peer);
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let _g = gate.lock().await;
                if Some(n) == stall_at && !stalled.swap(true, Ordering::SeqCst) {
                    tokio::time::sleep(stall).await;
                }
                assert!(!body.is_empty());
                axum::Json(json!({"model_name": "m", "outputs": [{"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}))
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    (url, count, peers)
}

pub fn args(url: &str, extra: &[&str]) -> loadtest::Args {
    let mut v = vec!["loadtest", "--url", url, "--model", "m"];
    v.extend_from_slice(extra);
    loadtest::Args::parse_from(v)
}
