//! The batcher driven by a deterministic fake model under paused tokio time: the test sees every batch
//! the batcher forms and decides when each forward pass "finishes".

use std::time::Duration;

use protocol::Datatype;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::*;
use crate::runtime::tensor::split_rows;

/// Hands each batch to the test instead of a forward thread.
struct Fake(mpsc::UnboundedSender<Batch>);

impl Backend for Fake {
    fn submit(&self, batch: Batch) {
        self.0.send(batch).unwrap();
    }
}

type Answer = oneshot::Receiver<Result<Vec<TensorData>, RuntimeError>>;

struct Harness {
    queue: Queue,
    batches: mpsc::UnboundedReceiver<Batch>,
    pending: IntGauge,
}

fn policy(max: u64) -> Policy {
    Policy {
        max_batch_rows: max,
        max_queue_delay: Duration::ZERO,
        preferred_batch_sizes: vec![],
        max_queue_size: 100,
        priority_levels: 1,
        instances: 1,
    }
}

fn start(policy: Policy) -> Harness {
    let (tx, batches) = mpsc::unbounded_channel();
    let pending = IntGauge::new("pending", "test").unwrap();
    let queue = spawn(policy, Fake(tx), pending.clone());
    Harness {
        queue,
        batches,
        pending,
    }
}

/// A request of `rows` rows whose values are `first, first+1, ...` (one column).
fn request(
    rows: u64,
    first: f32,
    priority: usize,
    deadline: Option<Deadline>,
) -> (Pending, Answer) {
    let (reply, answer) = oneshot::channel();
    let values: Vec<u8> = (0..rows)
        .flat_map(|i| (first + i as f32).to_le_bytes())
        .collect();
    let input = TensorData {
        datatype: Datatype::Fp32,
        shape: vec![rows, 1],
        bytes: values.into(),
    };
    let p = Pending {
        inputs: vec![input],
        rows,
        priority,
        enqueued: Instant::now(),
        deadline,
        reply,
    };
    (p, answer)
}

impl Harness {
    fn send(&self, rows: u64, first: f32, priority: usize) -> Answer {
        let (p, a) = request(rows, first, priority, None);
        self.queue.push(p).unwrap();
        a
    }

