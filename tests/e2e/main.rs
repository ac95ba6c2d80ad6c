//! End-to-end tests of the gateway, one module per feature: real servers on 127.0.0.1
//! ephemeral ports (the gateway and `pollgate-sim`), and assertions on statuses, bodies and
//! what reached the upstream.
//!
//! One test binary, not one per file: every file directly in `tests/` is a crate of its own,
//! compiled and linked on its own. Ten of them took about four times as long to rebuild as this
//! one, and one test harness keeps both cores busy where ten run one after the other.
//! Run one feature with `cargo test --test e2e caching::`.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod caching;
mod coalescing;
mod fleet;
mod fleet_failures;
mod fleet_shield;
mod freshness;
mod long_poll;
mod passthrough;
mod routes;
mod server;
mod shielding;
mod tenancy;
mod validation;
