//! The dynamic batcher: one tokio task per model version owns the queue; forward threads are the
//! [`Backend`]. Requests are admitted (or refused at once with `QueueFull`) by the cheap [`Queue`]
//! handle, wait in priority order, and leave in batches of whole requests.
//!
//! Policy. With `max_queue_delay = 0` (the default, "adaptive"): an idle instance takes whatever is
//! queued at once, so light load pays no batching delay, and requests that arrive while every
//! instance is busy form the next batch, so heavy load batches fully. With a delay (Triton-like), a
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

/// Requests that run as one forward pass. Dropping it (after replying) frees the instance.
pub struct Batch {
    pub requests: Vec<Pending>,
    pub rows: u64,
    _free: FreeInstance,
}

/// Tells the batcher that an instance is free again, whatever happened to the batch (even a panic).
struct FreeInstance(mpsc::UnboundedSender<()>);

impl Drop for FreeInstance {
    fn drop(&mut self) {
        let _ = self.0.send(());
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
    free_tx: mpsc::UnboundedSender<()>,
    free_rx: mpsc::UnboundedReceiver<()>,
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
                Some(()) = self.free_rx.recv() => self.idle += 1,
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

    fn enqueue(&mut self, p: Pending) {
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

    /// When the next batch may be dispatched early because of the queue delay.
    fn wake_at(&self) -> Option<Instant> {
        if self.idle == 0 || !self.batching() || self.policy.max_queue_delay.is_zero() {
            return None;
        }
        self.oldest().map(|t| t + self.policy.max_queue_delay)
    }

    fn ready_to_dispatch(&self) -> bool {
        if self.len() == 0 || self.idle == 0 {
            return false;
        }
        if !self.batching() || self.policy.max_queue_delay.is_zero() {
            return true; // adaptive: an idle instance takes what is there
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
            let free = FreeInstance(self.free_tx.clone());
            self.backend.submit(Batch {
                requests,
                rows,
                _free: free,
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
