//! The second tier: pages shared through Redis, and one upstream fetch per key for the whole fleet.
//!
//! With `[fleet]`, the [`Cache`](super::Cache) facade consults this tier
//! behind moka (L1): an L1 miss (or a stale L1 copy) reads L2, and an L2 page
//! fills L1. Fills are coalesced twice: locally by the flights, then fleet-wide
//! by a **lease** on the page in Redis:
//! - the flight's task runs [`Shared::fill`]: it takes the lease (with a
//!   fencing token from the page's counter) and runs the upstream fetch,
//!   renewing the lease while the fetch runs; or, when another gateway holds
//!   it, waits for that gateway's answer: woken by the page's pub/sub channel,
//!   with a jittered check as a fallback for a lost notification, and takes
//!   the lease over if it lapses (its holder died);
//! - the fetch's store (`store_if_current`, inside the flight task) finds
//!   the lease through a task-local [`Claim`] and stores with the store
//!   script, which refuses an older fencing token than the stored one and a
//!   page from before a purge (the epochs changed since the lease);
//! - an answer that is not stored (401, 404, 429, 5xx, too large) is left
//!   for a few seconds under the page for the holder's waiters, so every
//!   waiter in the fleet gets the one fetch's answer, as local waiters do;
//! - purges bump a fleet-wide epoch (everything, a resource, or a route) and
//!   announce themselves on the control channel, so every gateway drops its
//!   L1 copies and no fill from before can store anywhere.
//!
//! Whenever Redis fails, each step falls back to what a single gateway does.

mod codec;
mod scripts;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::flight::{FlightOutcome, FlightResult};
use super::memory::Memory;
use super::{Entry, Purge, Tuning};
use crate::fleet::bus::Control;
use crate::fleet::keys::PageKeys;
use crate::fleet::{Fleet, FleetError};
use crate::key::{CacheKey, ResourceId, ResourceKind};
use crate::metrics::Metrics;
use crate::route::ROUTES;
use crate::upstream::UpstreamError;

pub use codec::wall_ms;

/// Unstorable answers larger than this are not shared with remote waiters
/// (they take the lease over and fetch themselves instead).
const MAX_SHARED_ANSWER: usize = 1024 * 1024;

/// How long an unstorable answer stays for the holder's waiters: they read it
/// within milliseconds of the notification, or at their next fallback check.
const ANSWER_KEPT_FOR: Duration = Duration::from_secs(5);

/// A purge as text on the control channel: `all`, `resource <kind> <id>` or `route <name>`.
fn purge_to_wire(purge: &Purge) -> String {
    match purge {
        Purge::All => "all".into(),
        Purge::Resource(r) => format!("resource {} {}", r.kind.as_str(), r.id),
        Purge::Route(route) => format!("route {route}"),
    }
}

fn purge_from_wire(text: &str) -> Option<Purge> {
    let mut parts = text.splitn(3, ' ');
    match (parts.next()?, parts.next(), parts.next()) {
        ("all", None, None) => Some(Purge::All),
        ("resource", Some(kind), Some(id)) if !id.is_empty() => {
            let kind = [ResourceKind::Job, ResourceKind::Batch]
                .into_iter()
                .find(|k| k.as_str() == kind)?;
            Some(Purge::Resource(ResourceId::new(kind, id)))
        }
        ("route", Some(name), None) => route_named(name).map(Purge::Route),
        _ => None,
    }
}

/// The table's own name for a route (a `&'static str`), if it is one.
pub(super) fn route_named(name: &str) -> Option<&'static str> {
    ROUTES.iter().map(|r| r.name).find(|n| *n == name)
}