    /// Lets the batcher task run until it has nothing left to do.
    async fn settle(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn next_batch(&mut self) -> Batch {
        self.settle().await;
        self.batches
            .try_recv()
            .expect("a batch should have been formed")
    }

    async fn no_batch(&mut self) {
        self.settle().await;
        assert!(
            self.batches.try_recv().is_err(),
            "no batch should have been formed yet"
        );
    }
}

/// What the fake model computes: every value doubled; each request gets its own rows back.
fn finish(batch: Batch) -> Vec<f32> {
    let rows: Vec<u64> = batch.requests.iter().map(|p| p.rows).collect();
    let mut all = Vec::new();
    for p in &batch.requests {
        all.extend(
            p.inputs[0]
                .bytes
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
        );
    }
    let doubled: Vec<u8> = all.iter().flat_map(|x| (x * 2.0).to_le_bytes()).collect();
    let out = TensorData {
        datatype: Datatype::Fp32,
        shape: vec![all.len() as u64, 1],
        bytes: doubled.into(),
    };
    let per = split_rows(vec![out], &rows).unwrap();
    for (p, o) in batch.requests.into_iter().zip(per) {
        let _ = p.reply.send(Ok(o));
    }
    all
}

async fn values(a: Answer) -> Vec<f32> {
    let out = a.await.unwrap().unwrap();
    out[0]
        .bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn idle_instance_takes_at_once_and_busy_time_forms_full_batches() {
    let mut h = start(policy(4));
    let a0 = h.send(1, 0.0, 0);
    let b0 = h.next_batch().await;
    assert_eq!(b0.rows, 1, "light load pays no batching delay");
    let answers: Vec<Answer> = (1..=6).map(|i| h.send(1, i as f32 * 10.0, 0)).collect();
    h.no_batch().await; // the only instance is busy
    assert_eq!(h.pending.get(), 6);
    assert_eq!(finish(b0), vec![0.0]);
    let b1 = h.next_batch().await;
    assert_eq!((b1.requests.len(), b1.rows), (4, 4), "up to max_batch_size");
    assert_eq!(finish(b1), vec![10.0, 20.0, 30.0, 40.0]);
    let b2 = h.next_batch().await;
    assert_eq!(b2.rows, 2);
    finish(b2);
    assert_eq!(values(a0).await, vec![0.0]);
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(
            values(a).await,
            vec![(i + 1) as f32 * 20.0],
            "each caller gets exactly its rows"
        );
    }
    assert_eq!(h.pending.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_queue_delay_is_honoured_unless_the_batch_fills() {
    let mut h = start(Policy {
        max_queue_delay: Duration::from_millis(10),
        ..policy(4)
    });
    let _a = h.send(1, 1.0, 0);
    h.no_batch().await;
    tokio::time::advance(Duration::from_millis(9)).await;
    h.no_batch().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    let b = h.next_batch().await;
    assert_eq!(b.rows, 1, "the oldest request waited max_queue_delay");
    finish(b);
    let _more: Vec<Answer> = (0..4).map(|i| h.send(1, i as f32, 0)).collect();
    let b = h.next_batch().await;
    assert_eq!(b.rows, 4, "a full batch does not wait");
}

#[tokio::test(start_paused = true)]
async fn preferred_sizes_dispatch_early_and_cut_batches() {
    let mut h = start(Policy {
        max_queue_delay: Duration::from_millis(100),
        preferred_batch_sizes: vec![2, 4],
        ..policy(8)
    });
    let _a = h.send(1, 0.0, 0);
    h.no_batch().await;
    let _b = h.send(1, 0.0, 0);
    let b = h.next_batch().await;
    assert_eq!(b.rows, 2, "a preferred size is dispatched at once");
    // While busy, 5 rows queue up: the next batch is cut at the largest preferred size (4).
    let _rest: Vec<Answer> = (0..5).map(|i| h.send(1, i as f32, 0)).collect();
    finish(b);
    let b = h.next_batch().await;
    assert_eq!(b.rows, 4);
}

#[tokio::test(start_paused = true)]
async fn expired_and_abandoned_requests_never_reach_the_model() {
    let mut h = start(policy(4));
    let _busy = h.send(1, 0.0, 0);
    let b0 = h.next_batch().await;
    let soon = Deadline {
        at: Instant::now() + Duration::from_millis(5),
        client: true,
    };
    let (p, expired) = request(1, 1.0, 0, Some(soon));
    h.queue.push(p).unwrap();
    let abandoned = h.send(1, 2.0, 0);
    let kept = h.send(1, 3.0, 0);
    drop(abandoned); // the client disconnected
    tokio::time::advance(Duration::from_millis(6)).await;
    finish(b0);
    // The free instance holds for b0's caller (half of b0's 6 ms), then runs what is there.
    h.no_batch().await;
    tokio::time::advance(Duration::from_millis(3)).await;
    let b1 = h.next_batch().await;
    assert_eq!(finish(b1), vec![3.0], "only the live request runs");
    assert!(matches!(
        expired.await.unwrap(),
        Err(RuntimeError::DeadlineExceeded { client: true })
    ));
    assert_eq!(values(kept).await, vec![6.0]);
    assert_eq!(h.pending.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn priorities_order_the_queue() {
    let mut h = start(Policy {
        priority_levels: 2,
        ..policy(4)
    });
    let _busy = h.send(1, 0.0, 0);
    let b0 = h.next_batch().await;
    let _a = h.send(1, 1.0, 1);
    let _b = h.send(1, 2.0, 0);
    let _c = h.send(1, 3.0, 1);
    let _d = h.send(1, 4.0, 0);
    let _e = h.send(1, 5.0, 7); // beyond the levels: the lowest
    finish(b0);
    let b1 = h.next_batch().await;
    assert_eq!(finish(b1), vec![2.0, 4.0, 1.0, 3.0]);
    assert_eq!(finish(h.next_batch().await), vec![5.0]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_at_once_and_recovers() {
    let mut h = start(Policy {
        max_queue_size: 2,
        ..policy(4)
    });
    let _busy = h.send(1, 0.0, 0);
    let b0 = h.next_batch().await;
    let _a = h.send(1, 1.0, 0);
    let _b = h.send(1, 2.0, 0);
    let (p, _c) = request(1, 3.0, 0, None);
    assert!(matches!(h.queue.push(p), Err(RuntimeError::QueueFull(2))));
    finish(b0);
    finish(h.next_batch().await);
    let (p, _d) = request(1, 4.0, 0, None);
    assert!(h.queue.push(p).is_ok(), "room again once the queue drained");
}

#[tokio::test(start_paused = true)]
async fn requests_are_never_split_and_keep_their_order() {
    let mut h = start(policy(4));
    let _busy = h.send(1, 0.0, 0);
    let b0 = h.next_batch().await;
    let two = h.send(2, 10.0, 0);
    let three = h.send(3, 20.0, 0);
    let one = h.send(1, 30.0, 0);
    finish(b0);
    let b1 = h.next_batch().await;
    assert_eq!(
        b1.rows, 2,
        "2 + 3 rows would exceed 4; the 3-row request waits its turn"
    );
    finish(b1);
    let b2 = h.next_batch().await;
    assert_eq!(b2.rows, 4);
    finish(b2);
    assert_eq!(values(two).await, vec![20.0, 22.0]);
    assert_eq!(values(three).await, vec![40.0, 42.0, 44.0]);
    assert_eq!(values(one).await, vec![60.0]);
}

#[tokio::test(start_paused = true)]
async fn unbatched_models_run_one_request_per_pass_on_every_instance() {
    let mut h = start(Policy {
        instances: 2,
        ..policy(1)
    });
    let _a = h.send(1, 1.0, 0);
    let _b = h.send(1, 2.0, 0);
    let _c = h.send(1, 3.0, 0);
    let b1 = h.next_batch().await;
    let b2 = h.next_batch().await;
    assert_eq!(
        (b1.requests.len(), b2.requests.len()),
        (1, 1),
        "two instances, two passes at once"
    );
    h.no_batch().await;
    finish(b1);
    assert_eq!(finish(h.next_batch().await), vec![3.0]);
    finish(b2);
}

/// `n` single-row requests, as from `n` distinct clients.
fn send_many(h: &Harness, n: usize, first: f32) -> Vec<Answer> {
    (0..n).map(|i| h.send(1, first + i as f32, 0)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_free_instance_holds_for_the_callers_of_the_last_pass() {
    // Eight closed-loop clients, one instance: five in a pass, three queued behind it.
    let mut h = start(policy(8));
    let _first = send_many(&h, 5, 0.0);
    let b0 = h.next_batch().await;
    assert_eq!(b0.rows, 5);
    let _queued = send_many(&h, 3, 10.0);
    tokio::time::advance(Duration::from_millis(10)).await;
    finish(b0);
    h.no_batch().await; // 3 queued, 5 on their way back: hold
    tokio::time::advance(Duration::from_millis(1)).await;
    let _back = send_many(&h, 4, 20.0);
    h.no_batch().await; // 7 of the expected 8
    let _last = send_many(&h, 1, 30.0);
    let b1 = h.next_batch().await;
    assert_eq!(
        b1.rows, 8,
        "the pass carries every client, not part of them"
    );
    // Next time the hold is bounded by what was learnt: 3 x the ~1 ms the callers took.
    let _queued = send_many(&h, 2, 40.0);
    tokio::time::advance(Duration::from_millis(10)).await;
    finish(b1);
    h.no_batch().await;
    tokio::time::advance(Duration::from_millis(2)).await;
    h.no_batch().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        h.next_batch().await.rows,
        2,
        "nobody came back within 3 return times"
    );
}

#[tokio::test(start_paused = true)]
async fn the_hold_is_bounded_by_half_the_pass_and_by_deadlines() {
    let mut h = start(policy(8));
    let _a = send_many(&h, 4, 0.0);
    let b0 = h.next_batch().await;
    let _queued = send_many(&h, 1, 10.0);
    tokio::time::advance(Duration::from_millis(10)).await;
    finish(b0);
    h.no_batch().await; // the batcher sees the pass end now
    tokio::time::advance(Duration::from_millis(4)).await;
    h.no_batch().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    let b1 = h.next_batch().await;
    assert_eq!(
        b1.rows, 1,
        "nobody came back within 5 ms (half of 10): run what is there"
    );

    // A queued request whose deadline falls inside the hold is not held.
    let _b = send_many(&h, 1, 20.0);
    tokio::time::advance(Duration::from_millis(10)).await;
    let soon = Deadline {
        at: Instant::now() + Duration::from_millis(1),
        client: true,
    };
    let (p, _urgent) = request(1, 30.0, 0, Some(soon));
    h.queue.push(p).unwrap();
    finish(b1);
    let b2 = h.next_batch().await;
    assert_eq!(
        b2.rows, 2,
        "the urgent request goes now, with the other queued one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_client_and_open_loop_traffic_do_not_pay_for_holds() {
    let mut h = start(policy(8));
    // One client: when its pass ends nothing is queued, so there is no hold at all.
    let a = h.send(1, 0.0, 0);
    let b = h.next_batch().await;
    tokio::time::advance(Duration::from_millis(10)).await;
    finish(b);
    assert_eq!(values(a).await, vec![0.0]);
    let _next = h.send(1, 1.0, 0);
    let b = h.next_batch().await;
    assert_eq!(b.rows, 1, "the lone client's next request runs at once");
    finish(b);
    // Open loop: arrivals come during passes, nobody after a release; two unanswered holds and
    // the batcher stops holding.
    let mut h = start(policy(8));
    let _first = h.send(1, 0.0, 0);
    let mut pass = h.next_batch().await;
    let mut holds = Vec::new();
    for round in 0..4 {
        let _arrival = h.send(1, round as f32, 0);
        tokio::time::advance(Duration::from_millis(16)).await;
        finish(pass);
        let started = Instant::now();
        pass = loop {
            h.settle().await;
            if let Ok(b) = h.batches.try_recv() {
                break b;
            }
            tokio::time::advance(Duration::from_micros(500)).await;
        };
        holds.push(started.elapsed().as_millis());
    }
    assert_eq!(holds, vec![8, 8, 0, 0]);
    finish(pass);
}
