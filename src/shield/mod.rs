//! Shielding the upstream: per-credential back-off after 429s, and per-credential request budgets.
//!
//! nginx keeps forwarding to an origin that answers 429 even while it serves
//! stale copies (nginx#1000). pollgate instead remembers, per credential, until
//! when the upstream asked it to stop, and sends *no* cacheable request for
//! that credential until then: callers serve stale data or answer 429 with the
//! time left. When the back-off ends exactly one request probes the upstream;
//! the others keep waiting for its verdict. One credential's back-off never
//! touches another's: the state is keyed by credential fingerprint.
//!
//! In a fleet ([`fleet`]), back-offs, the probe and the budget are shared
//! through Redis; the local state stays the fallback when Redis fails.

pub mod fleet;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderMap, StatusCode};
use rand::Rng;
use tokio::time::Instant;

use crate::config::BackoffConfig;
use crate::fleet::bus::Control;
use crate::fleet::Fleet;
use crate::key::Credential;
use fleet::{FleetShield, Remote};

/// Above this many remembered credentials, expired state is swept on insert.
const SWEEP_ABOVE: usize = 4096;

/// How long others wait while one request probes an upstream that just lifted a back-off.
const PROBE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Backoff {
    until: Instant,
    strikes: u32,
    probing: bool,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Whether a cacheable request of a credential may go upstream now.
pub enum Gate {
    Open,
    /// The back-off just ended: this request is the one probe. Hold the guard until the answer is recorded.
    Probe(ProbeGuard),
    /// Backed off: this much time is left.
    Closed(Duration),
}

/// Marks the probe of a credential as in flight; dropping it without a verdict allows another probe.
pub struct ProbeGuard {
    shield: Arc<Shield>,
    credential: Credential,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        let mut map = self.shield.lock_backoffs();
        if let Some(b) = map.get_mut(&self.credential) {
            b.probing = false;
        }
    }
}

/// What a configuration reload may change in the shield. Back-offs already running keep
/// their end; the new rules apply to the next 429.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    pub backoff: BackoffConfig,
    /// Requests per second per credential; `None` = no budget.
    pub rate: Option<f64>,
}

pub struct Shield {
    backoffs: Mutex<HashMap<Credential, Backoff>>,
    buckets: Mutex<HashMap<Credential, Bucket>>,
    /// Back-off rules and the budget's rate; swapped by a reload.
    tuning: ArcSwap<Tuning>,
    /// Shared with the fleet, with `[fleet]`.
    fleet: Option<FleetShield>,
}

impl Shield {
    pub fn new(config: BackoffConfig, rate: Option<f64>) -> Self {
        Shield {
            backoffs: Mutex::default(),
            buckets: Mutex::default(),
            tuning: ArcSwap::from_pointee(Tuning {
                backoff: config,
                rate,
            }),
            fleet: None,
        }
    }

    /// A shield whose back-offs, probes and budgets are shared with the fleet
    /// (inside a tokio runtime: it listens to the fleet's announcements).
    pub fn with_fleet(config: BackoffConfig, rate: Option<f64>, fleet: Arc<Fleet>) -> Arc<Self> {
        let control = fleet.bus().control();
        let mut shield = Shield::new(config, rate);
        shield.fleet = Some(FleetShield { fleet });
        let shield = Arc::new(shield);
        tokio::spawn(listen(Arc::downgrade(&shield), control));
        shield
    }

    /// Apply `tuning` from now on.
    pub fn retune(&self, tuning: Tuning) {
        self.tuning.store(Arc::new(tuning));
    }

    fn lock_backoffs(&self) -> std::sync::MutexGuard<'_, HashMap<Credential, Backoff>> {
        self.backoffs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May `credential` send a cacheable request upstream now? In a fleet, the
    /// probe after a back-off is claimed fleet-wide (one Redis call, only then).
    pub async fn gate(self: &Arc<Self>, credential: &Credential) -> Gate {
        let gate = self.gate_locally(credential);
        if let (Gate::Probe(_), Some(fleet)) = (&gate, &self.fleet) {
            if let Ok(false) = fleet.claim_probe(credential, PROBE_WAIT).await {
                // Another gateway probes; its verdict will reach us. (Dropping the guard frees ours.)
                return Gate::Closed(PROBE_WAIT);
            }
        }
        gate
    }

    fn gate_locally(self: &Arc<Self>, credential: &Credential) -> Gate {
        let now = Instant::now();
        let mut map = self.lock_backoffs();
        let Some(b) = map.get_mut(credential) else {
            return Gate::Open;
        };
        if now < b.until {
            return Gate::Closed(b.until - now);
        }
        if b.probing {
            return Gate::Closed(PROBE_WAIT);
        }
        b.probing = true;
        Gate::Probe(ProbeGuard {
            shield: self.clone(),
            credential: *credential,
        })
    }

