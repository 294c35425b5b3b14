//! The v2 protocol details real clients rely on: metadata, every datatype in JSON and binary form,
//! tuple outputs mapped to named outputs, output filtering, raw binary requests, ids.

mod common;

use common::{fixture_with, heldout, in_process, TestServer};
use protocol::wire;
use reqwest::Client;
use serde_json::{json, Value};
use server::ServerConfig;

const TYPES: [(&str, &str, [f64; 4]); 10] = [
    ("b", "BOOL", [1.0, 0.0, 0.0, 1.0]),
    ("u8", "UINT8", [0.0, 255.0, 7.0, 128.0]),
    ("i8", "INT8", [-128.0, 127.0, 0.0, -1.0]),
    ("i16", "INT16", [-32768.0, 32767.0, 5.0, -5.0]),
    ("i32", "INT32", [-2147483648.0, 2147483647.0, 1.0, 0.0]),
    (
        "i64",
        "INT64",
        [-9007199254740991.0, 9007199254740991.0, 3.0, 4.0],
    ),
    ("f16", "FP16", [0.5, -2.0, 65504.0, 0.0]),
    ("bf16", "BF16", [0.5, -2.0, 256.0, 1.0]),
    ("f32", "FP32", [0.25, -1.5, 1e30, 3.0]),
    ("f64", "FP64", [0.1, -1e300, 2.5, 7.0]),
];

fn json_value(dt: &str, x: f64) -> Value {
    match dt {
        "BOOL" => json!(x != 0.0),
        "FP16" | "BF16" | "FP32" | "FP64" => json!(x),
        _ => json!(x as i64),
    }
}

fn le_bytes(dt: &str, xs: &[f64]) -> Vec<u8> {
    xs.iter()
        .flat_map(|&x| match dt {
            "BOOL" => vec![(x != 0.0) as u8],
            "UINT8" => vec![x as u8],
            "INT8" => (x as i8).to_le_bytes().to_vec(),
            "INT16" => (x as i16).to_le_bytes().to_vec(),
            "INT32" => (x as i32).to_le_bytes().to_vec(),
            "INT64" => (x as i64).to_le_bytes().to_vec(),
            "FP16" => half::f16::from_f64(x).to_le_bytes().to_vec(),
            "BF16" => half::bf16::from_f64(x).to_le_bytes().to_vec(),
            "FP32" => (x as f32).to_le_bytes().to_vec(),
            "FP64" => x.to_le_bytes().to_vec(),
            _ => unreachable!(),
        })
        .collect()
}

