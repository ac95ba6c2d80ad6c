//! An [`Entry`] as bytes in Redis, and back.
//!
//! Length-prefixed fields after a version tag; the cache key is included and
//! checked on read, so a digest collision or a foreign writer can never serve
//! one page for another. Everything an L1 entry carries travels: status,
//! stored headers, ETag, body, the gzip form with its ETag, the route, the
//! job or batch, the wall-clock fetch time and the terminal flag. A blob that does not decode
//! is a miss, never an error for the client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::cache::{Compressed, Entry};
use crate::key::{CacheKey, ResourceId, ResourceKind};

const VERSION: &[u8; 4] = b"PGE1";

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn put(out: &mut BytesMut, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn encode(key: &CacheKey, entry: &Entry) -> Bytes {
    let gzip = entry.gzip.as_ref().map_or(0, |g| g.body.len());
    let mut out = BytesMut::with_capacity(entry.body.len() + gzip + key.as_str().len() + 256);
    out.extend_from_slice(VERSION);
    put(&mut out, key.as_str().as_bytes());
    out.extend_from_slice(&entry.status.as_u16().to_be_bytes());
    out.extend_from_slice(&wall_ms(entry.fetched_wall).to_be_bytes());
    out.extend_from_slice(&[u8::from(entry.terminal)]);
    put(&mut out, entry.route.as_bytes());
    match &entry.resource {
        None => out.extend_from_slice(&[0]),
        Some(r) => {
            out.extend_from_slice(&[match r.kind {
                ResourceKind::Job => 1,
                ResourceKind::Batch => 2,
            }]);
            put(&mut out, r.id.as_bytes());
        }
    }
    put(&mut out, entry.etag.as_bytes());
    out.extend_from_slice(
        &u16::try_from(entry.headers.len())
            .unwrap_or(0)
            .to_be_bytes(),
    );
    for (name, value) in entry.headers.iter().take(u16::MAX as usize) {
        put(&mut out, name.as_str().as_bytes());
        put(&mut out, value.as_bytes());
    }
    put(&mut out, &entry.body);
    match &entry.gzip {
        Some(g) => {
            out.extend_from_slice(&[1]);
            put(&mut out, g.etag.as_bytes());
            put(&mut out, &g.body);
        }
        None => out.extend_from_slice(&[0]),
    }
    out.freeze()
}

struct Reader {
    data: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        let end = self.at.checked_add(n)?;
        if end > self.data.len() {
            return None;
        }
        let out = self.data.slice(self.at..end);
        self.at = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.as_ref().try_into().ok()
    }

    fn field(&mut self) -> Option<Bytes> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        self.take(len)
    }
}

/// The entry in `data` if it is a well-formed entry for `key`.
pub fn decode(key: &CacheKey, data: Bytes) -> Option<Entry> {
    let mut r = Reader { data, at: 0 };
    if r.take(VERSION.len())?.as_ref() != VERSION {
        return None;
    }
    if r.field()?.as_ref() != key.as_str().as_bytes() {
        return None;
    }
    let status = StatusCode::from_u16(u16::from_be_bytes(r.array()?)).ok()?;
    let fetched_wall = UNIX_EPOCH + Duration::from_millis(u64::from_be_bytes(r.array()?));
    let terminal = r.array::<1>()?[0] == 1;
    let route = super::route_named(std::str::from_utf8(&r.field()?).ok()?)?;
    let kind = match r.array::<1>()?[0] {
        0 => None,
        1 => Some(ResourceKind::Job),
        _ => Some(ResourceKind::Batch),
    };
    let resource = match kind {
        Some(kind) => Some(ResourceId::new(
            kind,
            std::str::from_utf8(&r.field()?).ok()?,
        )),
        None => None,
    };
    let etag = HeaderValue::from_maybe_shared(r.field()?).ok()?;
    let count = u16::from_be_bytes(r.array()?) as usize;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = HeaderName::from_bytes(&r.field()?).ok()?;
        // Copied: a slice would keep the whole blob alive through the header.
        let value = HeaderValue::from_bytes(&r.field()?).ok()?;
        headers.push((name, value));
    }
    let body = r.field()?;
    let gzip = match r.array::<1>()?[0] {
        1 => {
            let etag = HeaderValue::from_maybe_shared(r.field()?).ok()?;
            let body = r.field()?;
            Some(Box::new(Compressed { body, etag }))
        }
        _ => None,
    };
    Some(Entry {
        status,
        headers: headers.into_boxed_slice(),
        body,
        etag,
        gzip,
        route,
        resource,
        fetched_at: Entry::monotonic_from_wall(fetched_wall),
        fetched_wall,
        terminal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FingerprintKey;
    use http::{header, HeaderMap};

    fn key(q: &str) -> CacheKey {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let cred = FingerprintKey::random().credential(&h).expect("cred");
        CacheKey::new(&cred, "items", "job", q, &[], &h)
    }

    #[test]
    fn round_trip_keeps_what_a_hit_needs() {
        let mut e = Entry::for_tests(b"{\"items\":[]}", true);
        e.headers = Box::new([(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )]);
        e.gzip = Some(Box::new(Compressed {
            body: Bytes::from_static(b"gz"),
            etag: Entry::gzip_etag_of(b"{\"items\":[]}"),
        }));
        let k = key("limit=1");
        let blob = encode(&k, &e);
        let d = decode(&k, blob.clone()).expect("decodes");
        assert_eq!(d.status, e.status);
        assert_eq!(d.body, e.body);
        assert_eq!(d.etag, e.etag);
        assert_eq!(d.headers.as_ref(), e.headers.as_ref());
        assert_eq!(d.route, e.route);
        assert_eq!(d.resource, e.resource);
        assert!(d.terminal);
        assert_eq!(wall_ms(d.fetched_wall), wall_ms(e.fetched_wall));
        let g = d.gzip.expect("gzip");
        assert_eq!(g.body, Bytes::from_static(b"gz"));
        assert!(
            decode(&key("limit=2"), blob.clone()).is_none(),
            "another key's page"
        );
        assert!(
            decode(&k, blob.slice(..blob.len() - 1)).is_none(),
            "truncated"
        );
        assert!(decode(&k, Bytes::from_static(b"junk")).is_none());
    }
}
