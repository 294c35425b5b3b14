//! Dynamic batching end to end: many concurrent single-row requests at `mlp` are batched, and every
//! caller gets exactly its own row's answer.

mod common;

use common::{assert_close, metric, rows, Reference, TestServer};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_rows_are_batched_and_each_gets_its_own_answer() {
    const N: usize = 256;
    let inputs = rows(N, 1024, 7);
    let reference = Reference::load("mlp");
    // The reference runs each row alone, as a client without a batching server would.
    let want: Vec<Vec<f32>> = inputs
        .iter()
        .map(|r| reference.run(std::slice::from_ref(r)).remove(0))
        .collect();
    let server = TestServer::demo().await;
    let http = reqwest::Client::new();
    let before = common::scrape(&http, &server.base).await;

    let mut tasks = tokio::task::JoinSet::new();
    for (i, row) in inputs.into_iter().enumerate() {
        let (http, url) = (http.clone(), server.url("/v2/models/mlp/infer"));
        tasks.spawn(async move {
            let body = json!({"inputs": [{"name": "input", "shape": [1, 1024], "datatype": "FP32", "data": row}]});
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            let got: Vec<f32> = v["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (i, got)
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, got) = done.unwrap();
        // libtorch may round differently for a batch than for one row: relative 1e-5 (README).
        assert_close(&got, &want[i], 1e-5, &format!("row {i}"));
        answered += 1;
    }
    assert_eq!(answered, N);

    let after = common::scrape(&http, &server.base).await;
    let mv = [("model", "mlp"), ("version", "1")];
    let d = |name: &str| metric(&after, name, &mv) - metric(&before, name, &mv);
    let (passes, batched_rows) = (
        d("torchship_batch_size_count"),
        d("torchship_batch_size_sum"),
    );
    assert_eq!(batched_rows, N as f64);
    let mean = batched_rows / passes;
    println!("{N} requests in {passes} forward passes: mean batch size {mean:.1}");
    assert!(mean > 4.0, "mean batch size {mean} (passes {passes})");
    server.stop().await;
}
