//! The body types pollgate sends, without boxing on the hit path.
//!
//! A response is either streamed straight from the upstream ([`Incoming`]) or
//! built from bytes pollgate already holds (a cache entry, an error). `Either`
//! keeps both on the stack: no allocation and no dynamic dispatch per hit.
//! Request bodies relayed upstream come from any client transport, so they are
//! boxed once per passthrough request (never on the cached routes).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::{Body, Incoming};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response pollgate sends to a client.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Body of every request pollgate sends upstream: the client's, streamed, or none.
pub type UpstreamBody = Either<UnsyncBoxBody<Bytes, BoxError>, Empty<Bytes>>;

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

/// A client's request body, relayed upstream as it streams in.
pub fn relayed<B>(body: B) -> UpstreamBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Either::Left(body.map_err(Into::into).boxed_unsync())
}