    /// Learn from an upstream answer for `credential`: a 429 (or a 503 with
    /// `Retry-After`) starts or extends its back-off; any other answer ends it.
    /// Returns the back-off started, if any.
    pub fn record(
        &self,
        credential: &Credential,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Duration> {
        let asked = retry_after(headers, SystemTime::now());
        let limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::SERVICE_UNAVAILABLE && asked.is_some());
        let config = self.tuning.load().backoff.clone();
        let mut map = self.lock_backoffs();
        if !limited {
            if map.remove(credential).is_some() {
                if let Some(fleet) = &self.fleet {
                    fleet.announce(Remote::Clear(*credential));
                }
            }
            return None;
        }
        let now = Instant::now();
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, b| b.until > now || b.probing);
        }
        let b = map.entry(*credential).or_insert(Backoff {
            until: now,
            strikes: 0,
            probing: false,
        });
        let wait = match asked {
            Some(d) => d,
            None => {
                // Exponential from the default, with ±20 % jitter so fleets do not probe in step.
                let base =
                    config.default_retry_after.as_secs_f64() * 2f64.powi(b.strikes.min(16) as i32);
                Duration::from_secs_f64(base * rand::thread_rng().gen_range(0.8..1.2))
            }
        }
        .min(config.max_retry_after);
        b.strikes = b.strikes.saturating_add(1);
        b.until = b.until.max(now + wait);
        b.probing = false;
        let left = b.until - now;
        if let Some(fleet) = &self.fleet {
            fleet.announce(Remote::Backoff(*credential, SystemTime::now() + left));
        }
        Some(left)
    }

    /// Apply what another gateway of the fleet said.
    fn apply(&self, remote: Remote) {
        let max_retry_after = self.tuning.load().backoff.max_retry_after;
        let mut map = self.lock_backoffs();
        match remote {
            Remote::Clear(credential) => {
                map.remove(&credential);
            }
            Remote::Backoff(credential, until) => {
                let Ok(left) = until.duration_since(SystemTime::now()) else {
                    return;
                };
                let now = Instant::now();
                let until = now + left.min(max_retry_after);
                let b = map.entry(credential).or_insert(Backoff {
                    until: now,
                    strikes: 1,
                    probing: false,
                });
                b.until = b.until.max(until);
            }
        }
    }

    /// Credentials backed off now.
    pub fn active(&self) -> usize {
        let now = Instant::now();
        self.lock_backoffs()
            .values()
            .filter(|b| b.until > now)
            .count()
    }

    /// Take one request from the credential's budget. `Ok(wait)`: go after
    /// `wait` (zero when a token is there; the token is reserved). `Err(wait)`:
    /// the budget frees up only after `wait`, longer than `max_wait`.
    /// In a fleet the budget is the fleet's; the local one stands in when Redis fails.
    pub async fn take_budget(
        &self,
        credential: &Credential,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let Some(rate) = self.tuning.load().rate else {
            return Ok(Duration::ZERO);
        };
        if let Some(fleet) = &self.fleet {
            if let Ok(verdict) = fleet.take_budget(credential, rate, max_wait).await {
                return verdict;
            }
        }
        self.take_local_budget(credential, rate, max_wait)
    }

    fn take_local_budget(
        &self,
        credential: &Credential,
        rate: f64,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let burst = rate.max(1.0);
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, b| {
                b.tokens < burst || now.duration_since(b.refilled) < Duration::from_secs(60)
            });
        }
        let bucket = map.entry(*credential).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        let wait = if bucket.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - bucket.tokens) / rate)
        };
        if wait > max_wait {
            return Err(wait);
        }
        bucket.tokens -= 1.0;
        Ok(wait)
    }
}

/// Apply the fleet's announcements to the local back-offs.
async fn listen(
    shield: std::sync::Weak<Shield>,
    mut control: tokio::sync::broadcast::Receiver<Control>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let text = match control.recv().await {
            Ok(Control::Message(text)) => text,
            // Missed announcements are not replayed: each gateway still learns from its own 429s.
            Ok(Control::Reconnected) | Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let Some(shield) = shield.upgrade() else {
            return;
        };
        let Some(fleet) = &shield.fleet else {
            return;
        };
        if let Some(remote) = fleet.fleet.from_others(&text).and_then(Remote::from_wire) {
            shield.apply(remote);
        }
    }
}

