//! Reading the gateway's Prometheus text from its admin listener.

use std::cell::Cell;
use std::time::Duration;

use super::{wait_for, Harness};

/// Value of the first sample whose line starts with `prefix`.
pub fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sum of the samples whose line starts with `prefix` and contains every one of `labels`.
pub fn metric_sum(text: &str, prefix: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Poll an admin metric until it reaches `want` (bounded); returns the last value seen.
pub async fn metric_reaches(h: &Harness, name: &str, want: f64, limit: Duration) -> f64 {
    let last = &Cell::new(0.0);
    wait_for(limit, move || async move {
        let v = h.metric(name).await;
        last.set(v);
        v >= want
    })
    .await;
    last.get()
}
