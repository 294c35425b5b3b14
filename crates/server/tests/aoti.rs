//! AOTInductor packages (`platform = "pytorch_aoti"`) end to end: the demo digits-aoti and mlp-aoti
//! (the same weights as digits and mlp, through torch.export + AOTInductor) answer like their
//! TorchScript twins over HTTP, also for requests that share a forward pass; broken and mismatched
//! packages are refused at load, each reason naming its file, while the good model serves.

mod common;

use common::{assert_close, metric, rows, TestServer};
use serde_json::{json, Value};

/// Sends `inputs` in requests of 1 to 4 rows, all at once (so the batcher merges them), and returns
/// each row's output in input order.
async fn infer_all(
    http: &reqwest::Client,
    server: &TestServer,
    model: &str,
    input: &str,
    inputs: &[Vec<f32>],
) -> Vec<Vec<f32>> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut start = 0;
    while start < inputs.len() {
        let n = (1 + start % 4).min(inputs.len() - start);
        let chunk: Vec<f32> = inputs[start..start + n].iter().flatten().copied().collect();
        let width = inputs[start].len();
        let body = json!({"inputs": [{"name": input, "shape": [n, width], "datatype": "FP32", "data": chunk}]});
        let (http, url) = (
            http.clone(),
            server.url(&format!("/v2/models/{model}/infer")),
        );
        tasks.spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            let out = &v["outputs"][0];
            let cols = out["shape"][1].as_u64().unwrap() as usize;
            let flat: Vec<f32> = out["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (
                start,
                flat.chunks(cols).map(<[f32]>::to_vec).collect::<Vec<_>>(),
            )
        });
        start += n;
    }
    let mut answers = vec![Vec::new(); inputs.len()];
    while let Some(done) = tasks.join_next().await {
        let (at, outs) = done.unwrap();
        for (i, out) in outs.into_iter().enumerate() {
            answers[at + i] = out;
        }
    }
    answers
}

/// Forward passes and requests a model served between two scrapes.
fn passes_and_requests(before: &str, after: &str, model: &str) -> (f64, f64) {
    let mv = [("model", model), ("version", "1")];
    let d = |name: &str, labels: &[(&str, &str)]| {
        metric(after, name, labels) - common::metric_or_zero(before, name, labels)
    };
    let ok = [
        ("model", model),
        ("version", "1"),
        ("protocol", "http"),
        ("outcome", "success"),
    ];
    (
        d("torchship_batch_size_count", &mv),
        d("torchship_request_total", &ok),
    )
}

/// Runs `inputs` through the TorchScript model and its AOTI twin, compares them row by row at
/// rel. 1e-5 and checks the AOTI model merged requests into shared forward passes.
async fn compare(model: &str, input: &str, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let server = TestServer::demo().await;
    let http = reqwest::Client::new();
    let aoti = format!("{model}-aoti");
    let meta: Value = common::get_json(&http, server.url(&format!("/v2/models/{aoti}"))).await;
    assert_eq!(meta["platform"], "pytorch_aoti", "{meta}");
    let want = infer_all(&http, &server, model, input, inputs).await;
    let before = common::scrape(&http, &server.base).await;
    let got = infer_all(&http, &server, &aoti, input, inputs).await;
    let after = common::scrape(&http, &server.base).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(g, w, 1e-5, &format!("{aoti} row {i} vs {model}"));
    }
    // The loader's unpacked copies of the CPU packages are gone once loaded (they would pile up
    // in /tmp at every start otherwise); their kernels keep running from the mapped library.
    let left = server::runtime::aoti::extracted::left_behind();
    assert!(left.is_empty(), "extracted packages left behind: {left:?}");
    let (passes, requests) = passes_and_requests(&before, &after, &aoti);
    println!("{aoti}: {requests} requests in {passes} forward passes");
    assert!(
        requests > 0.0 && passes < requests,
        "{aoti}: {passes} passes for {requests} requests"
    );
    server.stop().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_aoti_answers_the_heldout_split_like_torchscript_digits() {
    let heldout = common::heldout();
    let got = compare("digits", "pixels", &heldout.inputs).await;
    let correct = got
        .iter()
        .zip(&heldout.labels)
        .filter(|(row, &label)| common::argmax(row) == label)
        .count();
    let accuracy = correct as f64 / heldout.labels.len() as f64;
    // heldout.json holds the accuracy torch measured, as float32: the same count of correct rows.
    assert!(
        (accuracy - heldout.accuracy).abs() < 0.5 / heldout.labels.len() as f64,
        "accuracy {accuracy} vs {}",
        heldout.accuracy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlp_aoti_matches_mlp_in_shared_forward_passes() {
    compare("mlp", "input", &rows(96, 1024, 11)).await;
}

/// `POST /v2/repository/index`: every model with its state and reason.
async fn index(http: &reqwest::Client, server: &TestServer) -> Vec<Value> {
    common::post_json(http, server.url("/v2/repository/index"), &json!({})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_or_mismatched_packages_are_refused_at_load_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("torchship-aoti-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_aoti.py");
    let status = std::process::Command::new(common::venv_python())
        .arg(script)
        .arg(common::models_dir())
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "make_aoti.py failed");
    let server = TestServer::start(server::ServerConfig::for_repository(&dir)).await;
    let http = reqwest::Client::new();
    let rows = index(&http, &server).await;
    let reason = |name: &str| -> String {
        let row = rows
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {rows:?}"));
        assert_eq!(row["state"], "UNAVAILABLE", "{row}");
        row["reason"].as_str().unwrap().to_string()
    };
    let expect = [
        ("static", "the package's batch dimension is static (it takes a batch of 1 only) but max_batch_size is 8"),
        ("bounded", "takes batches of 1 and 2 but not of max_batch_size = 8"),
        ("bounded", "expected to be <= 4, but got: 8"),
        ("lowerbound", "lower bound is above 1"),
        ("narrow", "refuses the inputs config.toml declares (FP32 [1, 32])"),
        ("narrow", "unmatched dim value at 1, expected: 64, but got: 32"),
        ("twoinputs", "the package takes 1 input (its call spec), config.toml declares 2"),
        ("wideout", "output 'logits' is FP32 [1, 10], the config declares FP32 [-1, 5]"),
        ("cudapkg", "compiled for CUDA (AOTI_DEVICE_KEY=cuda) but this model runs on cpu"),
        ("junk", "not a readable AOTInductor package"),
        ("torchscript", "not a readable AOTInductor package"),
    ];
    for (name, phrase) in expect {
        let why = reason(name);
        let file = dir.join(name).join("1/model.pt2");
        assert!(
            why.starts_with(&format!("{}: ", file.display())),
            "{name}: {why}"
        );
        assert!(why.contains(phrase), "{name}: {why}");
    }
    let has_amx = server::runtime::aoti::checks::host_cpu_flags()
        .iter()
        .any(|f| f == "amx_tile");
    if has_amx {
        println!("this CPU has AMX: the isa package loads here, its refusal is not tested");
    } else {
        assert!(
            reason("isa").contains("this CPU lacks amx_tile"),
            "{}",
            reason("isa")
        );
    }
    // The good package beside them serves.
    let body = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": vec![1.0; 64]}]});
    let r = http
        .post(server.url("/v2/models/digits-aoti/infer"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
