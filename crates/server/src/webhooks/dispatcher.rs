//! The HTTP side of webhooks, off the shard threads: `concurrency` worker
//! threads with blocking `ureq` clients take events from one channel fed
//! by every shard, POST each until the endpoint answers 2xx (or the
//! give-up age passes), and report back on the shard's own channel, which
//! the shard's [`report_loop`] polls, as its durability loop polls the
//! log's commits.
//!
//! Why threads and `ureq`: a webhook request blocks for a network round
//! trip and may wait seconds on a slow backend; on a shard thread that
//! would stall every connection of the shard. A blocking client on a few
//! threads is the smallest thing that does it (no second async runtime);
//! `ureq` is the field's small, well-kept blocking client (rustls, no
//! tokio).
//!
//! A failed event waits for its next attempt in a queue the workers share
//! (soonest first), not in the worker that tried it: an event a receiver
//! keeps refusing does not hold up the others.
//!
//! Bounds: each shard hands out at most `window` events before it hears
//! back (the core's rule), so the job channel and the retry queue hold at
//! most shards x window events and each report channel at most `window`;
//! a receiver that is down costs retries, not memory: the rest wait in
//! the log.
//! Events are not acknowledged at shutdown: what is in flight then is
//! delivered again after the restart, with the same id.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use surepush_core::{WebhookEvent, WebhookOutcome};

use super::metrics::WebhookMetrics;
use super::settings::WebhookSettings;
use super::sign::signature;
use crate::runtime::ShardRuntime;

/// The request headers (docs/WEBHOOKS.md).
pub const HEADER_EVENT_ID: &str = "X-Surepush-Event-Id";
/// The event's name.
pub const HEADER_EVENT: &str = "X-Surepush-Event";
/// Unix seconds when the request was signed.
pub const HEADER_TIMESTAMP: &str = "X-Surepush-Timestamp";
/// `sha256=<hex>` over `<timestamp>.<body>`.
pub const HEADER_SIGNATURE: &str = "X-Surepush-Signature";

/// One event on its way.
struct Job {
    shard: u16,
    event: WebhookEvent,
}

/// A shard hears how an event ended.
struct Report {
    id: u64,
    outcome: WebhookOutcome,
}

/// The running dispatcher; dropping it stops the workers (events in
/// flight stay in the logs).
pub struct Dispatcher {
    jobs: Option<flume::Sender<Job>>,
    stop: Arc<AtomicBool>,
    /// Closed on drop: wakes workers sleeping between retries.
    wake: Option<flume::Sender<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// What one shard holds of the dispatcher.
#[derive(Clone)]
pub struct ShardLink {
    shard: u16,
    jobs: flume::Sender<Job>,
    reports: flume::Receiver<Report>,
}

impl std::fmt::Debug for ShardLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardLink({})", self.shard)
    }
}

/// How a worker retries and signs (from [`WebhookSettings`]).
#[derive(Clone)]
struct Policy {
    url: String,
    secret: Vec<u8>,
    retry_initial: Duration,
    retry_max: Duration,
    give_up_after: Duration,
}

impl Dispatcher {
    /// Starts the workers for `shards` shards; one [`ShardLink`] each.
    pub fn start(
        settings: &WebhookSettings,
        shards: u16,
        metrics: Arc<WebhookMetrics>,
    ) -> std::io::Result<(Dispatcher, Vec<ShardLink>)> {
        let (jobs_tx, jobs_rx) = flume::unbounded::<Job>();
        let (wake_tx, wake_rx) = flume::bounded::<()>(0);
        let mut reports_tx = Vec::new();
        let mut links = Vec::new();
        for shard in 0..shards {
            let (tx, rx) = flume::unbounded();
            reports_tx.push(tx);
            links.push(ShardLink {
                shard,
                jobs: jobs_tx.clone(),
                reports: rx,
            });
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(settings.timeout_ms)))
            .http_status_as_error(false)
            .max_idle_connections_per_host(settings.concurrency as usize)
            .build()
            .into();
        let policy = Policy {
            url: settings.url.clone(),
            secret: settings.secret.as_bytes().to_vec(),
            retry_initial: Duration::from_millis(settings.retry_initial_ms),
            retry_max: Duration::from_millis(settings.retry_max_ms),
            give_up_after: Duration::from_secs(settings.give_up_after_s),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let retries = Arc::new(Mutex::new(Retries::default()));
        let mut workers = Vec::new();
        for n in 0..settings.concurrency {
            let worker = Worker {
                agent: agent.clone(),
                policy: policy.clone(),
                jobs: jobs_rx.clone(),
                reports: reports_tx.clone(),
                stop: stop.clone(),
                wake: wake_rx.clone(),
                retries: retries.clone(),
                metrics: metrics.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("webhook-{n}"))
                .spawn(move || worker.run())?;
            workers.push(handle);
        }
        let dispatcher = Dispatcher {
            jobs: Some(jobs_tx),
            stop,
            wake: Some(wake_tx),
            workers,
        };
        Ok((dispatcher, links))
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.jobs.take();
        self.wake.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl ShardLink {
    /// Hands a durable event to the workers.
    pub(crate) fn send(&self, event: WebhookEvent) {
        let job = Job {
            shard: self.shard,
            event,
        };
        // Only fails once the dispatcher stopped (the node is stopping):
        // the event stays in the log for the next start.
        let _ = self.jobs.send(job);
    }
}

/// Feeds the shard the dispatcher's reports until the dispatcher stops.
pub(crate) async fn report_loop(rt: Rc<ShardRuntime>, link: ShardLink) {
    while let Ok(report) = link.reports.recv_async().await {
        rt.webhook_done(report.id, report.outcome);
        // Reports that came meanwhile, in one drive.
        while let Ok(more) = link.reports.try_recv() {
            rt.webhook_done(more.id, more.outcome);
        }
        rt.drive();
    }
}

struct Worker {
    agent: ureq::Agent,
    policy: Policy,
    jobs: flume::Receiver<Job>,
    reports: Vec<flume::Sender<Report>>,
    stop: Arc<AtomicBool>,
    wake: flume::Receiver<()>,
    retries: Arc<Mutex<Retries>>,
    metrics: Arc<WebhookMetrics>,
}

/// An event between attempts.
struct Retry {
    job: Job,
    /// When its first attempt started (the give-up age counts from here).
    first: Instant,
    attempt: u32,
    /// The delay before the next attempt after this one fails.
    delay: Duration,
}

/// Events waiting for their next attempt, shared by the workers, soonest
/// first. A failing event waits here rather than in a worker, so one
/// event a receiver keeps refusing never holds a worker (and the events
/// behind it) until its give-up age. At most the events handed out
/// (shards x window).
#[derive(Default)]
struct Retries {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    waiting: HashMap<u64, Retry>,
    next: u64,
}

impl Retries {
    fn push(&mut self, at: Instant, retry: Retry) {
        self.next += 1;
        self.due.push(Reverse((at, self.next)));
        self.waiting.insert(self.next, retry);
    }

    /// The soonest retry if due at `now`, else when the soonest is due.
    fn pop_due(&mut self, now: Instant) -> Result<Retry, Option<Instant>> {
        match self.due.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let Reverse((_, key)) = self.due.pop().expect("peeked");
                Ok(self.waiting.remove(&key).expect("every key waits"))
            }
            Some(Reverse((at, _))) => Err(Some(*at)),
            None => Err(None),
        }
    }
}

