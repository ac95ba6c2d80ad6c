//! A simulated LlamaCloud batch-processing API, shared by pollgate's integration tests, benches,
//! load comparisons and anyone trying pollgate offline.
//!
//! It exists so the gateway can be exercised against something that behaves like the real
//! upstream — FastAPI-style validation errors, tenant isolation, paginated item lists whose
//! content changes, rate limits and broken connections — while letting the test *observe* what
//! reached the upstream (how many requests, which credentials, peak concurrency).
//!
//! A request flows: [`server`] accepts it (HTTP/1.1 or h2c) → [`handler`] records it, applies
//! latency and any [`faults`] rule → routes to the batch API (`api`), the proxy probes
//! (`probes`: echo, status, download) or the `/_sim` control endpoints (`control`), which are
//! neither recorded nor faulted. The jobs and items themselves live in [`data`].
//!
//! It only ever listens on loopback unless the binary is told otherwise.

mod api;
mod body;
mod control;
pub mod data;
pub mod faults;
mod handler;
mod probes;
pub mod pydantic;
pub mod query;
mod server;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub use data::{ItemStatus, JobStatus};
pub use faults::{Fault, FaultRule};

use data::World;

/// Bearer key (or session cookie) of demo tenant A.
pub const TOKEN_A: &str = "sk-tenant-a";
/// Bearer key (or session cookie) of demo tenant B.
pub const TOKEN_B: &str = "sk-tenant-b";
/// Tenant A's running job: `items_per_job` items in every status.
pub const JOB_A: &str = "job-a-running";
/// Tenant A's completed job: 10 items, completed/failed/skipped.
pub const JOB_A_DONE: &str = "job-a-done";
/// Tenant B's running job: 50 items.
pub const JOB_B: &str = "job-b-running";

/// Most requests kept for [`SimUpstream::requests`]; the oldest are dropped beyond this so a
/// long benchmark cannot exhaust memory. Counters stay exact regardless.
pub const MAX_RECORDED_REQUESTS: usize = 100_000;

/// Construction options.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Added before every (non-control) response.
    pub latency: Duration,
    /// Number of items of the seeded running job [`JOB_A`].
    pub items_per_job: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            latency: Duration::ZERO,
            items_per_job: 2500,
        }
    }
}

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: http::Method,
    pub path: String,
    /// The raw query string, as received.
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    /// The credential as seen: bearer key, else `session` cookie.
    pub token: Option<String>,
}