/// The resource-epoch name of a resource: kind and id.
fn resource_name(kind: ResourceKind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

/// The lease this flight task holds, found by the fetch's store through the task.
#[derive(Debug, Clone)]
struct Claim {
    token: String,
    epochs: [String; 3],
    /// Set once the store script ran: it released the lease itself.
    settled: Arc<AtomicBool>,
}

tokio::task_local! {
    static CLAIM: Claim;
}

/// What the lease script found.
enum Attempt {
    /// A fresh page is stored: read it, no fetch.
    Fresh(Bytes),
    /// The fetch we waited for was not storable; this is its answer.
    Answer(Bytes),
    /// Another gateway holds the lease (its token, and how long it lasts).
    Held {
        holder: String,
        left: Duration,
    },
    Acquired(Claim),
}

pub struct Shared {
    fleet: Arc<Fleet>,
    memory: Arc<Memory>,
    /// The cache's freshness rules and lease wait, as a reload leaves them.
    tuning: Arc<ArcSwap<Tuning>>,
    metrics: Arc<Metrics>,
    /// The fleet's purge sequence as last seen, to tell whether purges were missed.
    purge_seq: AtomicU64,
    /// L2 reads in flight, by key: a burst of L1 misses is one Redis read, not one each.
    reads: Mutex<HashMap<CacheKey, ReadResult>>,
}

/// A read in flight: `None` until it lands, then what it found.
type ReadResult = watch::Receiver<Option<Option<Arc<Entry>>>>;

/// Removes a read from the in-flight map however the reading request ends.
struct ReadDone<'a> {
    shared: &'a Shared,
    key: &'a CacheKey,
}

impl Drop for ReadDone<'_> {
    fn drop(&mut self) {
        self.shared
            .reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.key);
    }
}

