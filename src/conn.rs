//! What the request flow knows about the client connection a request came on.
//!
//! The accept loop fills this in; the flow uses it for `X-Forwarded-For` and
//! `X-Forwarded-Proto`. Keeping it a plain value (not hyper's connection types)
//! lets benches and tests drive the flow without a socket.

use std::net::SocketAddr;

/// The transport the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The client connection of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address; `None` when the flow is driven without a socket.
    pub peer: Option<SocketAddr>,
    pub scheme: Scheme,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, scheme: Scheme) -> Self {
        ConnInfo {
            peer: Some(peer),
            scheme,
        }
    }

    /// A request with no socket behind it (benches, in-process tests).
    pub fn local() -> Self {
        ConnInfo {
            peer: None,
            scheme: Scheme::Http,
        }
    }
}
