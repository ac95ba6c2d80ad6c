//! `pollgate-sim`: run the simulated LlamaCloud batch API on loopback, e.g. to try pollgate
//! offline or to load-test it without touching the real service.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use pollgate_sim::{
    SimOptions, SimUpstream, BATCH_A, BATCH_A_DONE, BATCH_B, JOB_A, JOB_A_DONE, JOB_B, PROJECT_A,
    PROJECT_B, TOKEN_A, TOKEN_B,
};

#[derive(Debug, Parser)]
#[command(name = "pollgate-sim", version, about)]
struct Cli {
    /// Address to listen on (loopback only unless --allow-non-loopback).
    #[arg(long, env = "POLLGATE_SIM_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Latency added before every response, e.g. `50ms`.
    #[arg(long, env = "POLLGATE_SIM_LATENCY", default_value = "0s", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Items in the seeded running job of tenant A, and results in its running batch.
    #[arg(long, env = "POLLGATE_SIM_ITEMS_PER_JOB", default_value_t = 2500)]
    items_per_job: usize,
    /// Move every unfinished v2 batch one step (PENDING → RUNNING → COMPLETED) per this
    /// interval, e.g. `2s`. Without it batches change only through /_sim.
    #[arg(long, env = "POLLGATE_SIM_BATCH_STEP", value_parser = humantime::parse_duration)]
    batch_step: Option<Duration>,
    /// Allow listening on a non-loopback address (the sim has no real security).
    #[arg(long, env = "POLLGATE_SIM_ALLOW_NON_LOOPBACK")]
    allow_non_loopback: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    if !cli.listen.ip().is_loopback() && !cli.allow_non_loopback {
        bail!(
            "refusing to listen on non-loopback address {} (pass --allow-non-loopback to override)",
            cli.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "pollgate-sim listening on http://{addr} | tenant A: {TOKEN_A} (project {PROJECT_A}; jobs {JOB_A}, {JOB_A_DONE}; batches {BATCH_A}, {BATCH_A_DONE}) | tenant B: {TOKEN_B} (project {PROJECT_B}; job {JOB_B}; batch {BATCH_B})"
    );
    let sim = SimUpstream::new(SimOptions {
        latency: cli.latency,
        items_per_job: cli.items_per_job,
    });
    sim.set_batch_step(cli.batch_step.filter(|d| !d.is_zero()));
    sim.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