/// How long an idle worker waits before it looks at the retries again
/// (another worker may have queued one due sooner meanwhile).
const IDLE_LOOK: Duration = Duration::from_millis(100);

/// How one attempt went.
enum Attempt {
    Delivered,
    /// Worth another try (network error, 5xx, 429, any non-2xx).
    Failed(String),
}

impl Worker {
    fn run(self) {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return; // events in flight stay in the log
            }
            let due = self
                .retries
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_due(Instant::now());
            let wait = match due {
                Ok(retry) => {
                    self.try_once(retry);
                    continue;
                }
                Err(Some(at)) => at.saturating_duration_since(Instant::now()).min(IDLE_LOOK),
                Err(None) => IDLE_LOOK,
            };
            // A new event, or the dispatcher stopped (the wake channel
            // closed), or time to look at the retries again.
            let next = flume::Selector::new()
                .recv(&self.jobs, |r| r.map_err(|_| ()))
                .recv(&self.wake, |_| Err(()))
                .wait_timeout(wait);
            match next {
                Ok(Ok(job)) => self.try_once(Retry {
                    job,
                    first: Instant::now(),
                    attempt: 0,
                    delay: self.policy.retry_initial,
                }),
                Ok(Err(())) => return,
                Err(_timeout) => {}
            }
        }
    }

    /// One attempt: reported when delivered or given up, else queued for
    /// the next one.
    fn try_once(&self, mut retry: Retry) {
        retry.attempt += 1;
        let job = &retry.job;
        let event_id = format!("{}-{}", job.shard, job.event.id);
        let outcome = match self.attempt(job, &event_id) {
            Attempt::Delivered => {
                self.metrics.delivered(retry.first.elapsed());
                WebhookOutcome::Delivered
            }
            Attempt::Failed(why) => {
                self.metrics.failed_attempt();
                let attempt = retry.attempt;
                if retry.first.elapsed() + retry.delay <= self.policy.give_up_after {
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(
                            event_id,
                            attempt,
                            error = why,
                            "webhook delivery failed; retrying"
                        );
                    }
                    let at =
                        Instant::now() + jittered(retry.delay, job.event.id ^ u64::from(attempt));
                    retry.delay = (retry.delay * 2).min(self.policy.retry_max);
                    self.retries
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(at, retry);
                    return;
                }
                self.metrics.gave_up();
                tracing::warn!(
                    event_id,
                    event = job.event.kind.name(),
                    attempt,
                    error = why,
                    "webhook: giving up on an event"
                );
                WebhookOutcome::GaveUp
            }
        };
        let report = Report {
            id: job.event.id,
            outcome,
        };
        if let Some(tx) = self.reports.get(usize::from(job.shard)) {
            let _ = tx.send(report);
        }
    }

    fn attempt(&self, job: &Job, event_id: &str) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body: &[u8] = &job.event.body;
        let mut request = self
            .agent
            .post(&self.policy.url)
            .header(HEADER_EVENT_ID, event_id)
            .header(HEADER_EVENT, job.event.kind.name())
            .header(HEADER_TIMESTAMP, &timestamp.to_string())
            .content_type("application/json");
        if !self.policy.secret.is_empty() {
            let sig = signature(&self.policy.secret, timestamp, body);
            request = request.header(HEADER_SIGNATURE, &sig);
        }
        match request.send(body) {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => Attempt::Failed(format!("HTTP {}", response.status())),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }
}

/// `delay` plus up to half of it, spread by `salt` and the clock, so
/// workers retrying after one outage do not hit the endpoint in step.
fn jittered(delay: Duration, salt: u64) -> Duration {
    use std::hash::BuildHasher;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let r = std::collections::hash_map::RandomState::new().hash_one((salt, nanos));
    let half = delay.as_nanos() as u64 / 2;
    delay + Duration::from_nanos(if half == 0 { 0 } else { r % half })
}
