//! Shielding shared by a fleet: one back-off, one probe and one budget per credential, fleet-wide.
//!
//! - A back-off a gateway starts (after a 429) is announced on the fleet's
//!   control channel; every gateway applies it locally within a pub/sub hop,
//!   and the probe that ends it is claimed in Redis (`SET NX PX`), so one
//!   request probes the upstream for the whole fleet. The probe's verdict is
//!   announced too: a clear ends everyone's back-off, a new 429 extends it.
//! - `upstream.max_requests_per_second` is a GCRA in a Lua script keyed by
//!   the credential's fingerprint, on Redis's clock, so N gateways share one
//!   budget instead of having N.
//!
//! Whenever Redis does not answer, [`super::Shield`] uses its local state:
//! a back-off and a budget per gateway, as a single gateway has.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use crate::fleet::{Fleet, FleetError};
use crate::key::Credential;

/// GCRA: KEYS[1] the credential's theoretical arrival time (µs, Redis clock).
/// ARGV: emission interval µs, burst tolerance µs, longest acceptable wait µs.
/// Returns {1, wait µs} (reserved) or {0, wait µs} (over budget, nothing reserved).
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return {0, wait} end
local new = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1000)
return {1, wait}
"#,
    )
});

/// What another gateway said about a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Back off until then (wall clock).
    Backoff(Credential, SystemTime),
    /// The probe passed: the back-off is over.
    Clear(Credential),
}

impl Remote {
    fn to_wire(self) -> String {
        match self {
            Remote::Backoff(c, until) => {
                let ms = until
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                format!("backoff {c} {ms}")
            }
            Remote::Clear(c) => format!("clear {c}"),
        }
    }

    pub fn from_wire(text: &str) -> Option<Remote> {
        let mut parts = text.split(' ');
        match (parts.next()?, parts.next()?, parts.next()) {
            ("backoff", c, Some(ms)) => Some(Remote::Backoff(
                Credential::from_hex(c)?,
                UNIX_EPOCH + Duration::from_millis(ms.parse().ok()?),
            )),
            ("clear", c, None) => Some(Remote::Clear(Credential::from_hex(c)?)),
            _ => None,
        }
    }
}

pub struct FleetShield {
    pub(super) fleet: Arc<Fleet>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl FleetShield {
    /// Take one request from the credential's fleet-wide budget (see [`super::Shield::take_budget`]).
    pub async fn take_budget(
        &self,
        credential: &Credential,
        rate: f64,
        max_wait: Duration,
    ) -> Result<Result<Duration, Duration>, FleetError> {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let burst = rate.max(1.0);
        let tolerance = interval.mul_f64(burst - 1.0);
        let key = self.fleet.keys().budget(credential);
        let (ok, wait) = self
            .fleet
            .call(|mut c| async move {
                GCRA.key(key)
                    .arg(micros(interval))
                    .arg(micros(tolerance))
                    .arg(micros(max_wait))
                    .invoke_async::<(i64, i64)>(&mut c)
                    .await
            })
            .await?;
        let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        Ok(if ok == 1 { Ok(wait) } else { Err(wait) })
    }

    /// Claim the one fleet-wide probe of `credential` for `hold`. `Ok(false)`: another gateway probes.
    pub async fn claim_probe(
        &self,
        credential: &Credential,
        hold: Duration,
    ) -> Result<bool, FleetError> {
        let key = self.fleet.keys().probe(credential);
        let origin = self.fleet.origin().to_owned();
        let ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
        self.fleet
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(origin)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await
            .map(|set| set.is_some())
    }

    /// Tell the fleet, without holding up the caller.
    pub fn announce(&self, what: Remote) {
        let fleet = self.fleet.clone();
        tokio::spawn(async move {
            if let Err(e) = fleet.publish_control(&what.to_wire()).await {
                tracing::debug!(error = %e, "back-off not shared with the fleet");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FingerprintKey;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn messages_travel() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer a"));
        let c = FingerprintKey::random().credential(&h).expect("cred");
        let until = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for m in [Remote::Backoff(c, until), Remote::Clear(c)] {
            assert_eq!(Remote::from_wire(&m.to_wire()), Some(m));
        }
        assert_eq!(Remote::from_wire("backoff nothex 1"), None);
        assert_eq!(Remote::from_wire("purge 1 all"), None);
    }
}
