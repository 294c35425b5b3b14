//! gRPC beside HTTP: the health service through a SIGTERM with a call in flight (the real binary),
//! HTTP and gRPC requests sharing one forward pass, and the load tester over gRPC.

mod common;

use std::time::Duration;

use clap::Parser;
use common::{Process, TestServer};
use grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use grpc::pb::model_infer_request::InferInputTensor;
use grpc::pb::ModelInferRequest;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn digits_request(row: &[f32], id: &str) -> ModelInferRequest {
    let raw: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
    ModelInferRequest {
        model_name: "digits".into(),
        id: id.into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![raw.into()],
        ..Default::default()
    }
}

fn logits(reply: &grpc::pb::ModelInferResponse) -> Vec<f32> {
    reply.raw_output_contents[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

async fn health(client: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    let reply = client.check(request).await.unwrap().into_inner();
    ServingStatus::try_from(reply.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_on_sigterm_while_a_call_in_flight_completes() {
    let repo = common::models_dir();
    // A lone request waits out the queue delay: it is still in flight when SIGTERM arrives.
    let server = Process::spawn(&[
        "--model-repository",
        repo.to_str().unwrap(),
        "--max-queue-delay",
        "2s",
        "--shutdown-delay",
        "3s",
    ]);
    server.wait_ready().await;
    let addr = server.grpc.clone().expect("the binary serves gRPC");
    let mut probe = HealthClient::new(channel(&addr).await);
    assert_eq!(health(&mut probe, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&mut probe, grpc::SERVICE).await,
        ServingStatus::Serving
    );
    let unknown = probe
        .check(HealthCheckRequest {
            service: "nosuch.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let heldout = common::heldout();
    let mut infer = GrpcInferenceServiceClient::new(channel(&addr).await);
    let row = heldout.inputs[0].clone();
    let in_flight =
        tokio::spawn(async move { infer.model_infer(digits_request(&row, "late")).await });
    // The call is queued (pending gauge) before the signal is sent.
    let http = reqwest::Client::new();
    loop {
        let text = common::scrape(&http, &server.base).await;
        let pending = common::metric_or_zero(
            &text,
            "torchship_pending_requests",
            &[("model", "digits"), ("version", "1")],
        );
        if pending >= 1.0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    server.signal("TERM");
    let mut status = health(&mut probe, "").await;
    while status == ServingStatus::Serving {
        // The signal is handled asynchronously; within the 3 s delay the server still answers.
        tokio::task::yield_now().await;
        status = health(&mut probe, "").await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    let reply = in_flight
        .await
        .unwrap()
        .expect("the call in flight completes")
        .into_inner();
    assert_eq!(reply.id, "late");
    let want = common::Reference::load("digits").run(&[heldout.inputs[0].clone()]);
    common::assert_close(&logits(&reply), &want[0], 1e-5, "the late call's logits");
    let (exit, _) = server.wait(Duration::from_secs(30));
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_requests_share_a_forward_pass() {
    let mut config = server::ServerConfig::for_repository(common::models_dir());
    // Each pass waits up to 1 s for company: the two requests below meet in one.
    config.overrides.max_queue_delay = Some(Duration::from_secs(1));
    let server = TestServer::start(config).await;
    let heldout = common::heldout();
    let (a, b) = (heldout.inputs[0].clone(), heldout.inputs[1].clone());
    let mut client = GrpcInferenceServiceClient::new(channel(&server.grpc).await);
    let http = reqwest::Client::new();
    let body =
        json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": a}]});
    let over_http = common::post_json::<Value>(&http, server.url("/v2/models/digits/infer"), &body);
    let over_grpc = client.model_infer(digits_request(&b, "g"));
    let (h, g) = tokio::join!(over_http, over_grpc);
    let g = g.unwrap().into_inner();
    let reference = common::Reference::load("digits");
    let want = reference.run(&[a, b]);
    let h: Vec<f32> = serde_json::from_value(h["outputs"][0]["data"].clone()).unwrap();
    common::assert_close(&h, &want[0], 1e-5, "HTTP logits");
    common::assert_close(&logits(&g), &want[1], 1e-5, "gRPC logits");
    let text = common::scrape(&http, &server.base).await;
    let labels = [("model", "digits"), ("version", "1")];
    assert_eq!(
        common::metric(&text, "torchship_execution_total", &labels),
        1.0
    );
    assert_eq!(
        common::metric(&text, "torchship_inference_total", &labels),
        2.0
    );
    // Counted under each protocol.
    for protocol in ["http", "grpc"] {
        let labels = [
            ("model", "digits"),
            ("version", "1"),
            ("protocol", protocol),
            ("outcome", "success"),
        ];
        assert_eq!(
            common::metric(&text, "torchship_request_total", &labels),
            1.0
        );
    }
    server.stop().await;
}

/// The load tester's arguments for `model` over gRPC at `url`, bounded to a minute, plus `extra`.
fn grpc_load(url: &str, model: &str, extra: &[&str]) -> loadtest::Args {
    let base = [
        "loadtest",
        "--url",
        url,
        "--model",
        model,
        "--duration",
        "60s",
        "--api",
        "grpc",
    ];
    loadtest::Args::parse_from(base.iter().chain(extra))
}

/// The load tester over gRPC (`--api grpc`: raw contents, HTTP/2 streams sharing connections),
/// closed loop, bounded by a request count; then a gRPC error is classed by its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tester_drives_grpc_and_classes_its_errors() {
    let server = TestServer::demo().await;
    let url = format!("http://{}", server.grpc);
    let run = |model: &str| {
        let args = grpc_load(&url, model, &["--concurrency", "8", "--requests", "300"]);
        async move { loadtest::run(&args, std::future::pending()).await }
    };
    let report = run("digits").await.expect("load test");
    assert_eq!(report.summary.requests, 300, "{:?}", report.summary);
    assert_eq!(report.summary.ok, 300, "{:?}", report.summary.errors);
    let http = reqwest::Client::new();
    let text = common::scrape(&http, &server.base).await;
    let outcomes = [
        ("model", "digits"),
        ("version", "1"),
        ("protocol", "grpc"),
        ("outcome", "success"),
    ];
    assert_eq!(
        common::metric(&text, "torchship_request_total", &outcomes),
        300.0
    );
    // A shipped scenario (steady: open loop at 300 req/s), bounded by a request count.
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../loadtest/scenarios/steady.toml"
    );
    let args = grpc_load(
        &url,
        "digits",
        &["--scenario", scenario, "--requests", "150"],
    )
    .with_scenario()
    .unwrap();
    let report = loadtest::run(&args, std::future::pending()).await.unwrap();
    assert!(
        report.summary.mode.starts_with("open loop"),
        "{}",
        report.summary.mode
    );
    assert_eq!(report.summary.ok, 150, "{:?}", report.summary.errors);
    // A model that does not exist: the metadata call says so before any load.
    let missing = run("nosuch").await.unwrap_err().to_string();
    assert!(missing.contains("NotFound"), "{missing}");
    server.stop().await;

    // A server whose deadline passes before any pass starts: every answer is DEADLINE_EXCEEDED (4).
    let mut config = server::ServerConfig::for_repository(common::models_dir());
    config.default_timeout = Duration::from_nanos(1);
    let server = TestServer::start(config).await;
    let url = format!("http://{}", server.grpc);
    let args = grpc_load(&url, "digits", &["--concurrency", "2", "--requests", "20"]);
    let report = loadtest::run(&args, std::future::pending()).await.unwrap();
    assert_eq!(report.summary.ok, 0);
    assert_eq!(
        report.summary.errors.get("grpc_4"),
        Some(&20),
        "{:?}",
        report.summary.errors
    );
    server.stop().await;
}

/// The repository calls over gRPC follow HTTP's rules: with a control key, UNAUTHENTICATED without
/// it and PERMISSION_DENIED with another; with it, unload and load work under explicit model
/// control, and the index shows each state. Load overrides are refused, not ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_calls_take_the_control_key_and_model_control() {
    use grpc::pb::{
        RepositoryIndexRequest, RepositoryModelLoadRequest, RepositoryModelUnloadRequest,
    };
    let key = "5f2b8c0e9d7a4b1c3e6f8a0d2c4b6e8f";
    let mut config = server::ServerConfig::for_repository(common::models_dir());
    config.model_control = server::config::ModelControl::Explicit;
    config.control_key =
        server::control_key::ControlKey::load("x-torchship-control-key", Some(key), None).unwrap();
    let server = TestServer::start(config).await;
    let mut client = GrpcInferenceServiceClient::new(channel(&server.grpc).await);
    let with_key = |key: &str, name: &str| {
        let mut r = tonic::Request::new(RepositoryModelUnloadRequest {
            model_name: name.into(),
            ..Default::default()
        });
        r.metadata_mut()
            .insert("x-torchship-control-key", key.parse().unwrap());
        r
    };
    let missing = client
        .repository_model_unload(RepositoryModelUnloadRequest {
            model_name: "mlp".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated, "{missing:?}");
    assert!(
        missing.message().contains("x-torchship-control-key"),
        "{missing:?}"
    );
    let wrong = client
        .repository_model_unload(with_key("5f2b8c0e9d7a4b1c3e6f8a0d2c4b6e8e", "mlp"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::PermissionDenied, "{wrong:?}");
    client
        .repository_model_unload(with_key(key, "mlp"))
        .await
        .expect("unload with the key");
    let mut index = tonic::Request::new(RepositoryIndexRequest::default());
    index
        .metadata_mut()
        .insert("x-torchship-control-key", key.parse().unwrap());
    let rows = client.repository_index(index).await.unwrap().into_inner();
    let states: Vec<(String, String)> = rows
        .models
        .iter()
        .map(|m| (m.name.clone(), m.state.clone()))
        .collect();
    // As over HTTP: an unloaded model is not served, so not READY in the index.
    assert!(
        !states.contains(&("mlp".into(), "READY".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("digits".into(), "READY".into())),
        "{states:?}"
    );
    let mut load = tonic::Request::new(RepositoryModelLoadRequest {
        model_name: "mlp".into(),
        parameters: [("config".to_string(), Default::default())].into(),
        ..Default::default()
    });
    load.metadata_mut()
        .insert("x-torchship-control-key", key.parse().unwrap());
    let refused = client.repository_model_load(load).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let mut load = tonic::Request::new(RepositoryModelLoadRequest {
        model_name: "mlp".into(),
        ..Default::default()
    });
    load.metadata_mut()
        .insert("x-torchship-control-key", key.parse().unwrap());
    client
        .repository_model_load(load)
        .await
        .expect("load with the key");
    server.stop().await;
}

/// A message larger than the limit (`--max-body-size`, as for HTTP) is answered with a clear
/// status, and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_with_a_clear_status() {
    let mut config = server::ServerConfig::for_repository(common::models_dir());
    config.max_body_size = 1024;
    let server = TestServer::start(config).await;
    let mut client = GrpcInferenceServiceClient::new(channel(&server.grpc).await);
    let mut big = digits_request(&[0.5; 64], "big");
    big.inputs[0].shape = vec![4, 64];
    big.raw_input_contents = vec![vec![0u8; 4 * 64 * 4].into()];
    let refused = client.model_infer(big).await.unwrap_err();
    // tonic's answer for a message over the limit (grpc-core's would be RESOURCE_EXHAUSTED).
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("1024"), "{refused:?}");
    let ok = client
        .model_infer(digits_request(&[0.5; 64], "small"))
        .await;
    assert_eq!(
        ok.expect("a small message still served").into_inner().id,
        "small"
    );
    server.stop().await;
}

/// A gzip message of 240 MiB of zeros (about 240 KB sent) against an 8 MiB limit: refused with
/// RESOURCE_EXHAUSTED once inflating passes the limit, three times, with the server's RSS flat;
/// an ordinary compressed request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_bomb_is_refused_and_memory_stays_flat() {
    use tonic::codec::CompressionEncoding;
    let repo = common::models_dir();
    let server = Process::spawn(&[
        "--model-repository",
        repo.to_str().unwrap(),
        "--max-body-size",
        "8MiB",
    ]);
    server.wait_ready().await;
    let addr = server.grpc.clone().expect("the binary serves gRPC");
    let mut client = GrpcInferenceServiceClient::new(channel(&addr).await)
        .send_compressed(CompressionEncoding::Gzip);
    let mut bomb = digits_request(&[0.5; 64], "bomb");
    bomb.raw_input_contents = vec![vec![0u8; 240 << 20].into()];
    let before = server.rss();
    for _ in 0..3 {
        let refused = client.model_infer(bomb.clone()).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(refused.message().contains("size limit"), "{refused:?}");
    }
    let grown = server.rss().saturating_sub(before);
    println!(
        "RSS grew {} KiB over three 240 MiB gzip messages",
        grown >> 10
    );
    assert!(grown < 48 << 20, "RSS grew {grown} bytes");
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Deflate] {
        let mut client =
            GrpcInferenceServiceClient::new(channel(&addr).await).send_compressed(encoding);
        let ok = client
            .model_infer(digits_request(&[0.5; 64], "small"))
            .await;
        assert_eq!(
            ok.expect("a compressed request served").into_inner().id,
            "small"
        );
    }
}
