//! The edge of the gateway, end to end on 127.0.0.1 with real sockets: TLS termination (ALPN,
//! mTLS, handshake timeout, certificate reloads), configuration reloads, the admin token, the
//! real binary's SIGHUP, and the operations kit (dashboard and alert rules checked against a
//! live gateway's metrics).
//!
//! One test binary with a module per concern. Run one with `cargo test --test edge tls::`.

#[path = "../common/mod.rs"]
mod common;

mod admin_auth;
mod gateway;
mod https;
mod ops;
mod pki;
mod process;
mod reload;
mod tls;