fn int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(n) => Some(*n),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::Int(n) => Some(n.to_string()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes(v: redis::Value) -> Option<Bytes> {
    match v {
        redis::Value::BulkString(b) => Some(Bytes::from(b)),
        _ => None,
    }
}

impl Shared {
    pub fn new(
        fleet: Arc<Fleet>,
        memory: Arc<Memory>,
        tuning: Arc<ArcSwap<Tuning>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let shared = Arc::new(Shared {
            fleet,
            memory,
            tuning,
            metrics,
            purge_seq: AtomicU64::new(0),
            reads: Mutex::default(),
        });
        let control = shared.fleet.bus().control();
        tokio::spawn(listen(Arc::downgrade(&shared), control));
        shared
    }

    /// The page's keys and the names of the three epochs that apply to it.
    fn names(&self, key: &CacheKey) -> (PageKeys, [String; 3]) {
        let keys = self.fleet.keys();
        let kind = ROUTES
            .iter()
            .find(|r| r.name == key.route())
            .and_then(|r| r.resource);
        // A page of no resource (a list) has a resource epoch no purge ever bumps.
        let resource = match kind {
            Some(kind) if !key.id().is_empty() => resource_name(kind, key.id()),
            _ => "-".to_owned(),
        };
        (
            keys.page(key),
            [
                keys.epoch_all(),
                keys.epoch_resource(&resource),
                keys.epoch_route(key.route()),
            ],
        )
    }

    fn invocation<'a>(
        script: &'a redis::Script,
        page: &PageKeys,
        epochs: &[String; 3],
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&page.entry)
            .key(&page.lease)
            .key(&page.counter)
            .key(&page.answer)
            .key(&epochs[0])
            .key(&epochs[1])
            .key(&epochs[2]);
        inv
    }

    /// The page under `key` in L2 (fresh or stale), unless purged or unreadable.
    /// Concurrent reads of one key share one Redis call.
    pub async fn read(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let joined = {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            match reads.get(key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    reads.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        match joined {
            Ok(tx) => {
                let _done = ReadDone { shared: self, key };
                let entry = self.read_now(key).await;
                let _ = tx.send(Some(entry.clone()));
                entry
            }
            Err(mut rx) => {
                // The reader's own call is bounded by the Redis deadline; a vanished reader is a miss.
                let wait = self.fleet.config().redis_timeout * 2;
                match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
                    Ok(Ok(found)) => found.clone().flatten(),
                    _ => None,
                }
            }
        }
    }

    async fn read_now(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let (page, epochs) = self.names(key);
        let inv = Self::invocation(&scripts::READ, &page, &epochs);
        let data = self
            .fleet
            .call(|mut c| async move { inv.invoke_async::<Option<Vec<u8>>>(&mut c).await })
            .await;
        match data {
            Ok(Some(data)) => match codec::decode(key, Bytes::from(data)) {
                Some(entry) => {
                    self.metrics.fleet.l2_hits.inc();
                    Some(Arc::new(entry))
                }
                None => {
                    self.metrics.fleet.l2_misses.inc();
                    None
                }
            },
            Ok(None) => {
                self.metrics.fleet.l2_misses.inc();
                None
            }
            Err(_) => None,
        }
    }

    /// Keep a page read from L2 in L1 for the rest of its retention, unless a
    /// purge happened since `generation` was read.
    pub async fn keep_locally(&self, key: &CacheKey, entry: Arc<Entry>, generation: u64) -> bool {
        let left = self
            .tuning
            .load()
            .policy
            .retain_for(entry.terminal)
            .saturating_sub(entry.age(Instant::now()));
        if left.is_zero() {
            return false;
        }
        self.memory
            .insert_if_current(key.clone(), entry, left, generation)
    }

    async fn lease(
        &self,
        page: &PageKeys,
        epochs: &[String; 3],
        awaited: Option<&str>,
    ) -> Result<Attempt, FleetError> {
        let now = SystemTime::now();
        let since = |d: Duration| wall_ms(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
        let fleet = self.fleet.config();
        let mut inv = Self::invocation(&scripts::LEASE, page, epochs);
        inv.arg(since(self.tuning.load().policy.fresh_for(false)))
            .arg(since(self.tuning.load().policy.fresh_for(true)))
            .arg(awaited.unwrap_or(""))
            .arg(u64::try_from(fleet.lease_ttl.as_millis()).unwrap_or(u64::MAX))
            // The counter outlives every entry it fenced (and a lease on top).
            .arg(
                u64::try_from(
                    (self.tuning.load().policy.retain_for(true) + fleet.lease_ttl * 2).as_millis(),
                )
                .unwrap_or(u64::MAX),
            );
        let reply = self
            .fleet
            .call(|mut c| async move { inv.invoke_async::<Vec<redis::Value>>(&mut c).await })
            .await?;
        let mut it = reply.into_iter();
        let kind = it.next().as_ref().and_then(int);
        let bad = FleetError::Unexpected("lease script reply");
        match kind {
            Some(2) => it.next().and_then(bytes).map(Attempt::Fresh).ok_or(bad),
            Some(3) => it.next().and_then(bytes).map(Attempt::Answer).ok_or(bad),
            Some(0) => {
                let holder = it.next().as_ref().and_then(text).ok_or(bad)?;
                let left = it.next().as_ref().and_then(int).unwrap_or(0);
                let left = u64::try_from(left)
                    .map(Duration::from_millis)
                    .unwrap_or(fleet.lease_ttl);
                Ok(Attempt::Held { holder, left })
            }
            Some(1) => {
                let mut field = || it.next().as_ref().and_then(text);
                let token = field().ok_or(FleetError::Unexpected("lease token"))?;
                let epochs = [
                    field().unwrap_or_default(),
                    field().unwrap_or_default(),
                    field().unwrap_or_default(),
                ];
                Ok(Attempt::Acquired(Claim {
                    token,
                    epochs,
                    settled: Arc::new(AtomicBool::new(false)),
                }))
            }
            _ => Err(bad),
        }
    }

    /// The flight task of `key` in a fleet: take the lease and run `upstream`,
    /// or wait for the gateway that holds it. Falls back to `upstream` alone
    /// (a single gateway's fill) whenever Redis does not answer.
    pub async fn fill<Fut>(self: Arc<Self>, key: CacheKey, upstream: Fut) -> FlightResult
    where
        Fut: Future<Output = FlightResult> + Send + 'static,
    {
        if !self.fleet.available() {
            return upstream.await;
        }
        let (page, epochs) = self.names(&key);
        let wait_timeout = self.tuning.load().wait_timeout;
        let deadline = Instant::now() + wait_timeout;
        let mut subscription = None;
        let mut awaited: Option<String> = None;
        loop {
            let generation = self.memory.generation();
            let attempt = match self.lease(&page, &epochs, awaited.as_deref()).await {
                Ok(a) => a,
                Err(_) => return upstream.await,
            };
            match attempt {
                Attempt::Fresh(data) => {
                    let Some(entry) = codec::decode(&key, data) else {
                        return upstream.await;
                    };
                    self.metrics.fleet.l2_hits.inc();
                    let entry = Arc::new(entry);
                    let stored = self.keep_locally(&key, entry.clone(), generation).await;
                    return Ok(FlightOutcome {
                        entry,
                        stored,
                        shared: true,
                    });
                }
                Attempt::Answer(data) => {
                    let Some(entry) = codec::decode(&key, data) else {
                        return upstream.await;
                    };
                    return Ok(FlightOutcome {
                        entry: Arc::new(entry),
                        stored: false,
                        shared: true,
                    });
                }
                Attempt::Acquired(claim) => {
                    self.metrics.fleet.leases_acquired.inc();
                    if awaited.is_some() {
                        self.metrics.fleet.leases_taken_over.inc();
                        tracing::info!(
                            "fill lease taken over: the previous holder gave no answer in time"
                        );
                    }
                    return self.hold(&key, &page, &epochs, claim, upstream).await;
                }
                Attempt::Held { holder, left } => {
                    let Some(sub) = subscription.as_mut() else {
                        // Listen first, then look again: an answer announced in between is not missed.
                        self.metrics.fleet.leases_waited.inc();
                        subscription = Some(self.fleet.bus().subscribe(&page.channel).await.0);
                        continue;
                    };
                    awaited = Some(holder);
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Arc::new(UpstreamError::Timeout(wait_timeout)));
                    }
                    let jitter = 0.5 + rand::random::<f64>();
                    let fallback = self.fleet.config().fallback_check.mul_f64(jitter);
                    // Just past the lease's end: the moment a dead holder's page can be taken over.
                    let lapse = left + Duration::from_millis(5);
                    let wake = (now + fallback.min(lapse)).min(deadline);
                    sub.mark_seen();
                    tokio::select! {
                        _ = sub.notified() => {}
                        _ = tokio::time::sleep_until(wake) => {}
                    }
                }
            }
        }
    }

    /// Run the fetch holding the lease: renew it meanwhile, release it after if the store did not.
    async fn hold<Fut>(
        &self,
        key: &CacheKey,
        page: &PageKeys,
        epochs: &[String; 3],
        claim: Claim,
        upstream: Fut,
    ) -> FlightResult
    where
        Fut: Future<Output = FlightResult>,
    {
        let settled = claim.settled.clone();
        let token = claim.token.clone();
        let lease_ttl = self.fleet.config().lease_ttl;
        let renew = async {
            let every = lease_ttl / 3;
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                tick.tick().await;
                let lease = page.lease.clone();
                let token = token.clone();
                let ms = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX);
                let _ = self
                    .fleet
                    .call(|mut c| async move {
                        scripts::RENEW
                            .key(lease)
                            .arg(token)
                            .arg(ms)
                            .invoke_async::<i64>(&mut c)
                            .await
                    })
                    .await;
            }
        };
        let fetch = CLAIM.scope(claim, upstream);
        let result = tokio::select! {
            r = fetch => r,
            _ = renew => unreachable_renewal(),
        };
        if !settled.load(Ordering::Acquire) {
            // Not stored (an answer not worth keeping, a failure, a purge): release the
            // lease now rather than after its TTL, leaving the answer for the waiters.
            let answer = match &result {
                Ok(o) if o.entry.body.len() <= MAX_SHARED_ANSWER => {
                    Some(codec::encode(key, &o.entry))
                }
                _ => None,
            };
            self.release(page, epochs, &token, answer).await;
        }
        result
    }

    async fn release(
        &self,
        page: &PageKeys,
        epochs: &[String; 3],
        token: &str,
        answer: Option<Bytes>,
    ) {
        let mut inv = Self::invocation(&scripts::RELEASE, page, epochs);
        inv.arg(token)
            .arg(answer.as_deref().unwrap_or(b""))
            .arg(u64::try_from(ANSWER_KEPT_FOR.as_millis()).unwrap_or(5000))
            .arg(&page.channel);
        // A failed release only delays the waiters until the lease lapses.
        let _ = self
            .fleet
            .call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await;
    }

    /// Store a page in L2, if this task holds the page's lease (see [`Claim`]).
    pub async fn store(&self, key: &CacheKey, entry: &Entry) {
        let Ok(claim) = CLAIM.try_with(Claim::clone) else {
            return;
        };
        claim.settled.store(true, Ordering::Release);
        let (page, epochs) = self.names(key);
        let data = codec::encode(key, entry);
        let retain = self.tuning.load().policy.retain_for(entry.terminal);
        let mut inv = Self::invocation(&scripts::STORE, &page, &epochs);
        inv.arg(&claim.token)
            .arg(&claim.epochs[0])
            .arg(&claim.epochs[1])
            .arg(&claim.epochs[2])
            .arg(data.as_ref())
            .arg(wall_ms(entry.fetched_wall))
            .arg(if entry.terminal { "1" } else { "0" })
            .arg(u64::try_from(retain.as_millis()).unwrap_or(u64::MAX))
            .arg(&page.channel);
        match self
            .fleet
            .call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await
        {
            Ok(1) => {
                self.metrics.fleet.l2_stores.inc();
            }
            Ok(_) => {
                self.metrics.fleet.l2_stores_refused.inc();
            }
            Err(_) => {}
        }
    }

    /// Purge `scope` fleet-wide: bump its epoch (no fill from before can store,
    /// no entry from before can be read) and tell every gateway to drop its L1 copies.
    pub async fn purge(&self, scope: &Purge) {
        let keys = self.fleet.keys();
        let (epoch, keep_ms) = match scope {
            Purge::All => (keys.epoch_all(), 0),
            Purge::Resource(r) => (
                keys.epoch_resource(&resource_name(r.kind, &r.id)),
                self.epoch_keep_ms(),
            ),
            Purge::Route(route) => (keys.epoch_route(route), self.epoch_keep_ms()),
        };
        let head = self.fleet.stamp("purge");
        let tail = purge_to_wire(scope);
        let seq = keys.purge_seq();
        let channel = keys.control_channel();
        let result = self
            .fleet
            .call(|mut c| async move {
                scripts::PURGE
                    .key(epoch)
                    .key(seq)
                    .arg(channel)
                    .arg(head)
                    .arg(tail)
                    .arg(keep_ms)
                    .invoke_async::<u64>(&mut c)
                    .await
            })
            .await;
        match result {
            Ok(seq) => {
                self.purge_seq.fetch_max(seq, Ordering::AcqRel);
            }
            Err(e) => {
                // (Not `error::Chain`: `error` depends on `cache`, and modules form no cycle.)
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                tracing::warn!(
                    error = %e,
                    cause = cause.as_deref().unwrap_or("-"),
                    "purge not shared with the fleet (Redis unavailable): other gateways keep their copies until they expire"
                );
            }
        }
    }

    /// Resource and route epochs outlive every entry stored under them, then expire.
    fn epoch_keep_ms(&self) -> u64 {
        u64::try_from((self.tuning.load().policy.retain_for(true) * 2).as_millis())
            .unwrap_or(u64::MAX)
    }

    /// After a reconnect: if purges happened that we may not have heard of, drop all of L1.
    async fn catch_up(&self) {
        let seq_key = self.fleet.keys().purge_seq();
        let seen = self.purge_seq.load(Ordering::Acquire);
        let now = self
            .fleet
            .call(|mut c| async move {
                redis::cmd("GET")
                    .arg(seq_key)
                    .query_async::<Option<u64>>(&mut c)
                    .await
            })
            .await;
        match now {
            Ok(now) if now.unwrap_or(0) == seen => {}
            Ok(now) => {
                self.purge_seq.fetch_max(now.unwrap_or(0), Ordering::AcqRel);
                if seen != 0 || now.unwrap_or(0) != 0 {
                    tracing::info!(
                        "purges may have been missed while disconnected: dropping local copies"
                    );
                }
                self.memory.purge(&Purge::All);
            }
            Err(_) => self.memory.purge(&Purge::All),
        }
    }
}

