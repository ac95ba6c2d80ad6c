//! Running the real `pollgate` binary: its path, a clean environment, free ports.

use std::net::SocketAddr;

/// The binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_pollgate");

/// Every variable the binary reads, removed from its environment so a developer's
/// settings cannot leak into a test.
pub const ENV_VARS: [&str; 9] = [
    "POLLGATE_REDIS_URL",
    "POLLGATE_FLEET_SECRET",
    "POLLGATE_CONFIG",
    "POLLGATE_LISTEN",
    "POLLGATE_UPSTREAM",
    "POLLGATE_ADMIN_LISTEN",
    "POLLGATE_TTL",
    "POLLGATE_LOG_FORMAT",
    "RUST_LOG",
];

/// A loopback address whose port was free a moment ago (bound and released).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
