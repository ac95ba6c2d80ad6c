//! Where everything lives in Redis: one namespace, one hash tag per cached page.
//!
//! A page's entry, its fill lease, its fencing counter, the answer of its last
//! unstorable fetch and its notification channel all carry the same hash tag
//! (`{` the page's digest `}`), so in a Redis Cluster they share one slot and
//! every per-page script touches one slot. The page digest is a BLAKE3 hash of
//! the cache key, whose first part is the credential's keyed fingerprint:
//! neither tokens nor fingerprints' inputs appear in Redis key names, and
//! gateways with different fleet secrets compute different names for the same
//! request, so they can never read each other's pages.

use crate::key::{CacheKey, Credential};

/// The Redis names of one cached page.
#[derive(Debug, Clone)]
pub struct PageKeys {
    /// A hash: `data` (the encoded entry), `fence`, `at`, `term`, and the epochs it was stored under.
    pub entry: String,
    /// The fill lease; its value is the holder's fencing token.
    pub lease: String,
    /// Source of fencing tokens (INCR).
    pub counter: String,
    /// The last fetch's answer when it was not storable (401, 404, 429, 5xx), for the holder's remote waiters.
    pub answer: String,
    /// Pub/sub channel announcing that the page was stored or its lease released.
    pub channel: String,
}

/// The fleet's namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

/// 128 bits of BLAKE3, in hex: names that cannot collide in practice and cannot contain braces.
fn digest(text: &[u8]) -> String {
    hex(&blake3::hash(text).as_bytes()[..16])
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn page(&self, key: &CacheKey) -> PageKeys {
        let tag = format!("{}:{{{}}}", self.prefix, digest(key.as_str().as_bytes()));
        PageKeys {
            entry: format!("{tag}:e"),
            lease: format!("{tag}:l"),
            counter: format!("{tag}:t"),
            answer: format!("{tag}:a"),
            channel: format!("{tag}:n"),
        }
    }

    /// Bumped by a purge of everything.
    pub fn epoch_all(&self) -> String {
        format!("{}:epoch:all", self.prefix)
    }

    /// Bumped by a purge of one resource (a job, a batch).
    pub fn epoch_resource(&self, resource: &str) -> String {
        format!("{}:epoch:r:{}", self.prefix, digest(resource.as_bytes()))
    }

    /// Bumped by a purge of one route.
    pub fn epoch_route(&self, route: &str) -> String {
        format!("{}:epoch:o:{}", self.prefix, digest(route.as_bytes()))
    }

    /// Counts purges fleet-wide, so a gateway that missed messages can tell.
    pub fn purge_seq(&self) -> String {
        format!("{}:purges", self.prefix)
    }

    /// Fleet-wide purges and back-offs.
    pub fn control_channel(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// A credential's request budget (GCRA theoretical arrival time).
    pub fn budget(&self, credential: &Credential) -> String {
        format!("{}:{{c{credential}}}:budget", self.prefix)
    }

    /// The one fleet-wide probe of a credential whose back-off just ended.
    pub fn probe(&self, credential: &Credential) -> String {
        format!("{}:{{c{credential}}}:probe", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FingerprintKey;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn a_page_lives_in_one_slot_and_names_no_secret() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-secret"),
        );
        let cred = FingerprintKey::random().credential(&h).expect("cred");
        let key = CacheKey::new(&cred, "items", "job-1", "limit=5", &[], &h);
        let p = Keys::new("pg").page(&key);
        let tag = |k: &str| {
            let open = k.find('{').expect("tag");
            let close = k.find('}').expect("tag");
            k[open..=close].to_owned()
        };
        let t = tag(&p.entry);
        for k in [&p.lease, &p.counter, &p.answer, &p.channel] {
            assert_eq!(tag(k), t);
        }
        assert!(p.entry.starts_with("pg:{"));
        for k in [&p.entry, &p.lease] {
            assert!(
                !k.contains("sk-secret") && !k.contains("job-1") && !k.contains(&cred.to_string())
            );
        }
    }
}
