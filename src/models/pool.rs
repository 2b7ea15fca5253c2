//! A bounded pool of inference threads. Model calls are synchronous and CPU-heavy, so they run
//! here rather than on the async runtime's workers. Jobs queue in a bounded channel: a caller
//! awaits a free slot when the queue is full (back-pressure, never an unbounded backlog). Queue
//! length and queue wait are exported as metrics; each job runs inside its caller's tracing span.
//! A job whose caller has gone (an aborted turn: a barge-in, the caller's next utterance, the
//! call's end) is skipped when it is dequeued, so cancelled work never holds up live calls.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::ModelError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs that may wait for a thread, per thread.
const QUEUE_PER_THREAD: usize = 32;

#[derive(Clone)]
pub struct InferencePool {
    sender: mpsc::Sender<(Instant, Job)>,
    queued: Arc<AtomicI64>,
}

impl InferencePool {
    /// Starts `threads` inference threads (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (sender, receiver) = mpsc::channel::<(Instant, Job)>(threads * QUEUE_PER_THREAD);
        let receiver = Arc::new(Mutex::new(receiver));
        let queued = Arc::new(AtomicI64::new(0));
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            let queued = Arc::clone(&queued);
            std::thread::Builder::new()
                .name(format!("inference-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while this thread waits for the next job; the
                        // others wait on the lock. No `.await` happens under it.
                        let next = receiver
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .blocking_recv();
                        let Some((enqueued, job)) = next else { break };
                        let depth = queued.fetch_sub(1, Ordering::Relaxed) - 1;
                        metrics::gauge!("inference_queue_length").set(depth as f64);
                        metrics::histogram!("inference_queue_wait_seconds")
                            .record(enqueued.elapsed().as_secs_f64());
                        job();
                    }
                })
                .expect("spawn an inference thread");
        }
        Self { sender, queued }
    }

    /// A pool sized to the machine: one thread per core.
    pub fn for_machine() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Runs `work` on an inference thread and returns its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ModelError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let span = tracing::Span::current();
        let job: Job = Box::new(move || {
            // The caller stopped waiting (its future was dropped): nobody wants the result.
            if reply.is_closed() {
                metrics::counter!("inference_jobs_skipped_total").increment(1);
                return;
            }
            let _entered = span.enter();
            let _ = reply.send(work());
        });
        let depth = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("inference_queue_length").set(depth as f64);
        if self.sender.send((Instant::now(), job)).await.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(ModelError::PoolClosed);
        }
        result
            .in_current_span()
            .await
            .map_err(|_| ModelError::PoolClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_async_runtime_and_returns_results() {
        let pool = InferencePool::new(2);
        let (thread, value) = pool
            .run(move || (std::thread::current().name().map(str::to_owned), 21 * 2))
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert!(thread.unwrap().starts_with("inference-"));
        let results = futures_join(&pool).await;
        assert_eq!(results, (0..64).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_queued_job_whose_caller_is_gone_is_skipped() {
        let pool = InferencePool::new(1);
        // Occupy the only thread until released.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let blocker = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = started.send(());
                    hold.recv().ok()
                })
                .await
            })
        };
        running.await.unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let abandoned = {
            let (pool, ran) = (pool.clone(), Arc::clone(&ran));
            tokio::spawn(async move { pool.run(move || ran.store(true, Ordering::SeqCst)).await })
        };
        while pool.queued.load(Ordering::SeqCst) != 1 {
            tokio::task::yield_now().await;
        }
        // The requester goes away while its job waits in the queue (an aborted turn).
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        assert_eq!(blocker.await.unwrap().unwrap(), Some(()));
        // One thread, first in first out: once this job has run, the abandoned one was dequeued.
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
        assert!(
            !ran.load(Ordering::SeqCst),
            "the abandoned job must not run"
        );
    }

    async fn futures_join(pool: &InferencePool) -> Vec<i32> {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..64 {
            let pool = pool.clone();
            set.spawn(async move { pool.run(move || i).await.unwrap() });
        }
        let mut out = set.join_all().await;
        out.sort_unstable();
        out
    }
}
