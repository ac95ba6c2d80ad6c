//! The two body types a response can carry, without boxing.
//!
//! A response is either streamed straight from the upstream ([`Incoming`]) or
//! built from bytes pollgate already holds (a cache entry, an error). `Either`
//! keeps both on the stack: no allocation and no dynamic dispatch per hit.

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;

/// Body of every response pollgate sends to a client.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Body of every request pollgate sends upstream: the client's, streamed, or none.
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// A complete body from bytes pollgate holds (shared, never copied).
pub fn full(bytes: Bytes) -> ResponseBody {
    Either::Right(Full::new(bytes))
}

/// A streamed upstream body relayed as is.
pub fn streamed(body: Incoming) -> ResponseBody {
    Either::Left(body)
}

pub fn empty_request() -> UpstreamBody {
    Either::Right(Empty::new())
}
