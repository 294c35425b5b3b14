//! The held-out digits split through real HTTP: accuracy must equal what the export script recorded,
//! and every logit must match in-process libtorch.

mod common;

use common::{argmax, assert_close, heldout, in_process, TestServer};
use serde_json::{json, Value};

fn logits(response: &Value) -> Vec<f32> {
    let out = &response["outputs"][0];
    assert_eq!(out["name"], "logits");
    assert_eq!(out["datatype"], "FP32");
    out["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heldout_split_through_v2_matches_in_process_and_recorded_accuracy() {
    let data = heldout();
    let server = TestServer::demo().await;
    let http = reqwest::Client::new();
    let url = server.url("/v2/models/digits/infer");

    // One row per request, the way most clients send; the reference runs the same one-row batches.
    let mut correct = 0;
    for (i, row) in data.inputs.iter().enumerate() {
        let body = json!({"id": format!("row-{i}"), "inputs": [
            {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": row}
        ]});
        let r = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], format!("row-{i}"));
        assert_eq!(v["model_name"], "digits");
        assert_eq!(v["outputs"][0]["shape"], json!([1, 10]));
        let got = logits(&v);
        let want = &in_process("digits", std::slice::from_ref(row))[0];
        assert_close(&got, want, 1e-5, &format!("row {i}"));
        correct += (argmax(&got) == data.labels[i]) as usize;
    }
    let accuracy = correct as f64 / data.labels.len() as f64;
    assert!(
        (accuracy - data.accuracy).abs() < 1e-6,
        "accuracy through the server {accuracy} != recorded {}",
        data.accuracy
    );
    assert!(
        accuracy > 0.9,
        "a trained digits model should be > 90% accurate, got {accuracy}"
    );

    // The same split in requests of 64 rows (nested data), through the versioned path.
    let url = server.url("/v2/models/digits/versions/1/infer");
    for (c, chunk) in data.inputs.chunks(64).enumerate() {
        let body = json!({"inputs": [
            {"name": "pixels", "shape": [chunk.len(), 64], "datatype": "FP32", "data": chunk}
        ]});
        let v: Value = common::post_json(&http, &url, &body).await;
        let got = logits(&v);
        let want: Vec<f32> = in_process("digits", chunk).concat();
        assert_close(&got, &want, 1e-5, &format!("chunk {c}"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_returns_logits_and_classes() {
    let data = heldout();
    let rows = &data.inputs[..5];
    let reference = in_process("digits", rows);
    let server = TestServer::demo().await;
    let http = reqwest::Client::new();
    let v: Value = common::post_json(
        &http,
        server.url("/predict"),
        &json!({"model": "digits", "inputs": rows}),
    )
    .await;
    assert_eq!(v["model"], "digits");
    for (i, want) in reference.iter().enumerate() {
        let got: Vec<f32> = v["outputs"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_close(&got, want, 1e-5, &format!("predict row {i}"));
        assert_eq!(v["classes"][i], argmax(want));
    }
    // A single row may be sent flat, without the batch dimension.
    let v: Value = common::post_json(
        &http,
        server.url("/predict"),
        &json!({"model": "digits", "inputs": rows[0]}),
    )
    .await;
    assert_eq!(v["classes"], json!([argmax(&reference[0])]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlp_serves_the_benchmark_model() {
    let rows: Vec<Vec<f32>> = (0..3)
        .map(|r| {
            (0..1024)
                .map(|i| ((i * 7 + r * 13) % 17) as f32 / 17.0 - 0.5)
                .collect()
        })
        .collect();
    let reference = in_process("mlp", &rows);
    let server = TestServer::demo().await;
    let body = json!({"inputs": [{"name": "input", "shape": [3, 1024], "datatype": "FP32", "data": rows}]});
    let v: Value = reqwest::Client::new()
        .post(server.url("/v2/models/mlp/infer"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["outputs"][0]["shape"], json!([3, 1000]));
    let got: Vec<f32> = v["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_close(&got, &reference.concat(), 1e-5, "mlp");
    server.stop().await;
}