/// Shared state behind every clone of [`SimUpstream`].
#[derive(Debug)]
pub(crate) struct State {
    world: RwLock<World>,
    fault: Mutex<Option<FaultRule>>,
    latency_nanos: AtomicU64,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    requests: AtomicUsize,
    item_lists: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A poisoned lock only means a test panicked elsewhere; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub(crate) fn world(&self) -> RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn world_mut(&self) -> RwLockWriteGuard<'_, World> {
        self.world.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn set_latency(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn set_fault(&self, rule: Option<FaultRule>) {
        *lock(&self.fault) = rule;
    }

    pub(crate) fn take_fault(&self, token: Option<&str>, is_item_list: bool) -> Option<Fault> {
        faults::take_fault(&mut lock(&self.fault), token, is_item_list)
    }

    pub(crate) fn record(&self, req: RecordedRequest, is_item_list: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if is_item_list {
            self.item_lists.fetch_add(1, Ordering::Relaxed);
        }
        let mut recorded = lock(&self.recorded);
        if recorded.len() >= MAX_RECORDED_REQUESTS {
            recorded.pop_front();
        }
        recorded.push_back(req);
    }

    pub(crate) fn stats_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "item_lists": self.item_lists.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "max_in_flight": self.max_in_flight.load(Ordering::Relaxed),
            "latency_ms": self.latency().as_millis() as u64,
            "fault": lock(&self.fault).as_ref().map(|r| format!("{r:?}")),
        })
    }

    pub(crate) fn reset_observations(&self) {
        lock(&self.recorded).clear();
        self.requests.store(0, Ordering::Relaxed);
        self.item_lists.store(0, Ordering::Relaxed);
        // The high-water mark restarts from what is in flight right now.
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Counts a request as in flight for as long as it lives, including when the client goes away
/// and the handling future is dropped.
pub(crate) struct InFlightGuard(Arc<State>);

impl InFlightGuard {
    pub(crate) fn enter(state: &Arc<State>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        state.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlightGuard(state.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The simulated upstream. Cheap to clone; all clones share state.
#[derive(Clone, Debug)]
pub struct SimUpstream {
    state: Arc<State>,
}

impl SimUpstream {
    /// Creates the upstream with the demo tenants and jobs (see the crate constants).
    pub fn new(opts: SimOptions) -> Self {
        let state = State {
            world: RwLock::new(World::seeded(opts.items_per_job)),
            fault: Mutex::new(None),
            latency_nanos: AtomicU64::new(0),
            recorded: Mutex::new(VecDeque::new()),
            requests: AtomicUsize::new(0),
            item_lists: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        };
        state.set_latency(opts.latency);
        SimUpstream {
            state: Arc::new(state),
        }
    }

    /// Serves on an already-bound listener until `shutdown` resolves, then stops accepting and
    /// lets in-flight connections finish (bounded by a drain deadline).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        server::serve(self.state, listener, shutdown).await
    }

    /// Binds `127.0.0.1:0`, serves on the current runtime until it ends, and returns the address.
    ///
    /// # Panics
    /// If loopback cannot be bound, which no test can recover from.
    pub async fn spawn(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1:0 for the simulated upstream");
        let addr = listener
            .local_addr()
            .expect("local address of a bound listener");
        tokio::spawn(async move {
            if let Err(e) = self.serve(listener, std::future::pending()).await {
                tracing::warn!(error = %e, "simulated upstream stopped");
            }
        });
        addr
    }

    /// Every request received (up to [`MAX_RECORDED_REQUESTS`], oldest dropped), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.recorded).iter().cloned().collect()
    }

    /// All requests received, control endpoints excluded.
    pub fn request_count(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// `GET`/`HEAD` requests to `.../{job}/items`.
    pub fn item_list_count(&self) -> usize {
        self.state.item_lists.load(Ordering::Relaxed)
    }

    /// Requests currently being handled.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::Relaxed)
    }

    /// Highest simultaneous in-flight count since the last [`reset`](Self::reset).
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::Relaxed)
    }

    /// Clears recorded requests, counters and the high-water mark; keeps data and faults.
    pub fn reset(&self) {
        self.state.reset_observations();
    }

    /// Latency added before every response.
    pub fn set_latency(&self, d: Duration) {
        self.state.set_latency(d);
    }

    /// Installs a fault rule; `None` clears it.
    pub fn set_fault(&self, rule: Option<FaultRule>) {
        self.state.set_fault(rule);
    }

    /// Adds (or replaces) a job owned by the tenant of `token`; an unknown token becomes a new
    /// tenant of its own.
    pub fn add_job(&self, token: &str, job_id: &str, items: usize, status: JobStatus) {
        self.state.world_mut().add_job(token, job_id, items, status);
    }

    /// Changes the job's item content so the next item-list body differs: advances the first
    /// pending/processing item and shifts every item's `effective_at`. Unknown jobs are ignored.
    pub fn mutate_job(&self, job_id: &str) {
        if let Some(job) = self.state.world_mut().jobs.get_mut(job_id) {
            job.mutate();
        }
    }

    /// Sets the job-level status (items are left alone). Unknown jobs are ignored.
    pub fn set_job_status(&self, job_id: &str, status: JobStatus) {
        if let Some(job) = self.state.world_mut().jobs.get_mut(job_id) {
            job.status = status;
        }
    }
}