/// What the upstream asked for: `retry-after-ms` first (as the official SDK
/// reads it), then `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FingerprintKey;
    use http::HeaderValue;

    fn cred(token: &'static str) -> Credential {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static(token));
        FingerprintKey::random().credential(&h).expect("credential")
    }

    /// The shipped default back-off (1 s), under a 60 s cap.
    fn shield() -> Arc<Shield> {
        Arc::new(Shield::new(
            BackoffConfig {
                max_retry_after: Duration::from_secs(60),
                ..crate::config::Config::default().backoff
            },
            Some(2.0),
        ))
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", HeaderValue::from_str(&date).expect("date"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        h.remove("retry-after-ms");
        assert_eq!(retry_after(&h, now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_per_credential_and_probed_once() {
        let s = shield();
        let (a, b) = (cred("Bearer a"), cred("Bearer b"));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(
            s.record(&a, StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(2))
        );
        assert!(matches!(s.gate(&a).await, Gate::Closed(d) if d == Duration::from_secs(2)));
        assert!(matches!(s.gate(&b).await, Gate::Open));
        tokio::time::advance(Duration::from_secs(2)).await;
        let probe = match s.gate(&a).await {
            Gate::Probe(p) => p,
            _ => panic!("expected the probe"),
        };
        assert!(
            matches!(s.gate(&a).await, Gate::Closed(_)),
            "only one probe"
        );
        drop(probe);
        assert!(
            matches!(s.gate(&a).await, Gate::Probe(_)),
            "an abandoned probe frees the slot"
        );
        s.record(&a, StatusCode::OK, &HeaderMap::new());
        assert!(matches!(s.gate(&a).await, Gate::Open));
        // No Retry-After: default with jitter, growing, capped.
        let first = s
            .record(&b, StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new())
            .expect("backoff");
        assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
        // A 503 without Retry-After is an error, not a rate limit.
        assert_eq!(
            s.record(&a, StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()),
            None
        );
        assert_eq!(s.active(), 1);
    }

    fn asking(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_ends_exactly_when_asked_and_one_probe_decides() {
        let s = shield();
        let a = cred("Bearer a");
        let asked = asking("retry-after-ms", "1000");
        assert_eq!(
            s.record(&a, StatusCode::TOO_MANY_REQUESTS, &asked),
            Some(Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(matches!(s.gate(&a).await, Gate::Closed(d) if d == Duration::from_millis(1)));
        tokio::time::advance(Duration::from_millis(1)).await;
        let Gate::Probe(probe) = s.gate(&a).await else {
            panic!("the back-off is over: one probe");
        };
        for _ in 0..9 {
            assert!(
                matches!(s.gate(&a).await, Gate::Closed(d) if d == PROBE_WAIT),
                "the others wait for the probe's verdict"
            );
        }
        // The probe is refused again: a new back-off, and again a single probe after it.
        assert_eq!(
            s.record(&a, StatusCode::TOO_MANY_REQUESTS, &asked),
            Some(Duration::from_secs(1))
        );
        drop(probe);
        assert!(matches!(s.gate(&a).await, Gate::Closed(d) if d == Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let Gate::Probe(probe) = s.gate(&a).await else {
            panic!("a probe after the second back-off");
        };
        assert!(matches!(s.gate(&a).await, Gate::Closed(_)));
        s.record(&a, StatusCode::OK, &HeaderMap::new());
        drop(probe);
        assert!(
            matches!(s.gate(&a).await, Gate::Open),
            "the probe succeeded"
        );
        assert_eq!(s.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_only_grows_doubling_without_retry_after_up_to_the_cap() {
        let s = shield();
        let a = cred("Bearer a");
        let none = HeaderMap::new();
        // Default 1 s, doubled per strike, ±20 %; the cap (60 s) may cut the 7th (64 s ± 20 %)
        // and always cuts the 8th.
        for (strike, base) in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
            .into_iter()
            .enumerate()
        {
            let left = s
                .record(&a, StatusCode::TOO_MANY_REQUESTS, &none)
                .expect("backoff")
                .as_secs_f64();
            assert!(
                left >= base * 0.8 - 1e-6 && left <= base * 1.2 + 1e-6,
                "strike {strike}: {left} s not within 20 % of {base} s"
            );
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        assert_eq!(
            s.record(&a, StatusCode::TOO_MANY_REQUESTS, &none),
            Some(Duration::from_secs(60)),
            "capped at max_retry_after"
        );
        // A shorter Retry-After never shortens the back-off already running.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            s.record(
                &a,
                StatusCode::TOO_MANY_REQUESTS,
                &asking("retry-after", "2")
            ),
            Some(Duration::from_secs(50))
        );
        // A 503 that asks for a pause is a rate limit too.
        let b = cred("Bearer b");
        assert_eq!(
            s.record(
                &b,
                StatusCode::SERVICE_UNAVAILABLE,
                &asking("retry-after", "3")
            ),
            Some(Duration::from_secs(3))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn budget_reserves_and_bounds_waits() {
        let s = shield();
        let a = cred("Bearer a");
        let max = Duration::from_secs(1);
        assert_eq!(s.take_budget(&a, max).await, Ok(Duration::ZERO));
        assert_eq!(s.take_budget(&a, max).await, Ok(Duration::ZERO));
        assert_eq!(s.take_budget(&a, max).await, Ok(Duration::from_millis(500)));
        assert_eq!(s.take_budget(&a, max).await, Ok(Duration::from_secs(1)));
        assert!(s.take_budget(&a, max).await.is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(s.take_budget(&a, max).await, Ok(Duration::ZERO));
    }
}
