//! The dynamic batcher: one tokio task per model version owns the queue; forward threads are the
//! [`Backend`]. Requests are admitted (or refused at once with `QueueFull`) by the cheap [`Queue`]
//! handle, wait in priority order, and leave in batches of whole requests.
//!
//! Policy. With `max_queue_delay = 0` (the default, "adaptive"): an idle instance takes whatever is
//! queued at once, so light load pays no batching delay, and requests that arrive while every
//! instance is busy form the next batch, so heavy load batches fully. One refinement: the callers
//! of a pass that just ended usually send their next request right away (closed-loop clients, a
//! pipeline), so when requests are waiting but fewer than those callers would make, the free
//! instance holds for them: until they are all back, at most a few of their usual return times
//! and half the last pass, never past a queued request's deadline. Without it, N such clients
//! settle into alternating part-size batches. A lone client never waits (it is its own returning
//! caller), and where callers do not come back (open-loop traffic) holding stops after two holds
//! that ran out, trying again once every 16 passes. With a delay (Triton-like), a
//! batch waits until it is full, reaches a preferred size, or its oldest request has waited
//! `max_queue_delay`. Requests whose client went away or whose deadline passed are dropped here,
//! before they reach libtorch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Deadline, RuntimeError, TensorData};

/// The reply to one request: its own output rows.
pub type Reply = oneshot::Sender<Result<Vec<TensorData>, RuntimeError>>;

/// One admitted request.
pub struct Pending {
    pub inputs: Vec<TensorData>,
    pub rows: u64,
    /// 0 is served first; levels above the configured count are clamped to the lowest.
    pub priority: usize,
    pub enqueued: Instant,
    pub deadline: Option<Deadline>,
    pub reply: Reply,
}

/// Requests that run as one forward pass. [`Batch::release`] (just before replying) or dropping it
/// frees the instance.
pub struct Batch {
    pub requests: Vec<Pending>,
    pub rows: u64,
    free: Option<FreeInstance>,
}

impl Batch {
    /// The pass is over: tells the batcher before the replies go out, so that every caller who
    /// comes back arrives after the release (the forward thread takes its next batch after
    /// replying).
    pub fn release(&mut self) {
        self.free.take();
    }
}

/// Tells the batcher that an instance is free again, whatever happened to the batch (even a panic),
/// with the batch's rows and how long it took.
struct FreeInstance {
    tx: mpsc::UnboundedSender<Freed>,
    rows: u64,
    dispatched: Instant,
}

/// A finished pass: its rows, and its time from dispatch to release.
struct Freed {
    rows: u64,
    took: Duration,
}

impl Drop for FreeInstance {
    fn drop(&mut self) {
        let took = self.dispatched.elapsed();
        let _ = self.tx.send(Freed {
            rows: self.rows,
            took,
        });
    }
}

/// A hold lasts up to this many average return times (the last caller back is slower than the
/// average one).
const RETURN_TIMES: u32 = 3;

/// Holds that end with nobody back, in a row, after which the batcher stops holding.
const MISSES_TO_STOP: u32 = 2;

/// While holding has stopped, every this many releases hold once anyway, to see whether callers
/// come back now.
const PROBE_EVERY: u32 = 16;

/// A free instance waiting for the callers of the pass that just ended.
#[derive(Clone, Copy, Debug)]
struct Hold {
    /// When that pass released its instance.
    released: Instant,
    /// Until when the instance waits.
    until: Instant,
    /// Rows of that pass whose callers have not sent again.
    rows: u64,
}

/// The adaptive policy's memory of returning callers.
#[derive(Debug, Default)]
struct Returns {
    hold: Option<Hold>,
    /// Moving average of the time from a release to a caller's next request.
    time: Option<Duration>,
    /// Holds in a row that ran out before the callers were back.
    misses: u32,
    /// Releases since holding stopped.
    since_stop: u32,
}

impl Returns {
    /// A pass of `freed.rows` ended: hold for its callers (decided here, used only if requests
    /// are queued when the free instance looks).
    fn released(&mut self, freed: &Freed, max_rows: u64) {
        let released = Instant::now();
        let bound = freed.took / 2;
        let bound = self.time.map_or(bound, |t| (t * RETURN_TIMES).min(bound));
        let stopped = self.misses >= MISSES_TO_STOP;
        if stopped {
            self.since_stop += 1;
        }
        let allowed = !stopped || self.since_stop % PROBE_EVERY == 0;
        self.hold = (allowed && !bound.is_zero()).then_some(Hold {
            released,
            until: released + bound,
            rows: freed.rows.min(max_rows),
        });
    }

