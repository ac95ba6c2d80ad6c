//! Credential fingerprints, cache keys and the resources pages belong to: tenancy by construction.
//!
//! A cache key always starts with the fingerprint of the credential that
//! fetched the entry, so one tenant's pages can never be found by another's
//! request, and the coalescing map is keyed the same way, so in-flight fetches
//! are never shared across credentials either. The fingerprint is a keyed
//! BLAKE3 hash whose key the caller supplies (random per process unless a fleet
//! shares one): tokens never appear in keys, logs or metrics, and fingerprints
//! cannot be precomputed offline.

use std::fmt;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderName};

/// Secret key of the credential hash, drawn once per process.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

impl FingerprintKey {
    /// A key of this process alone: fingerprints mean nothing to any other process.
    pub fn random() -> Self {
        FingerprintKey(rand::random())
    }

    /// A key shared by every process that holds the same secret.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        FingerprintKey(key)
    }

    /// The key every gateway of a fleet derives from the shared secret, so they
    /// fingerprint a credential alike (and fleets with other secrets never do).
    pub fn from_fleet_secret(secret: &[u8]) -> Self {
        FingerprintKey(blake3::derive_key(
            "pollgate 2026 fleet credential fingerprint key",
            secret,
        ))
    }

    /// The fleet's key with `[fleet]`, else a random one for this process.
    pub fn for_config(config: &crate::config::Config) -> Self {
        match (&config.fleet.redis_url, &config.fleet.secret) {
            (Some(_), Some(secret)) => Self::from_fleet_secret(secret.as_bytes()),
            _ => Self::random(),
        }
    }

    /// The fingerprint of the request's credential: its `Authorization` header
    /// and its `session` cookie. `None` when it has neither.
    pub fn credential(&self, headers: &HeaderMap) -> Option<Credential> {
        let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let session = session_cookie(headers);
        if auth.is_none() && session.is_none() {
            return None;
        }
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        // Length-prefix each part so ("ab", "") and ("a", "b") differ.
        for part in [auth, session] {
            match part {
                Some(bytes) => {
                    hasher.update(&[1]);
                    hasher.update(&(bytes.len() as u64).to_le_bytes());
                    hasher.update(bytes);
                }
                None => {
                    hasher.update(&[0]);
                }
            }
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        Some(Credential(id))
    }
}

/// The value of the `session` cookie, across every `Cookie` header.
pub fn session_cookie(headers: &HeaderMap) -> Option<&[u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (name, value) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
            (name == b"session").then(|| &value[1..])
        })
}

/// A credential's fingerprint: 128 bits of a keyed hash. `Display` is hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credential([u8; 16]);

impl Credential {
    /// A fingerprint from its 32 hex digits (as another gateway of the fleet sent it).
    pub fn from_hex(hex: &str) -> Option<Credential> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            id[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
        }
        Some(Credential(id))
    }

    /// Append the fingerprint as 32 lowercase hex digits (no formatting machinery: this is on the hit path).
    pub fn push_hex(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = String::with_capacity(32);
        self.push_hex(&mut hex);
        f.write_str(&hex)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({self})")
    }
}

/// What a job or batch id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Job,
    Batch,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Job => "job",
            ResourceKind::Batch => "batch",
        }
    }
}

/// The job or batch a cached page belongs to, for purges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    pub kind: ResourceKind,
    /// Exactly as in the path.
    pub id: Arc<str>,
}

impl ResourceId {
    pub fn new(kind: ResourceKind, id: &str) -> Self {
        ResourceId {
            kind,
            id: Arc::from(id),
        }
    }
}

/// Identity of one cacheable response: credential, route, job or batch id,
/// canonical query and the values of the configured `vary_headers`. Built
/// once per request without a second copy; cloned only on the miss path.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Box<str>);

impl CacheKey {
    pub fn new(
        credential: &Credential,
        route: &str,
        id: &str,
        query: &str,
        vary: &[HeaderName],
        headers: &HeaderMap,
    ) -> CacheKey {
        let mut text = String::with_capacity(36 + route.len() + id.len() + query.len());
        // '\n' cannot occur in a path, an encoded query or a header value: an unambiguous separator.
        credential.push_hex(&mut text);
        text.push('\n');
        text.push_str(route);
        text.push('\n');
        text.push_str(id);
        text.push('\n');
        text.push_str(query);
        for name in vary {
            text.push('\n');
            for value in headers.get_all(name) {
                text.push_str(&String::from_utf8_lossy(value.as_bytes()));
                text.push('\u{1}');
            }
        }
        CacheKey(text.into_boxed_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The route's name, as given to [`CacheKey::new`].
    pub fn route(&self) -> &str {
        self.0.split('\n').nth(1).unwrap_or("")
    }

    /// The job or batch id, as given to [`CacheKey::new`] (empty for a list route).
    pub fn id(&self) -> &str {
        self.0.split('\n').nth(2).unwrap_or("")
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn credential_sources() {
        let key = FingerprintKey::random();
        assert!(key.credential(&headers(&[])).is_none());
        assert!(key.credential(&headers(&[("cookie", "other=1")])).is_none());
        let a = key.credential(&headers(&[("authorization", "Bearer a")]));
        let b = key.credential(&headers(&[("authorization", "Bearer b")]));
        let s = key.credential(&headers(&[("cookie", "x=1; session=Bearer a")]));
        assert!(a.is_some() && b.is_some() && s.is_some());
        assert_ne!(a, b);
        assert_ne!(
            a, s,
            "a header and a cookie with the same text are different credentials"
        );
        let again = key.credential(&headers(&[
            ("authorization", "Bearer a"),
            ("cookie", "theme=dark"),
        ]));
        assert_eq!(a, again, "unrelated cookies do not split the credential");
        let other_process =
            FingerprintKey::random().credential(&headers(&[("authorization", "Bearer a")]));
        assert_ne!(a, other_process);
        let h = headers(&[("authorization", "Bearer a")]);
        let fleet = |s: &[u8]| FingerprintKey::from_fleet_secret(s).credential(&h);
        assert_eq!(
            fleet(&[7; 32]),
            fleet(&[7; 32]),
            "one secret, one fingerprint"
        );
        assert_ne!(
            fleet(&[7; 32]),
            fleet(&[8; 32]),
            "other secrets never share"
        );
        let a = a.expect("cred");
        assert_eq!(Credential::from_hex(&a.to_string()), Some(a));
        assert_eq!(Credential::from_hex("zz"), None);
    }

    #[test]
    fn token_never_in_key() {
        let key = FingerprintKey::random();
        let h = headers(&[("authorization", "Bearer sk-secret-token")]);
        let cred = key.credential(&h).expect("credential");
        let k = CacheKey::new(&cred, "items", "job", "limit=5", &[], &h);
        assert!(!k.as_str().contains("sk-secret"));
        assert!(!format!("{cred} {cred:?} {k:?}").contains("sk-secret"));
    }
}
