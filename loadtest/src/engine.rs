//! Sending: open loop (requests on schedule, latency from the schedule) or closed loop (N clients,
//! each waiting for its answer). Results flow over a channel to one collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::cli::{Args, Arrivals};
use crate::conn::{Conn, Target};
use crate::payload::{Payload, Rng};
use crate::schedule::Schedule;
use crate::stats::{Collector, LiveStats, Outcome};

/// A request counts as sent late when it leaves this much after its intended time.
const LATE: Duration = Duration::from_millis(1);

/// Runs the load until the duration or request count is reached, or `stop` resolves; waits for the
/// requests in flight; returns the collector.
pub async fn run(
    args: &Args,
    target: Target,
    slots: Vec<Option<Conn>>,
    payload: Payload,
    start: Instant,
    live: Arc<std::sync::Mutex<LiveStats>>,
    stop: impl std::future::Future<Output = ()>,
) -> Collector {
    let (tx, mut rx) = mpsc::channel::<Outcome>(65_536);
    let collector = tokio::spawn(async move {
        let mut c = Collector::new(start);
        c.live = live;
        while let Some(o) = rx.recv().await {
            c.record(o);
        }
        c
    });
    let (payload, target) = (Arc::new(payload), Arc::new(target));
    let end = start + args.duration;
    let limit = args.requests.unwrap_or(u64::MAX);
    let late = Arc::new(AtomicU64::new(0));
    tokio::pin!(stop);
    let open_rate = args.rate.or(args.stages.as_ref().map(|_| 0.0));
    match (open_rate, args.concurrency) {
        (Some(rate), _) => {
            // The schedule runs on its own OS thread: std's sleep is precise to tens of µs, tokio's
            // timer only to 1 ms, which would make most requests late and inflate corrected latency.
            let (due_tx, mut due) = mpsc::unbounded_channel::<Instant>();
            let halt = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut schedule = match &args.stages {
                Some(stages) => Schedule::ramps(0.0, &stages.0),
                None => Schedule::constant(rate, args.duration),
            };
            let scheduler = {
                let (halt, arrivals, seed) = (halt.clone(), args.arrivals, args.seed);
                let std_start = std::time::Instant::now() - start.elapsed();
                std::thread::Builder::new()
                    .name("loadtest-schedule".into())
                    .spawn(move || {
                        let mut rng = Rng::new(seed);
                        // n: position on the cumulative-count axis (see schedule.rs).
                        let (mut i, mut n) = (0u64, 0f64);
                        while i < limit && !halt.load(Ordering::Relaxed) {
                            let Some(at) = schedule.time_of(n) else { break };
                            if let Some(wait) =
                                (std_start + at).checked_duration_since(std::time::Instant::now())
                            {
                                std::thread::sleep(wait);
                            }
                            if due_tx.send(start + at).is_err() {
                                break;
                            }
                            i += 1;
                            n = match arrivals {
                                Arrivals::Even => i as f64,
                                Arrivals::Poisson => n - (1.0 - rng.unit()).ln(),
                            };
                        }
                    })
                    .expect("spawn the scheduler thread")
            };
            // One connection per permit: a request takes a permit, then a slot.
            let permits = Arc::new(Semaphore::new(args.connections.max(1)));
            let slots = Arc::new(Mutex::new(slots));
            loop {
                let intended = tokio::select! {
                    next = due.recv() => match next { Some(t) => t, None => break },
                    () = &mut stop => break,
                };
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore open"),
                    () = &mut stop => break,
                };
                let sent = Instant::now();
                if sent > intended + LATE {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let (target, payload, tx, slots) =
                    (target.clone(), payload.clone(), tx.clone(), slots.clone());
                tokio::spawn(async move {
                    let mut slot = slots.lock().unwrap().pop().flatten();
                    let class = target.send(&mut slot, &payload).await;
                    slots.lock().unwrap().push(slot);
                    drop(permit);
                    let _ = tx
                        .send(Outcome {
                            intended,
                            sent,
                            done: Instant::now(),
                            class,
                        })
                        .await;
                });
            }
            halt.store(true, Ordering::Relaxed);
            drop(due);
            let _ = tokio::task::spawn_blocking(move || scheduler.join()).await;
            // Wait for everything in flight.
            let _ = permits.acquire_many(args.connections.max(1) as u32).await;
        }
        (None, concurrency) => {
            let issued = Arc::new(AtomicU64::new(0));
            let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut workers = Vec::new();
            let mut slots = slots.into_iter();
            for _ in 0..concurrency.unwrap_or(1).max(1) {
                let mut slot = slots.next().flatten();
                let (target, payload, tx, issued, stopped) = (
                    target.clone(),
                    payload.clone(),
                    tx.clone(),
                    issued.clone(),
                    stopped.clone(),
                );
                workers.push(tokio::spawn(async move {
                    while !stopped.load(Ordering::Relaxed)
                        && Instant::now() < end
                        && issued.fetch_add(1, Ordering::AcqRel) < limit
                    {
                        let sent = Instant::now();
                        let class = target.send(&mut slot, &payload).await;
                        let _ = tx
                            .send(Outcome {
                                intended: sent,
                                sent,
                                done: Instant::now(),
                                class,
                            })
                            .await;
                    }
                }));
            }
            let all = futures_join(workers);
            tokio::pin!(all);
            tokio::select! {
                _ = &mut all => {}
                () = &mut stop => {
                    stopped.store(true, Ordering::Relaxed);
                    all.await;
                }
            }
        }
    }
    drop(tx);
    let mut c = collector.await.expect("collector task");
    c.late = late.load(Ordering::Relaxed);
    c
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
