//! Test support: the real server in-process on 127.0.0.1:0, and the demo models made by setup.

#![allow(dead_code)]

use std::path::PathBuf;

use server::{AppState, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The repository made by `scripts/setup.sh`.
pub fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    assert!(
        dir.join("digits/1/model.pt").exists(),
        "demo models missing: run scripts/setup.sh (the README's test command does)"
    );
    dir
}

pub struct TestServer {
    pub base: String,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), server::StartupError>>,
}

impl TestServer {
    /// Starts the server on `config` and waits until every model has finished loading.
    pub async fn start(config: ServerConfig) -> TestServer {
        let state = server::start_models(&config).expect("models start");
        for m in state.models() {
            m.settled().await;
        }
        let listener = tokio::net::TcpListener::bind(config.addr).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            state,
            stop: Some(stop),
            task,
        }
    }

    pub async fn demo() -> TestServer {
        TestServer::start(ServerConfig::for_repository(models_dir())).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// The held-out digits split written by scripts/export_models.py.
#[derive(serde::Deserialize)]
pub struct Heldout {
    pub accuracy: f64,
    pub labels: Vec<usize>,
    pub inputs: Vec<Vec<f32>>,
}

pub fn heldout() -> Heldout {
    let text = std::fs::read_to_string(models_dir().join("digits/heldout.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs `rows` through the model in-process with libtorch, as the reference.
pub fn in_process(model: &str, rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let _g = tch::no_grad_guard();
    let mut m = tch::CModule::load(models_dir().join(model).join("1/model.pt")).unwrap();
    m.set_eval();
    let width = rows[0].len() as i64;
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let x = tch::Tensor::from_slice(&flat).reshape([rows.len() as i64, width]);
    let y = m.forward_ts(&[x]).unwrap();
    let cols = y.size()[1] as usize;
    let out: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
    out.chunks(cols).map(|c| c.to_vec()).collect()
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// Element-wise `|got - want| <= tol * max(1, |want|)`: absolute near zero, relative for large logits
/// (libtorch's kernels may round differently for different batch sizes).
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: server {g} vs in-process {w}"
        );
    }
}
