//! A simulated LlamaCloud batch-processing API, shared by pollgate's integration tests, benches,
//! load comparisons and anyone trying pollgate offline.
//!
//! It exists so the gateway can be exercised against something that behaves like the real
//! upstream — FastAPI/pydantic validation errors, tenant isolation, paginated item lists and
//! batches whose content changes, rate limits and broken connections — while letting the test
//! *observe* what reached the upstream (how many requests per [`Route`], which credentials, peak
//! concurrency).
//!
//! A request flows: `server` accepts it (HTTP/1.1 or h2c) → `handler` classifies its
//! [`Route`], records it, applies latency and any [`faults`] rule → dispatches to the v1 routes
//! (`v1`, data in [`data`]), the v2 batches routes (`v2`, data in [`batches`], page tokens in
//! `cursor`, create bodies in `create_request`), the proxy probes (`probes`: echo, status,
//! download) or the `/_sim` control endpoints (`control`), which are neither recorded nor
//! faulted. Query values are parsed as pydantic does it ([`pydantic`], [`query`]); who may see
//! what is in [`tenants`].
//!
//! It only ever listens on loopback unless the binary is told otherwise. `sim/README.md` lists
//! what it serves and every known difference from the real API.

pub mod batches;
mod body;
mod control;
mod create_request;
mod cursor;
pub mod data;
mod error;
pub mod faults;
mod handler;
mod probes;
pub mod pydantic;
pub mod query;
mod response;
pub mod routes;
mod server;
pub mod tenants;
mod v1;
mod v2;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub use batches::{BatchJobType, BatchStatus, BATCH_HISTORY_A, CREATED_BATCH_FILES};
pub use data::{ItemStatus, JobStatus};
pub use faults::{Fault, FaultRule};
pub use routes::{Route, RouteSet};
pub use tenants::{ORG_A, ORG_B, PROJECT_A, PROJECT_B};
pub use v2::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

use batches::{wall_clock_micros, Batch, Batches};
use data::World;
use faults::ActiveFault;

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
/// Tenant A's running batch: `items_per_job` results, 40 % with jobs made.
pub const BATCH_A: &str = "bat-a-running";
/// Tenant A's completed batch: 10 results.
pub const BATCH_A_DONE: &str = "bat-a-done";
/// Tenant B's running batch: 50 results.
pub const BATCH_B: &str = "bat-b-running";
/// Source directory of [`BATCH_A`], [`BATCH_A_DONE`] and half of tenant A's history batches.
pub const SOURCE_DIR_A: &str = "dir-a-main";

/// Most requests kept for [`SimUpstream::requests`]; the oldest are dropped beyond this so a
/// long benchmark cannot exhaust memory. Counters stay exact regardless.
pub const MAX_RECORDED_REQUESTS: usize = 100_000;

/// Construction options.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Added before every (non-control) response.
    pub latency: Duration,
    /// Number of items of the seeded running job [`JOB_A`], and of results of the seeded running
    /// batch [`BATCH_A`].
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
    /// The route, by method and path.
    pub route: Route,
}

/// Shared state behind every clone of [`SimUpstream`].
#[derive(Debug)]
pub(crate) struct State {
    world: RwLock<World>,
    /// Apart from `world` so the v2 routes (which move batches on reads) never block v1 reads.
    batches: Mutex<Batches>,
    fault: Mutex<Option<ActiveFault>>,
    latency_nanos: AtomicU64,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    requests: AtomicUsize,
    /// Requests per route, indexed by [`Route::index`].
    routes: [AtomicUsize; Route::ALL.len()],
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