    /// A request arrived (at `at`, with `rows`): during a hold, one of the callers coming back.
    fn arrived(&mut self, at: Instant, rows: u64) {
        let Some(hold) = self.hold.as_mut().filter(|h| h.rows > 0) else {
            return;
        };
        let sample = at.saturating_duration_since(hold.released);
        self.time = Some(self.time.map_or(sample, |avg| (avg * 3 + sample) / 4));
        hold.rows = hold.rows.saturating_sub(rows);
    }

    /// A batch left: a hold, if any, is over; one that ran out counts as a miss.
    fn dispatched(&mut self) {
        if let Some(hold) = self.hold.take() {
            if Instant::now() >= hold.until {
                self.misses += 1;
            } else {
                (self.misses, self.since_stop) = (0, 0);
            }
        }
    }
}

/// Where batches run: the model's forward threads, or a fake in tests.
pub trait Backend: Send + 'static {
    /// Hands a batch to a free instance; never blocks (the batcher never submits more batches than
    /// there are instances).
    fn submit(&self, batch: Batch);
}

/// Batching settings, merged from the model config and CLI overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Most rows in one forward pass; 0 or 1 (or `dynamic = false`) runs each request alone.
    pub max_batch_rows: u64,
    pub max_queue_delay: Duration,
    pub preferred_batch_sizes: Vec<u64>,
    pub max_queue_size: usize,
    pub priority_levels: usize,
    pub instances: usize,
}

/// The admission side: cheap to clone, answers `QueueFull` without touching the actor.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Pending>,
    queued: Arc<AtomicUsize>,
    pending: IntGauge,
    max: usize,
}

impl Queue {
    /// Admits a request if fewer than `max_queue_size` are waiting.
    pub fn push(&self, pending: Pending) -> Result<(), RuntimeError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(RuntimeError::QueueFull(self.max));
        }
        self.pending.inc();
        self.tx.send(pending).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.pending.dec();
            RuntimeError::NotReady("the model is shutting down".into())
        })
    }

    /// Requests admitted and not yet handed to an instance.
    pub fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Starts the batcher task; it ends when every [`Queue`] handle is dropped and the queue is empty.
/// `pending` is the gauge of admitted requests not yet handed to an instance.
pub fn spawn(policy: Policy, backend: impl Backend, pending: IntGauge) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let queue = Queue {
        tx,
        queued: queued.clone(),
        pending: pending.clone(),
        max: policy.max_queue_size,
    };
    tokio::spawn(Batcher::new(policy, backend, queued, pending).run(rx));
    queue
}

struct Batcher<B> {
    policy: Policy,
    backend: B,
    /// One FIFO per priority level.
    levels: Vec<VecDeque<Pending>>,
    queued: Arc<AtomicUsize>,
    pending: IntGauge,
    idle: usize,
    free_tx: mpsc::UnboundedSender<Freed>,
    free_rx: mpsc::UnboundedReceiver<Freed>,
    returns: Returns,
}

