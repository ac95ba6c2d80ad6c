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
pub struct FingerprintKey {
    secret: [u8; 32],
    /// Tells keys apart in the per-thread memo (several gateways may share a process).
    memo_id: u64,
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

impl FingerprintKey {
    /// A key of this process alone: fingerprints mean nothing to any other process.
    pub fn random() -> Self {
        Self::from_bytes(rand::random())
    }

    /// A key shared by every process that holds the same secret.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        FingerprintKey {
            secret: key,
            memo_id: rand::random(),
        }
    }

    /// The key every gateway of a fleet derives from the shared secret, so they
    /// fingerprint a credential alike (and fleets with other secrets never do).
    pub fn from_fleet_secret(secret: &[u8]) -> Self {
        Self::from_bytes(blake3::derive_key(
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
    ///
    /// Pollers repeat one credential, so the last few fingerprints computed on
    /// this thread are remembered (see [`memo`]): a repeat costs a comparison of
    /// the header bytes instead of a keyed hash.
    pub fn credential(&self, headers: &HeaderMap) -> Option<Credential> {
        let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let mut cookies = headers.get_all(header::COOKIE).iter();
        let cookie = cookies.next().map(|v| v.as_bytes());
        if cookies.next().is_some() {
            // Several Cookie headers: rare enough to compute every time.
            return self.compute(auth, session_cookie(headers));
        }
        if auth.is_none() && cookie.is_none() {
            return None;
        }
        memo::lookup(self.memo_id, auth, cookie).unwrap_or_else(|| {
            let credential = self.compute(auth, session_cookie(headers));
            memo::remember(self.memo_id, auth, cookie, credential);
            credential
        })
    }

    /// The keyed hash itself.
    fn compute(&self, auth: Option<&[u8]>, session: Option<&[u8]>) -> Option<Credential> {
        if auth.is_none() && session.is_none() {
            return None;
        }
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
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

/// The last fingerprints computed on this thread, by the exact header bytes they came from.
///
/// Entries hold the `Authorization` and `Cookie` header bytes so a match is exact (a
/// fingerprint is never given to different bytes). They live in this process's memory
/// only, like the request heads themselves, and never reach a key, a log or a metric.
mod memo {
    use std::cell::RefCell;

    use super::Credential;

    /// Fingerprints remembered per thread: a worker serves a handful of pollers' keys at once.
    const SLOTS: usize = 8;

    struct Slot {
        key: u64,
        auth: Option<Box<[u8]>>,
        cookie: Option<Box<[u8]>>,
        credential: Option<Credential>,
    }

    #[derive(Default)]
    struct Memo {
        slots: Vec<Slot>,
        /// The slot the next new entry replaces.
        next: usize,
    }

    thread_local! {
        static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
    }

    pub(super) fn lookup(
        key: u64,
        auth: Option<&[u8]>,
        cookie: Option<&[u8]>,
    ) -> Option<Option<Credential>> {
        MEMO.with(|m| {
            m.borrow()
                .slots
                .iter()
                .find(|s| {
                    s.key == key && s.auth.as_deref() == auth && s.cookie.as_deref() == cookie
                })
                .map(|s| s.credential)
        })
    }

    pub(super) fn remember(
        key: u64,
        auth: Option<&[u8]>,
        cookie: Option<&[u8]>,
        credential: Option<Credential>,
    ) {
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            let slot = Slot {
                key,
                auth: auth.map(Box::from),
                cookie: cookie.map(Box::from),
                credential,
            };
            if m.slots.len() < SLOTS {
                m.slots.push(slot);
            } else {
                let next = m.next;
                m.slots[next] = slot;
                m.next = (next + 1) % SLOTS;
            }
        });
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

/// Every byte's two lowercase hex digits, one lookup per byte.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    pairs
};

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
        let mut hex = [0u8; 32];
        for (pair, &b) in hex.chunks_exact_mut(2).zip(&self.0) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        // Hex digits are ASCII: always valid UTF-8.
        out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
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
/// once per request in one allocation (the canonical query is written straight
/// into it); cloned only on the miss path.
pub struct CacheKey {
    /// A `String`, not a `Box<str>`: shrinking to fit would cost a reallocation on every
    /// request. A clone (the miss path's copy for storing) is exact-size anyway.
    text: String,
    /// Where the canonical query lies in `text`.
    query: KeyQuery,
}

impl Clone for CacheKey {
    fn clone(&self) -> Self {
        CacheKey {
            text: self.text.as_str().to_owned(),
            query: self.query,
        }
    }
}

/// Where a key's canonical query lies in its text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyQuery(u32, u32);

/// A key is found by its text: the hit path looks one up without owning it.
impl std::borrow::Borrow<str> for CacheKey {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CacheKey {}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl CacheKey {
    /// A key for a query already in canonical form.
    pub fn new(
        credential: &Credential,
        route: &str,
        id: &str,
        query: &str,
        vary: &[HeaderName],
        headers: &HeaderMap,
    ) -> CacheKey {
        let built: Result<CacheKey, std::convert::Infallible> =
            Self::build(credential, route, id, query.len(), vary, headers, |out| {
                out.push_str(query);
                Ok(())
            });
        match built {
            Ok(key) => key,
            Err(never) => match never {},
        }
    }

    /// A key whose canonical query `write_query` appends (it may refuse the query).
    /// `query_hint` sizes the one allocation.
    pub fn build<E>(
        credential: &Credential,
        route: &str,
        id: &str,
        query_hint: usize,
        vary: &[HeaderName],
        headers: &HeaderMap,
        write_query: impl FnOnce(&mut String) -> Result<(), E>,
    ) -> Result<CacheKey, E> {
        // Room for the documented defaults the canonical query adds, and a vary header or two.
        let mut text = String::with_capacity(35 + route.len() + id.len() + query_hint + 48);
        let query = Self::write(&mut text, credential, route, id, vary, headers, write_query)?;
        Ok(CacheKey { text, query })
    }

    /// [`CacheKey::build`]'s text, appended to `text` (a reused buffer: a hit looks its key up
    /// as a `&str` and never owns one); where the canonical query lies in it.
    pub fn write<E>(
        text: &mut String,
        credential: &Credential,
        route: &str,
        id: &str,
        vary: &[HeaderName],
        headers: &HeaderMap,
        write_query: impl FnOnce(&mut String) -> Result<(), E>,
    ) -> Result<KeyQuery, E> {
        // '\n' cannot occur in a path, an encoded query or a header value: an unambiguous separator.
        credential.push_hex(text);
        text.push('\n');
        text.push_str(route);
        text.push('\n');
        text.push_str(id);
        text.push('\n');
        let start = text.len();
        write_query(text)?;
        let end = text.len();
        for name in vary {
            text.push('\n');
            for value in headers.get_all(name) {
                text.push_str(&String::from_utf8_lossy(value.as_bytes()));
                text.push('\u{1}');
            }
        }
        // Keys are bounded by the request head (`server.max_header_bytes`), far below 4 GiB.
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(KeyQuery(offset(start), offset(end)))
    }

    /// The key [`CacheKey::write`] wrote into `text`, owned.
    pub fn from_written(text: &str, query: KeyQuery) -> CacheKey {
        CacheKey {
            text: text.to_owned(),
            query,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical query in the key: exactly what a fill sends upstream.
    pub fn query(&self) -> &str {
        self.text
            .get(self.query.0 as usize..self.query.1 as usize)
            .unwrap_or("")
    }

    /// The route's name, as given to [`CacheKey::new`].
    pub fn route(&self) -> &str {
        self.text.split('\n').nth(1).unwrap_or("")
    }

    /// The job or batch id, as given to [`CacheKey::new`] (empty for a list route).
    pub fn id(&self) -> &str {
        self.text.split('\n').nth(2).unwrap_or("")
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({:?})", self.text)
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
    fn credential_hex_round_trips() {
        let c = Credential([
            0x00, 0x0f, 0xa5, 0xff, 0x10, 0x01, 0x7e, 0x80, 1, 2, 3, 4, 5, 6, 7, 0xee,
        ]);
        let mut hex = String::from(">");
        c.push_hex(&mut hex);
        assert_eq!(hex, ">000fa5ff10017e8001020304050607ee");
        assert_eq!(Credential::from_hex(&hex[1..]), Some(c));
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
    fn the_memo_never_mixes_credentials_or_keys() {
        let (k1, k2) = (FingerprintKey::random(), FingerprintKey::random());
        let a = headers(&[("authorization", "Bearer a")]);
        let b = headers(&[("authorization", "Bearer b")]);
        let a_cookie = headers(&[("authorization", "Bearer a"), ("cookie", "session=s1")]);
        let first = k1.credential(&a);
        for _ in 0..3 {
            assert_eq!(k1.credential(&a), first, "a repeat is the same fingerprint");
        }
        assert_ne!(k1.credential(&b), first);
        assert_ne!(
            k1.credential(&a_cookie),
            first,
            "another cookie, another credential"
        );
        assert_ne!(k2.credential(&a), first, "another key, another fingerprint");
        // More credentials than slots: every one still gets its own fingerprint.
        let many: Vec<HeaderMap> = (0..20)
            .map(|i| {
                let mut h = HeaderMap::new();
                let v = http::HeaderValue::from_str(&format!("Bearer t{i}")).expect("value");
                h.insert("authorization", v);
                h
            })
            .collect();
        let fresh = FingerprintKey::random();
        let once: Vec<_> = many
            .iter()
            .map(|h| fresh.compute(h.get("authorization").map(|v| v.as_bytes()), None))
            .collect();
        for _ in 0..2 {
            let again: Vec<_> = many.iter().map(|h| fresh.credential(h)).collect();
            assert_eq!(again, once);
        }
        assert_eq!(k1.credential(&headers(&[("cookie", "theme=dark")])), None);
    }

    #[test]
    fn token_never_in_key() {
        let key = FingerprintKey::random();
        let h = headers(&[("authorization", "Bearer sk-secret-token")]);
        let cred = key.credential(&h).expect("credential");
        let k = CacheKey::new(&cred, "items", "job", "limit=5", &[], &h);
        assert!(!k.as_str().contains("sk-secret"));
        assert!(!format!("{cred} {cred:?} {k:?}").contains("sk-secret"));
        assert_eq!(k.query(), "limit=5");
        let vary = [HeaderName::from_static("x-tenant")];
        let mut h = h;
        h.insert("x-tenant", http::HeaderValue::from_static("t1"));
        let k2 = CacheKey::new(&cred, "items", "job", "limit=5", &vary, &h);
        assert_eq!(k2.query(), "limit=5", "vary values come after the query");
        assert_ne!(k, k2);
    }
}