    /// The batches, with every timed step due by now applied on the first access through them.
    pub(crate) fn batches(&self) -> MutexGuard<'_, Batches> {
        lock(&self.batches)
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn set_latency(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn set_fault(&self, rule: Option<FaultRule>, routes: RouteSet) {
        *lock(&self.fault) = rule.map(|rule| ActiveFault { rule, routes });
    }

    pub(crate) fn take_fault(&self, token: Option<&str>, route: Route) -> Option<Fault> {
        faults::take_fault(&mut lock(&self.fault), token, route)
    }

    pub(crate) fn route_count(&self, route: Route) -> usize {
        self.routes[route.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.routes[req.route.index()].fetch_add(1, Ordering::Relaxed);
        let mut recorded = lock(&self.recorded);
        if recorded.len() >= MAX_RECORDED_REQUESTS {
            recorded.pop_front();
        }
        recorded.push_back(req);
    }

    pub(crate) fn stats_json(&self) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = Route::ALL
            .iter()
            .map(|r| (r.as_str().to_owned(), self.route_count(*r).into()))
            .collect();
        let fault = lock(&self.fault)
            .as_ref()
            .map(|f| format!("{:?} on {:?}", f.rule, f.routes));
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "item_lists": self.route_count(Route::V1Items),
            "routes": routes,
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "max_in_flight": self.max_in_flight.load(Ordering::Relaxed),
            "latency_ms": self.latency().as_millis() as u64,
            "fault": fault,
        })
    }

    pub(crate) fn reset_observations(&self) {
        lock(&self.recorded).clear();
        self.requests.store(0, Ordering::Relaxed);
        for count in &self.routes {
            count.store(0, Ordering::Relaxed);
        }
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
    /// Creates the upstream with the demo tenants, jobs and batches (see the crate constants).
    /// Batches change only when told to (see [`SimUpstream::set_batch_step`]).
    pub fn new(opts: SimOptions) -> Self {
        let state = State {
            world: RwLock::new(World::seeded(opts.items_per_job)),
            batches: Mutex::new(Batches::seeded(opts.items_per_job)),
            fault: Mutex::new(None),
            latency_nanos: AtomicU64::new(0),
            recorded: Mutex::new(VecDeque::new()),
            requests: AtomicUsize::new(0),
            routes: std::array::from_fn(|_| AtomicUsize::new(0)),
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

    /// `GET`/`HEAD` requests to `.../{job}/items` (the same as `route_count(Route::V1Items)`).
    pub fn item_list_count(&self) -> usize {
        self.state.route_count(Route::V1Items)
    }

    /// Requests to one route since the last [`reset`](Self::reset), exact however many.
    pub fn route_count(&self, route: Route) -> usize {
        self.state.route_count(route)
    }

    /// Recorded requests (any method) whose path is exactly `path`, e.g.
    /// `/api/v2/batches/bat-a-running`. Counts from [`requests`](Self::requests), so at most the
    /// last [`MAX_RECORDED_REQUESTS`].
    pub fn path_count(&self, path: &str) -> usize {
        lock(&self.state.recorded)
            .iter()
            .filter(|r| r.path == path)
            .count()
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

    /// Installs a fault rule for every route (narrowed by its own `only_item_lists`); `None`
    /// clears it.
    pub fn set_fault(&self, rule: Option<FaultRule>) {
        self.state.set_fault(rule, RouteSet::ALL);
    }

    /// Installs a fault rule for the given routes only, e.g. [`RouteSet::POLLS`]: the reads
    /// pollers repeat, v1 and v2. Replaces any rule installed before.
    pub fn set_fault_on(&self, routes: RouteSet, rule: FaultRule) {
        self.state.set_fault(Some(rule), routes);
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

    /// Adds (or replaces) a batch owned by the tenant of `token` (an unknown token becomes a new
    /// tenant), with `results` files in the state `status` implies, created now.
    pub fn add_batch(&self, token: &str, batch_id: &str, results: usize, status: BatchStatus) {
        let tenant = self.state.world_mut().ensure_tenant(token);
        let batch = Batch::new(batch_id, &tenant, results, status, wall_clock_micros());
        self.state.batches().insert(batch);
    }

    /// Sets a batch's status (its results are left alone) and moves its `updated_at`. Unknown
    /// batches are ignored.
    pub fn set_batch_status(&self, batch_id: &str, status: BatchStatus) {
        if let Some(b) = self.state.batches().get_mut(batch_id) {
            b.set_status(status, wall_clock_micros());
        }
    }

    /// Changes a batch's body without changing its status: the next waiting file gets its job,
    /// and `updated_at` moves. Unknown batches are ignored.
    pub fn mutate_batch(&self, batch_id: &str) {
        if let Some(b) = self.state.batches().get_mut(batch_id) {
            b.mutate(wall_clock_micros());
        }
    }

    /// Moves a batch one step: PENDING/THROTTLED → RUNNING → COMPLETED; finished batches stay.
    /// Returns the status after the step, `None` for an unknown batch.
    pub fn advance_batch(&self, batch_id: &str) -> Option<BatchStatus> {
        let mut batches = self.state.batches();
        let b = batches.get_mut(batch_id)?;
        Some(b.advance(wall_clock_micros()))
    }

    /// A batch's current status (after any timed steps due), `None` for an unknown batch.
    pub fn batch_status(&self, batch_id: &str) -> Option<BatchStatus> {
        self.state.batches().get_mut(batch_id).map(|b| b.status)
    }

    /// Makes every batch not yet finished take one step per `step` (PENDING → RUNNING →
    /// COMPLETED), each counting from now or from its creation if later; `None` (the default)
    /// stops it, so batches change only when told to.
    pub fn set_batch_step(&self, step: Option<Duration>) {
        self.state.batches().set_step(step);
    }
}
