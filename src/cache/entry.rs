//! A cached response and what it knows about itself.
//!
//! Everything a hit needs is prepared once, when the entry is made: the
//! headers to send (with a strong `ETag`) and the body as shared [`Bytes`].
//! A hit then clones two reference counts and formats two small headers.
//!
//! An entry holds facts, not verdicts: when it was fetched, on the monotonic
//! clock the hot path reads and on the wall clock another process can read,
//! and whether its job was finished. [`super::policy`] turns those into
//! fresh or stale at read time.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;

use crate::key::ResourceId;

/// One upstream response held by pollgate (stored, or only shared by coalesced waiters).
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    /// Headers sent with every copy of this response (never hop-by-hop, never `Set-Cookie`
    /// when stored). A boxed slice, not a `HeaderMap`: a map's index and spare buckets
    /// would cost more than half a kilobyte per cached page.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
    pub body: Bytes,
    /// Strong validator of the body; also how long-polls see that content changed.
    pub etag: HeaderValue,
    /// The same body gzip-compressed, made once at store time for large pages and
    /// served to clients that accept gzip (the official SDK does). Boxed: small
    /// pages have none and should not pay its size in every entry.
    pub gzip: Option<Box<Compressed>>,
    /// The route that answered it (a purge may drop a whole route, e.g. every list page).
    pub route: &'static str,
    /// The job or batch this page belongs to, for purges.
    pub resource: Option<ResourceId>,
    /// When the upstream's answer was complete, on the monotonic clock (age, freshness).
    pub fetched_at: Instant,
    /// The same moment on the wall clock, so another process can compute the same age.
    pub fetched_wall: SystemTime,
    /// The response says (or the job was known to be) finished: the longer TTL applies.
    pub terminal: bool,
}

/// A compressed representation of an entry's body, with its own strong ETag
/// (RFC 9110 §8.8.3: representations that differ in bytes differ in tag).
#[derive(Debug)]
pub struct Compressed {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Entry {
    /// The strong ETag of a body: 128 bits of BLAKE3, quoted.
    pub fn etag_of(body: &[u8]) -> HeaderValue {
        Self::tag(body, "")
    }

    /// The ETag of the gzip representation of `body`: the identity tag with a suffix.
    pub fn gzip_etag_of(body: &[u8]) -> HeaderValue {
        Self::tag(body, "-gzip")
    }

    fn tag(body: &[u8], suffix: &str) -> HeaderValue {
        let hash = blake3::hash(body);
        let mut text = String::with_capacity(34 + suffix.len());
        text.push('"');
        for b in &hash.as_bytes()[..16] {
            text.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            text.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
        }
        text.push_str(suffix);
        text.push('"');
        // Hex digits, a fixed suffix and quotes are always a valid header value.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"0\""))
    }

    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.fetched_at)
    }

    /// The monotonic instant matching a wall-clock fetch time (an entry made by
    /// another process): now, minus how long ago that was on the wall clock.
    pub fn monotonic_from_wall(fetched_wall: SystemTime) -> Instant {
        let ago = SystemTime::now()
            .duration_since(fetched_wall)
            .unwrap_or(Duration::ZERO);
        let now = Instant::now();
        now.checked_sub(ago).unwrap_or(now)
    }

    /// Bytes this entry holds, for the cache's byte capacity.
    pub fn weight(&self, key_len: usize) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 64)
            .sum();
        let gzip = self.gzip.as_ref().map_or(0, |g| g.body.len() + 64);
        let total = self.body.len() + gzip + headers + key_len + std::mem::size_of::<Entry>() + 64;
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// True when `If-None-Match` names this entry, in either representation
    /// (weak comparison, RFC 9110 §13.1.2).
    pub fn matches(&self, if_none_match: &HeaderValue) -> bool {
        let list = if_none_match.as_bytes();
        etag_list_matches(list, self.etag.as_bytes())
            || self
                .gzip
                .as_ref()
                .is_some_and(|g| etag_list_matches(list, g.etag.as_bytes()))
    }
}

/// Does an `If-None-Match` list contain `etag` (or `*`)? `W/` prefixes are ignored.
pub fn etag_list_matches(list: &[u8], etag: &[u8]) -> bool {
    list.split(|b| *b == b',').any(|candidate| {
        let c = candidate.trim_ascii();
        let c = c.strip_prefix(b"W/").unwrap_or(c);
        c == b"*" || c == etag
    })
}

#[cfg(test)]
use crate::key::ResourceKind;

#[cfg(test)]
impl Entry {
    /// A small stored page fetched now.
    pub fn for_tests(body: &'static [u8], terminal: bool) -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: Box::new([]),
            body: Bytes::from_static(body),
            etag: Entry::etag_of(body),
            gzip: None,
            route: "items",
            resource: Some(ResourceId::new(ResourceKind::Job, "job")),
            fetched_at: Instant::now(),
            fetched_wall: SystemTime::now(),
            terminal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching() {
        let tag = Entry::etag_of(b"body");
        let t = tag.as_bytes();
        assert!(etag_list_matches(t, t));
        assert!(etag_list_matches(b"*", t));
        let list = [b"\"x\", W/".as_slice(), t].concat();
        assert!(etag_list_matches(&list, t));
        assert!(!etag_list_matches(b"\"x\"", t));
        assert_ne!(Entry::etag_of(b"body"), Entry::etag_of(b"body2"));
        assert_ne!(Entry::etag_of(b"body"), Entry::gzip_etag_of(b"body"));
    }
}
