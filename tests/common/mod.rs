//! Shared by the end-to-end tests: a real simulated upstream and a real gateway on 127.0.0.1
//! ephemeral ports, a client for both, and bounded waits on conditions.
//!
//! One module per concern: [`harness`] starts the servers, [`binary`] runs the real binary, [`client`] talks to them,
//! [`upstream`] counts what reached the simulated upstream, [`metrics`] reads the admin
//! metrics, [`wait`] waits on conditions with a bound, [`gate`] holds upstream traffic until
//! the test lets it through, [`logs`] captures the gateway's log lines; [`redis`] runs a
//! private `redis-server` and [`fleet`] several gateways sharing it. Everything is
//! re-exported here, so a test file needs only `mod common; use common::*;`.
//! Each test binary uses a part of this, hence the `allow`s.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod client;
pub mod fleet;
pub mod gate;
pub mod harness;
pub mod logs;
pub mod metrics;
pub mod redis;
pub mod upstream;
pub mod wait;

pub use binary::*;
pub use client::*;
pub use gate::*;
pub use harness::*;
pub use logs::*;
pub use metrics::*;
pub use upstream::*;
pub use wait::*;

pub use pollgate_sim::{Fault, FaultRule, JobStatus, JOB_A, JOB_A_DONE, JOB_B, TOKEN_A, TOKEN_B};

/// The item-list API's prefix.
pub const ITEMS: &str = "/api/v1/beta/batch-processing";

/// The cacheable route of `job`, with `query` when not empty.
pub fn items_path(job: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{ITEMS}/{job}/items")
    } else {
        format!("{ITEMS}/{job}/items?{query}")
    }
}

/// The `Authorization` value of a bearer token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub const fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

pub const fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}