fn unreachable_renewal() -> FlightResult {
    // The renewal loop never ends; `select!` needs a value of the fetch's type.
    Err(Arc::new(UpstreamError::Abandoned))
}

/// Apply the fleet's control messages to this gateway's L1.
async fn listen(shared: std::sync::Weak<Shared>, mut control: broadcast::Receiver<Control>) {
    loop {
        let event = match control.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => Control::Reconnected,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            Control::Reconnected => shared.catch_up().await,
            Control::Message(text) => {
                let Some(rest) = shared.fleet.from_others(&text) else {
                    continue;
                };
                let Some(rest) = rest.strip_prefix("purge ") else {
                    continue;
                };
                let Some((seq, scope)) = rest.split_once(' ') else {
                    continue;
                };
                if let (Ok(seq), Some(scope)) = (seq.parse::<u64>(), purge_from_wire(scope)) {
                    shared.memory.purge(&scope);
                    shared.purge_seq.fetch_max(seq, Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purges_travel() {
        let route = ROUTES[ROUTES.len() - 1].name;
        for p in [
            Purge::All,
            Purge::Resource(ResourceId::new(ResourceKind::Job, "job-1")),
            Purge::Resource(ResourceId::new(ResourceKind::Batch, "b 2")),
            Purge::Route(route),
        ] {
            assert_eq!(purge_from_wire(&purge_to_wire(&p)), Some(p));
        }
        assert_eq!(purge_from_wire("resource job"), None);
        assert_eq!(purge_from_wire("route no-such-route"), None);
        assert_eq!(purge_from_wire("nonsense"), None);
    }
}
