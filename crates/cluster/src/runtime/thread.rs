//! The cluster thread: one OS thread running a tokio current-thread
//! runtime, where async-nats and every cluster task live.
//!
//! glommio shards cannot run tokio futures, and async-nats needs tokio, so
//! the NATS side gets a thread of its own. Everything on it is spawned
//! onto one `LocalSet`, so tasks share state through `Rc`/`RefCell`
//! without locks. Other threads reach it only through bounded flume
//! channels: jobs in ([`ClusterThread::run`]), results and events out.
//! flume over crossbeam: the same channel has blocking and async ends, and
//! its async waits use plain `Waker`s, which glommio wakes from a foreign
//! thread (through its eventfd notifier) and tokio from its own.
//!
//! Dropping the [`ClusterThread`] (or [`ClusterThread::stop`]) ends every
//! task at its next await and joins the thread; nothing is flushed, which
//! is what a crash looks like to the rest of the cluster.

use std::future::Future;
use std::pin::Pin;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::ClusterError;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Jobs waiting for the thread; callers wait when it is full.
const JOB_QUEUE: usize = 1024;

/// Handle of the cluster thread.
pub struct ClusterThread {
    jobs: flume::Sender<Job>,
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A result the cluster thread will produce.
pub struct Pending<T>(flume::Receiver<T>);

impl<T> Pending<T> {
    /// Waits on this thread (not from inside an async task).
    pub fn wait(self) -> Result<T, ClusterError> {
        self.0.recv().map_err(|_| ClusterError::Stopped)
    }

    /// Waits at most `timeout`.
    pub fn wait_timeout(self, timeout: Duration) -> Result<T, ClusterError> {
        self.0
            .recv_deadline(Instant::now() + timeout)
            .map_err(|e| match e {
                flume::RecvTimeoutError::Timeout => ClusterError::Timeout("the cluster thread"),
                flume::RecvTimeoutError::Disconnected => ClusterError::Stopped,
            })
    }

    /// Waits from any async runtime (glommio, tokio, ...).
    pub async fn recv(self) -> Result<T, ClusterError> {
        self.0.recv_async().await.map_err(|_| ClusterError::Stopped)
    }
}

impl ClusterThread {
    /// Starts the thread, named `name`.
    pub fn spawn(name: &str) -> Result<ClusterThread, ClusterError> {
        let (jobs, job_rx) = flume::bounded::<Job>(JOB_QUEUE);
        let (stop, stop_rx) = flume::bounded::<()>(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Config(format!("tokio runtime: {e}")))?;
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    loop {
                        tokio::select! {
                            job = job_rx.recv_async() => match job {
                                Ok(job) => {
                                    tokio::task::spawn_local(job());
                                }
                                Err(_) => break,
                            },
                            _ = stop_rx.recv_async() => break,
                        }
                    }
                });
                // Dropping the LocalSet cancels every task; then the
                // runtime (and with it the NATS connection) goes.
                drop(local);
                drop(runtime);
            })
            .map_err(|e| ClusterError::Config(format!("cluster thread: {e}")))?;
        Ok(ClusterThread {
            jobs,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `make()`'s future as a task on the cluster thread; its output
    /// comes back through the returned [`Pending`]. Waits while the job
    /// queue is full.
    pub fn run<T, F, Fut>(&self, make: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (tx, rx) = flume::bounded(1);
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let out = make().await;
                let _ = tx.send(out); // the caller may have given up
            })
        });
        // A send error means the thread stopped: the Pending then reports
        // Stopped, because `tx` was dropped with the job.
        let _ = self.jobs.send(job);
        Pending(rx)
    }

    /// Spawns `make()`'s future on the cluster thread and forgets it.
    pub fn spawn_task<F, Fut>(&self, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move || Box::pin(make()));
        let _ = self.jobs.send(job);
    }

    /// Ends every task and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the cluster thread has been printed already; the
            // owner is shutting down either way.
            let _ = thread.join();
        }
    }
}

impl Drop for ClusterThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_cluster_thread_and_return_their_output() {
        let t = ClusterThread::spawn("cluster-test").unwrap();
        let name = t
            .run(|| async { std::thread::current().name().map(str::to_owned) })
            .wait()
            .unwrap();
        assert_eq!(name.as_deref(), Some("cluster-test"));
        // Tasks can await tokio timers there.
        let slept = t
            .run(|| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                7
            })
            .wait()
            .unwrap();
        assert_eq!(slept, 7);
    }

    #[test]
    fn after_stop_pending_results_report_stopped() {
        let t = ClusterThread::spawn("cluster-test").unwrap();
        let never = t.run(std::future::pending::<u8>);
        t.stop();
        assert_eq!(never.wait(), Err(ClusterError::Stopped));
    }
}
