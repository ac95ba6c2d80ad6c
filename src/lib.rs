//! pollgate: a caching gateway for LlamaCloud's batch-processing item lists.
//!
//! Clients (the official SDK, dashboards, workers) use pollgate as their base
//! URL. A request travels:
//! 1. [`server`] accepts it (connection limit, header timeout and size bound);
//! 2. [`proxy`] routes it: `GET|HEAD /api/v1/beta/batch-processing/{job}/items`
//!    is the cacheable route, everything else is relayed by
//!    [`proxy::passthrough`];
//! 3. [`items`] validates the query (422 at the edge), canonicalizes it and
//!    builds a key from the credential's fingerprint, the job and the query;
//! 4. [`cache`] answers from memory, or one detached fill per key
//!    ([`cache::flight`], [`proxy::fill`]) goes upstream through
//!    [`upstream`], gated per credential by [`shield`];
//! 5. [`error`] is the one place errors become responses; [`metrics`] and the
//!    [`admin`] listener expose what happened.

pub mod admin;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod items;
pub mod jobs;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod shield;
pub mod telemetry;
pub mod upstream;

pub use config::Config;
pub use proxy::Gateway;
