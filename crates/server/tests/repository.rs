//! The model repository as an operator meets it: broken models next to good ones, strict mode,
//! version policies, and the repository extension (index, load, unload) with its safety rules.

mod common;

use common::{fixture_with, TestServer};
use reqwest::Client;
use serde_json::{json, Value};
use server::config::ModelControl;
use server::ServerConfig;

/// `multi_request()` posted to `path`.
async fn infer_multi(http: &Client, server: &TestServer, path: &str) -> reqwest::Response {
    http.post(server.url(path))
        .json(&multi_request())
        .send()
        .await
        .unwrap()
}

fn multi_request() -> Value {
    json!({"inputs": [
        {"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        {"name": "b", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}
    ]})
}

async fn index(http: &Client, server: &TestServer) -> Vec<Value> {
    let r = http
        .post(server.url("/v2/repository/index"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in index: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_models_are_reported_and_the_good_one_serves() {
    let dir = fixture_with("broken", &["multi", "broken", "liar"]);
    std::fs::create_dir_all(dir.join("noconfig/1")).unwrap();
    std::fs::create_dir_all(dir.join("badconfig/1")).unwrap();
    std::fs::write(
        dir.join("badconfig/config.toml"),
        "max_batch_size = \"lots\"",
    )
    .unwrap();
    let server = TestServer::start(ServerConfig::for_repository(&dir)).await;
    let http = Client::new();

    let r = infer_multi(&http, &server, "/v2/models/multi/infer").await;
    assert_eq!(r.status(), 200);
    // Readiness counts the models that can serve; failures are reported, not waited for.
    assert_eq!(
        http.get(server.url("/v2/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let rows = index(&http, &server).await;
    assert_eq!(row(&rows, "multi")["state"], "READY");
    let broken = row(&rows, "broken");
    assert_eq!(broken["state"], "UNAVAILABLE");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("broken/1/model.pt: cannot load TorchScript"),
        "{broken}"
    );
    let liar = row(&rows, "liar");
    assert!(
        liar["reason"]
            .as_str()
            .unwrap()
            .contains("output 'y' is INT64 [1, 2], the config declares FP32"),
        "{liar}"
    );
    assert!(row(&rows, "noconfig")["reason"]
        .as_str()
        .unwrap()
        .contains("noconfig/config.toml"));
    assert!(row(&rows, "badconfig")["reason"]
        .as_str()
        .unwrap()
        .contains("badconfig/config.toml"));
    // Only the ready ones, on request.
    let ready: Vec<Value> = common::post_json(
        &http,
        server.url("/v2/repository/index"),
        &json!({"ready": true}),
    )
    .await;
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0]["name"], "multi");

    let r = http
        .get(server.url("/v2/models/broken/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "broken", "ready": false})
    );
    server.stop().await;

    // Under --strict-models the same repository does not start, and says why.
    let mut strict = ServerConfig::for_repository(&dir);
    strict.strict_models = true;
    let err = server::start(strict)
        .await
        .err()
        .expect("strict start must fail")
        .to_string();
    assert!(err.contains("--strict-models: 4 model(s) failed"), "{err}");
    assert!(err.contains("broken/1/model.pt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_policies_choose_what_serves() {
    let dir = fixture_with("versions", &["multi"]);
    std::fs::create_dir_all(dir.join("multi/2")).unwrap();
    std::fs::copy(dir.join("multi/1/model.pt"), dir.join("multi/2/model.pt")).unwrap();
    let config_path = dir.join("multi/config.toml");
    let base = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("version_policy = \"all\"\n{base}")).unwrap();
    let server = TestServer::start(ServerConfig::for_repository(&dir)).await;
    let http = Client::new();
    let meta: Value = common::get_json(&http, server.url("/v2/models/multi")).await;
    assert_eq!(meta["versions"], json!(["1", "2"]));
    for (path, version) in [
        ("/v2/models/multi/versions/1/infer", "1"),
        ("/v2/models/multi/versions/2/infer", "2"),
        ("/v2/models/multi/infer", "2"),
    ] {
        let v: Value = common::post_json(&http, server.url(path), &multi_request()).await;
        assert_eq!(v["model_version"], version, "{path}");
    }
    server.stop().await;

    std::fs::write(
        &config_path,
        format!("version_policy = {{ specific = [1] }}\n{base}"),
    )
    .unwrap();
    let server = TestServer::start(ServerConfig::for_repository(&dir)).await;
    let meta: Value = common::get_json(&http, server.url("/v2/models/multi")).await;
    assert_eq!(meta["versions"], json!(["1"]));
    let r = infer_multi(&http, &server, "/v2/models/multi/versions/2/infer").await;
    assert_eq!(r.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_model_control_loads_and_unloads_inside_the_repository_only() {
    let dir = fixture_with("control", &["multi", "types"]);
    // `types` is moved aside and comes back at run time, to be loaded over HTTP.
    let aside = dir.with_file_name(format!(
        "{}-aside",
        dir.file_name().unwrap().to_str().unwrap()
    ));
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(dir.join("types"), &aside).unwrap();
    let mut config = ServerConfig::for_repository(&dir);
    config.model_control = ModelControl::Explicit;
    let server = TestServer::start(config).await;
    let http = Client::new();
    let post = |p: &str| http.post(server.url(p)).send();

    assert_eq!(
        post("/v2/repository/models/multi/unload")
            .await
            .unwrap()
            .status(),
        200
    );
    let r = infer_multi(&http, &server, "/v2/models/multi/infer").await;
    assert_eq!(r.status(), 404);
    assert!(index(&http, &server)
        .await
        .iter()
        .all(|r| r["name"] != "multi"));
    assert_eq!(
        post("/v2/repository/models/multi/load")
            .await
            .unwrap()
            .status(),
        200
    );
    let r = infer_multi(&http, &server, "/v2/models/multi/infer").await;
    assert_eq!(r.status(), 200);

    let r = post("/v2/repository/models/types/load").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_type"],
        "load_failed"
    );
    std::fs::rename(&aside, dir.join("types")).unwrap();
    assert_eq!(
        post("/v2/repository/models/types/load")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(row(&index(&http, &server).await, "types")["state"], "READY");

    // Names that would leave the repository never reach the file system.
    for bad in ["%2Fetc", "a%2Fb", ".hidden", "..%2Fmodels"] {
        let r = post(&format!("/v2/repository/models/{bad}/load"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("not a valid model name"),
            "{bad}: {v}"
        );
    }
    assert_eq!(
        post("/v2/repository/models/nope/unload")
            .await
            .unwrap()
            .status(),
        404
    );
    server.stop().await;
}

/// With a control key, index, load and unload answer only callers that send it: a JSON 401
/// without the header, a JSON 403 with another key, both counted; the key itself works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_key_restricts_the_repository_endpoints() {
    let key = "5f2b8c0e9d7a4b1c3e6f8a0d2c4b6e8f";
    let mut config = ServerConfig::for_repository(fixture_with("restricted", &["multi"]));
    config.model_control = ModelControl::Explicit;
    config.control_key =
        server::control_key::ControlKey::load("x-torchship-control-key", Some(key), None).unwrap();
    let server = TestServer::start(config).await;
    let http = Client::new();
    for path in [
        "/v2/repository/index",
        "/v2/repository/models/multi/unload",
        "/v2/repository/models/multi/load",
    ] {
        let r = http.post(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without the key");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error_type"], "control_key_missing", "{path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("x-torchship-control-key"),
            "{body}"
        );
        let r = http
            .post(server.url(path))
            .header(
                "x-torchship-control-key",
                "5f2b8c0e9d7a4b1c3e6f8a0d2c4b6e8e",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path} with a wrong key");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error_type"], "control_key_rejected", "{path}: {body}");
    }
    // Inference is not restricted, and the key opens the repository endpoints.
    let r = infer_multi(&http, &server, "/v2/models/multi/infer").await;
    assert_eq!(r.status(), 200);
    for path in [
        "/v2/repository/index",
        "/v2/repository/models/multi/unload",
        "/v2/repository/models/multi/load",
    ] {
        let r = http
            .post(server.url(path))
            .header("x-torchship-control-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the key");
    }
    let text = common::scrape(&http, &server.base).await;
    let counted = |route: &str, status: &str| {
        common::metric(
            &text,
            "torchship_http_requests_total",
            &[("route", route), ("method", "POST"), ("status", status)],
        )
    };
    assert_eq!(counted("/v2/repository/index", "401"), 1.0);
    assert_eq!(counted("/v2/repository/models/{model}/load", "403"), 1.0);
    server.stop().await;
}
