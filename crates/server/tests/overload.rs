//! A flood past the queue bound, held for 35 s: excess requests get 429 quickly, accepted ones
//! succeed, and the server's memory stays flat.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{rows, Process};
use protocol::wire;

const HOLD: Duration = Duration::from_secs(35);
const CLIENTS: usize = 32;
/// Bound on the whole flood, whatever the machine's speed.
const MAX_REQUESTS: u64 = 2_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_fast_and_memory_stays_flat() {
    let repo = common::models_dir();
    let server = Process::spawn(&[
        "--model-repository",
        repo.to_str().unwrap(),
        "--max-queue-size",
        "4",
        // One core for libtorch, one for HTTP: rejections must not wait behind forward passes.
        "--intra-op-threads",
        "1",
    ]);
    server.wait_ready().await;
    let body: Vec<u8> = rows(1, 1024, 3)[0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let http = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected_us: Arc<Mutex<Vec<u32>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, body) = (
            http.clone(),
            server.url("/v2/models/mlp/infer"),
            body.clone(),
        );
        let (stop, sent, accepted, rejected_us, failures) = (
            stop.clone(),
            sent.clone(),
            accepted.clone(),
            rejected_us.clone(),
            failures.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire)
                && sent.fetch_add(1, Ordering::AcqRel) < MAX_REQUESTS
            {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header(wire::HEADER_LENGTH, "0")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        r.bytes().await.unwrap();
                        accepted.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(r) if r.status() == 429 => {
                        let _ = r.bytes().await;
                        rejected_us
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_micros() as u32);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_early = server.rss();
    tokio::time::sleep(HOLD - started.elapsed()).await;
    let rss_late = server.rss();
    stop.store(true, Ordering::Release);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let mut rejected = rejected_us.lock().unwrap().clone();
    rejected.sort_unstable();
    let accepted = accepted.load(Ordering::Acquire);
    let p99_ms = rejected
        .get(rejected.len() * 99 / 100)
        .copied()
        .unwrap_or(0) as f64
        / 1e3;
    println!(
        "{:?}: {accepted} accepted, {} rejected (p50 {:.2} ms, p99 {p99_ms:.2} ms), RSS {} -> {} MiB",
        started.elapsed(),
        rejected.len(),
        rejected.get(rejected.len() / 2).copied().unwrap_or(0) as f64 / 1e3,
        rss_early >> 20,
        rss_late >> 20
    );
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(accepted > 0, "nothing was served");
    assert!(
        rejected.len() as u64 > accepted,
        "the flood never went past the queue bound"
    );
    assert!(p99_ms < 50.0, "p99 of rejections {p99_ms} ms");
    assert!(
        (rss_late as f64) < rss_early as f64 * 1.2,
        "RSS grew from {rss_early} to {rss_late} bytes"
    );
}
