//! Sending: open loop (requests on schedule, latency from the schedule) or closed loop (N clients,
//! each waiting for its answer). Results flow over a channel to one collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::cli::Args;
use crate::conn::{Conn, Target};
use crate::payload::Payload;
use crate::schedule::{Schedule, Ticker};
use crate::stats::{Collector, LiveStats, Outcome};

/// A request counts as sent late when it leaves this much after its intended time.
const LATE: Duration = Duration::from_millis(1);

/// What every sender shares.
struct Shared {
    target: Arc<Target>,
    payload: Arc<Payload>,
    tx: mpsc::Sender<Outcome>,
    /// Requests sent more than [`LATE`] after their intended time.
    late: Arc<AtomicU64>,
}

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
    let shared = Shared {
        target: Arc::new(target),
        payload: Arc::new(payload),
        tx,
        late: Arc::new(AtomicU64::new(0)),
    };
    let late = shared.late.clone();
    let open_rate = args.rate.or(args.stages.as_ref().map(|_| 0.0));
    match open_rate {
        Some(rate) => open_loop(args, rate, shared, slots, start, stop).await,
        None => closed_loop(args, shared, slots, start, stop).await,
    }
    let mut c = collector.await.expect("collector task");
    c.late = late.load(Ordering::Relaxed);
    c
}

/// Requests leave on the schedule whatever the server does; each takes a connection permit
/// first (`--connections` bounds those in flight) and is timed from its intended time.
async fn open_loop(
    args: &Args,
    rate: f64,
    shared: Shared,
    slots: Vec<Option<Conn>>,
    start: Instant,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let schedule = match &args.stages {
        Some(stages) => Schedule::ramps(0.0, &stages.0),
        None => Schedule::constant(rate, args.duration),
    };
    let limit = args.requests.unwrap_or(u64::MAX);
    let mut ticker = Ticker::start(schedule, args.arrivals, args.seed, limit, start);
    let permits = Arc::new(Semaphore::new(args.connections.max(1)));
    let slots = Arc::new(Mutex::new(slots));
    loop {
        let intended = tokio::select! {
            next = ticker.due.recv() => match next { Some(t) => t, None => break },
            () = &mut stop => break,
        };
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore open"),
            () = &mut stop => break,
        };
        let sent = Instant::now();
        if sent > intended + LATE {
            shared.late.fetch_add(1, Ordering::Relaxed);
        }
        let (target, payload, tx, slots) = (
            shared.target.clone(),
            shared.payload.clone(),
            shared.tx.clone(),
            slots.clone(),
        );
        tokio::spawn(async move {
            let mut slot = slots.lock().unwrap().pop().flatten();
            let class = target.send(&mut slot, &payload).await;
            slots.lock().unwrap().push(slot);
            drop(permit);
            let done = Instant::now();
            let _ = tx
                .send(Outcome {
                    intended,
                    sent,
                    done,
                    class,
                })
                .await;
        });
    }
    ticker.stop().await;
    // Wait for everything in flight.
    let _ = permits.acquire_many(args.connections.max(1) as u32).await;
}

/// N clients, each sending its next request when its answer arrives.
async fn closed_loop(
    args: &Args,
    shared: Shared,
    slots: Vec<Option<Conn>>,
    start: Instant,
    stop: impl std::future::Future<Output = ()>,
) {
    let end = start + args.duration;
    let limit = args.requests.unwrap_or(u64::MAX);
    let issued = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut slots = slots.into_iter();
    for _ in 0..args.concurrency.unwrap_or(1).max(1) {
        let mut slot = slots.next().flatten();
        let (target, payload, tx) = (
            shared.target.clone(),
            shared.payload.clone(),
            shared.tx.clone(),
        );
        let (issued, stopped) = (issued.clone(), stopped.clone());
        workers.push(tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed)
                && Instant::now() < end
                && issued.fetch_add(1, Ordering::AcqRel) < limit
            {
                let sent = Instant::now();
                let class = target.send(&mut slot, &payload).await;
                let done = Instant::now();
                let _ = tx
                    .send(Outcome {
                        intended: sent,
                        sent,
                        done,
                        class,
                    })
                    .await;
            }
        }));
    }
    drop(shared);
    let all = futures_join(workers);
    tokio::pin!(all, stop);
    tokio::select! {
        _ = &mut all => {}
        () = &mut stop => {
            stopped.store(true, Ordering::Relaxed);
            all.await;
        }
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