/// Splits a binary-extension response into its JSON header and the bytes after it.
async fn split(r: reqwest::Response) -> (Value, Vec<u8>) {
    assert_eq!(r.status(), 200);
    let len: usize = r.headers()[wire::HEADER_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    (
        serde_json::from_slice(&body[..len]).unwrap(),
        body[len..].to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_datatype_round_trips_as_json_and_as_binary() {
    let server = TestServer::start(ServerConfig::for_repository(fixture_with(
        "types",
        &["types"],
    )))
    .await;
    let http = Client::new();
    let url = server.url("/v2/models/types/infer");

    let inputs: Vec<Value> = TYPES
        .iter()
        .map(|(n, dt, xs)| json!({"name": n, "shape": [2, 2], "datatype": dt, "data": xs.iter().map(|&x| json_value(dt, x)).collect::<Vec<_>>()}))
        .collect();
    let v: Value = common::post_json(&http, &url, &json!({"inputs": inputs})).await;
    for (i, (n, dt, xs)) in TYPES.iter().enumerate() {
        let out = &v["outputs"][i];
        assert_eq!(out["name"], format!("{n}_out"));
        assert_eq!(out["datatype"], *dt);
        assert_eq!(out["shape"], json!([2, 2]));
        let want: Vec<Value> = xs.iter().map(|&x| json_value(dt, x)).collect();
        assert_eq!(out["data"], json!(want), "{dt} through JSON");
    }

    // Binary inputs and binary outputs: bytes in, the same bytes out.
    let header = json!({
        "inputs": TYPES.iter().map(|(n, dt, xs)| json!({"name": n, "shape": [2, 2], "datatype": dt,
            "parameters": {wire::BINARY_DATA_SIZE: le_bytes(dt, xs).len()}})).collect::<Vec<_>>(),
        "parameters": {wire::BINARY_DATA_OUTPUT: true}
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for (_, dt, xs) in TYPES {
        body.extend(le_bytes(dt, &xs));
    }
    let r = http
        .post(&url)
        .header(wire::HEADER_LENGTH, header.len())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let (head, blob) = split(r).await;
    let mut offset = 0;
    for (i, (_, dt, xs)) in TYPES.iter().enumerate() {
        let out = &head["outputs"][i];
        assert!(out.get("data").is_none(), "{dt} should be binary");
        let size = out["parameters"][wire::BINARY_DATA_SIZE].as_u64().unwrap() as usize;
        assert_eq!(
            &blob[offset..offset + size],
            le_bytes(dt, xs).as_slice(),
            "{dt} through binary"
        );
        offset += size;
    }
    assert_eq!(offset, blob.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuple_outputs_are_named_and_can_be_filtered_and_mixed() {
    let server = TestServer::start(ServerConfig::for_repository(fixture_with(
        "multi",
        &["multi"],
    )))
    .await;
    let http = Client::new();
    let request = json!({
        "id": "req-42",
        "inputs": [
            {"name": "b", "shape": [2, 3], "datatype": "INT64", "data": [[1, 2, 3], [4, 5, 6]]},
            {"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [[-1, 0, 1], [2, -3, 4]]}
        ]
    });
    let r = http
        .post(server.url("/v2/models/multi/infer"))
        .header("x-request-id", "trace-7")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "req-42");
    assert_eq!(v["model_version"], "1");
    let names: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["doubled", "incremented", "positive"]);
    assert_eq!(
        v["outputs"][0]["data"],
        json!([-2.0, 0.0, 2.0, 4.0, -6.0, 8.0])
    );
    assert_eq!(v["outputs"][1]["data"], json!([2, 3, 4, 5, 6, 7]));
    assert_eq!(
        v["outputs"][2]["data"],
        json!([false, false, true, true, false, true])
    );

    // Only `positive`, as binary; then `incremented` as JSON while the default is binary.
    let mut filtered = request.clone();
    filtered["outputs"] = json!([{"name": "positive", "parameters": {wire::BINARY_DATA: true}}]);
    let (head, blob) = split(
        http.post(server.url("/v2/models/multi/infer"))
            .json(&filtered)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(head["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(head["outputs"][0]["name"], "positive");
    assert_eq!(blob, vec![0, 0, 1, 1, 0, 1]);
    filtered["parameters"] = json!({wire::BINARY_DATA_OUTPUT: true});
    filtered["outputs"] =
        json!([{"name": "incremented", "parameters": {wire::BINARY_DATA: false}}]);
    let r = http
        .post(server.url("/v2/models/multi/infer"))
        .json(&filtered)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get(wire::HEADER_LENGTH).is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outputs"][0]["data"], json!([2, 3, 4, 5, 6, 7]));
    // A generated request id comes back when the client sent none.
    let r = http
        .post(server.url("/v2/models/multi/infer"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_health_and_raw_binary_requests_on_the_demo_models() {
    let server = TestServer::demo().await;
    let http = Client::new();
    let get = |p: &str| http.get(server.url(p)).send();
    assert_eq!(get("/v2/health/live").await.unwrap().status(), 200);
    assert_eq!(get("/v2/health/ready").await.unwrap().status(), 200);
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let meta: Value = get("/v2").await.unwrap().json().await.unwrap();
    assert_eq!(meta["name"], "torchship");
    assert_eq!(meta["extensions"], json!(server::api::v2::EXTENSIONS));
    for path in ["/v2/models/mlp", "/v2/models/mlp/versions/1"] {
        let m: Value = get(path).await.unwrap().json().await.unwrap();
        assert_eq!(
            m,
            json!({"name": "mlp", "versions": ["1"], "platform": "pytorch_torchscript",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1024]}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 1000]}]})
        );
    }
    let r = get("/v2/models/digits/versions/1/ready").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "digits", "ready": true})
    );
    let config: Value = get("/v2/models/digits/config")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["max_batch_size"], 64);

    // Inference-Header-Content-Length: 0 — the body is the single input's raw bytes, one row.
    let row = &heldout().inputs[3];
    let raw: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
    let r = http
        .post(server.url("/v2/models/digits/infer"))
        .header(wire::HEADER_LENGTH, "0")
        .body(raw)
        .send()
        .await
        .unwrap();
    let (head, blob) = split(r).await;
    assert_eq!(head["outputs"][0]["shape"], json!([1, 10]));
    let got: Vec<f32> = blob
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    common::assert_close(
        &got,
        &in_process("digits", std::slice::from_ref(row))[0],
        1e-5,
        "raw binary",
    );
    // A raw body of the wrong size is a 400, not a crash.
    let r = http
        .post(server.url("/v2/models/digits/infer"))
        .header(wire::HEADER_LENGTH, "0")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await;
}