impl<B: Backend> Batcher<B> {
    fn new(policy: Policy, backend: B, queued: Arc<AtomicUsize>, pending: IntGauge) -> Self {
        let (free_tx, free_rx) = mpsc::unbounded_channel();
        Batcher {
            levels: (0..policy.priority_levels.max(1))
                .map(|_| VecDeque::new())
                .collect(),
            idle: policy.instances.max(1),
            policy,
            backend,
            queued,
            pending,
            free_tx,
            free_rx,
            returns: Returns::default(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut open = true;
        loop {
            self.drop_dead();
            self.dispatch();
            if !open && self.levels.iter().all(VecDeque::is_empty) {
                return;
            }
            let wake = self.wake_at();
            tokio::select! {
                biased;
                Some(freed) = self.free_rx.recv() => self.freed(freed),
                msg = rx.recv(), if open => match msg {
                    Some(p) => self.enqueue(p),
                    None => open = false,
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
            // Take everything already admitted before deciding: fuller batches under load.
            while let Ok(p) = rx.try_recv() {
                self.enqueue(p);
            }
        }
    }

    fn freed(&mut self, freed: Freed) {
        self.idle += 1;
        if self.adaptive() {
            self.returns.released(&freed, self.policy.max_batch_rows);
        }
    }

    fn enqueue(&mut self, p: Pending) {
        self.returns.arrived(p.enqueued, p.rows);
        let level = p.priority.min(self.levels.len() - 1);
        self.levels[level].push_back(p);
    }

    /// Replies to requests whose deadline passed and forgets those whose caller is gone.
    fn drop_dead(&mut self) {
        let now = Instant::now();
        let mut removed = 0;
        for level in &mut self.levels {
            let mut i = 0;
            while i < level.len() {
                let p = &level[i];
                let expired = p.deadline.filter(|d| d.at <= now);
                if p.reply.is_closed() || expired.is_some() {
                    let p = level.remove(i).expect("index in range");
                    if let Some(d) = expired {
                        let _ = p
                            .reply
                            .send(Err(RuntimeError::DeadlineExceeded { client: d.client }));
                    }
                    removed += 1;
                } else {
                    i += 1;
                }
            }
        }
        self.left_queue(removed);
    }

    fn left_queue(&self, n: usize) {
        if n > 0 {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.pending.sub(n as i64);
        }
    }

    fn len(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }

    fn queued_rows(&self) -> u64 {
        self.levels.iter().flatten().map(|p| p.rows).sum()
    }

    fn oldest(&self) -> Option<Instant> {
        self.levels.iter().flatten().map(|p| p.enqueued).min()
    }

    fn batching(&self) -> bool {
        self.policy.max_batch_rows > 1
    }

    fn adaptive(&self) -> bool {
        self.batching() && self.policy.max_queue_delay.is_zero()
    }

    /// When the next batch may be dispatched because the queue delay or a hold ends.
    fn wake_at(&self) -> Option<Instant> {
        if self.idle == 0 || !self.batching() || self.len() == 0 {
            return None;
        }
        if self.adaptive() {
            return self.returns.hold.map(|h| h.until);
        }
        self.oldest().map(|t| t + self.policy.max_queue_delay)
    }

    /// Adaptive: whether the free instance waits for the callers of the last pass.
    fn holding(&self) -> bool {
        let Some(Hold {
            until,
            rows: returning,
            ..
        }) = self.returns.hold
        else {
            return false;
        };
        let rows = self.queued_rows();
        let expected = (rows + returning).min(self.policy.max_batch_rows);
        let urgent = self.levels.iter().flatten().filter_map(|p| p.deadline);
        let urgent = urgent.into_iter().any(|d| d.at <= until);
        rows < expected && Instant::now() < until && !urgent
    }

    fn ready_to_dispatch(&self) -> bool {
        if self.len() == 0 || self.idle == 0 {
            return false;
        }
        if !self.batching() {
            return true;
        }
        if self.policy.max_queue_delay.is_zero() {
            return !self.holding(); // adaptive: an idle instance takes what is there
        }
        let rows = self.queued_rows();
        rows >= self.policy.max_batch_rows
            || self.policy.preferred_batch_sizes.iter().any(|&p| p <= rows)
            || self
                .oldest()
                .is_some_and(|t| Instant::now() >= t + self.policy.max_queue_delay)
    }

    /// The rows the next batch should have: everything up to the limit, cut at the largest
    /// preferred size that fits when preferred sizes are configured.
    fn target_rows(&self) -> u64 {
        if !self.batching() {
            return 1;
        }
        let available = self.queued_rows().min(self.policy.max_batch_rows);
        self.policy
            .preferred_batch_sizes
            .iter()
            .copied()
            .filter(|&s| s <= available)
            .max()
            .unwrap_or(available)
    }

    fn dispatch(&mut self) {
        while self.ready_to_dispatch() {
            let target = self.target_rows();
            let batching = self.batching();
            let mut requests = Vec::new();
            let mut rows = 0;
            'fill: for level in &mut self.levels {
                while let Some(p) = level.front() {
                    // A request is never split; the first one always fits (validated <= limit).
                    if !requests.is_empty() && rows + p.rows > target.max(1) {
                        break 'fill;
                    }
                    let p = level.pop_front().expect("front exists");
                    rows += p.rows;
                    requests.push(p);
                    if !batching {
                        break 'fill;
                    }
                }
            }
            self.idle -= 1;
            self.left_queue(requests.len());
            self.returns.dispatched();
            let free = FreeInstance {
                tx: self.free_tx.clone(),
                rows,
                dispatched: Instant::now(),
            };
            self.backend.submit(Batch {
                requests,
                rows,
                free: Some(free),
            });
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "batcher_tests.rs"]
mod tests;
