//! pollgate: a caching gateway for LlamaCloud's batch-processing polling API.
//!
//! Clients (the official SDK, dashboards, workers) use pollgate as their base
//! URL. A request travels:
//! 1. [`server`] accepts it (connection limit, header timeout and size bound)
//!    and hands it, with its [`conn::ConnInfo`], to the flow;
//! 2. [`proxy`] routes it: a `GET`/`HEAD` matching an entry of the [`route`]
//!    table (v1 items and job status, v2 batch and batch list) is cacheable,
//!    everything else is relayed as is;
//! 3. the route's query schema validates the query (422 at the edge) and
//!    canonicalizes it; [`key`] keys it by the credential's fingerprint, the
//!    route, the job or batch id and the query;
//! 4. [`cache`] answers from memory, or one detached fill per key goes
//!    upstream through [`upstream`], gated per credential by [`shield`];
//! 5. [`outcome`] names how the request was answered (the `Cache-Status`
//!    header and the metrics label both derive from it); [`error`] is the one
//!    place errors become responses; [`metrics`] and the [`admin`] API expose
//!    what happened.
//!
//! [`app`] wires the gateway and the admin API to their listeners;
//! [`shutdown`] is the one signal that stops them.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod conn;
pub mod error;
pub mod fleet;
pub mod jobs;
pub mod key;
pub mod metrics;
pub mod outcome;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod server;
pub mod shield;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use app::App;
pub use config::Config;
pub use proxy::Gateway;
