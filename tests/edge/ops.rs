//! The operations kit (`deploy/`), checked against a live gateway: every PromQL expression of
//! the Grafana dashboard and of the alert rules may name only metrics the gateway exports,
//! only labels those metrics carry (or the scrape's `job` and `instance`), and only values of
//! `result` and `reason` that exist. A renamed metric or label fails here, not on a dashboard.
//! (`.ci/run` also runs `promtool check rules` on the rules.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use http::Method;

use super::gateway::Edge;
use super::pki::TempDir;
use crate::common::*;

/// Labels Prometheus adds at scrape time, and the histogram bucket bound.
const SCRAPE_LABELS: [&str; 3] = ["job", "instance", "le"];
/// Labels whose every value is exported from the start, so a value can be checked too.
const CLOSED_LABELS: [&str; 2] = ["result", "reason"];

/// Sample name → label name → values seen.
type Exported = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn exported(text: &str) -> Exported {
    let mut out = Exported::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        let labels = out.entry(name.to_owned()).or_default();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.split('}').next()) {
            for (k, v) in matchers(inner) {
                labels.entry(k).or_default().insert(v);
            }
        }
    }
    out
}

/// `a="x",b=~"y|z"` → (label, value) pairs (the operator dropped).
fn matchers(inner: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let Some(op) = rest.find(['=', '!']) else {
            break;
        };
        let label = rest[..op].trim().to_owned();
        let Some(open) = rest.find('"') else {
            break;
        };
        let value_start = open + 1;
        let Some(len) = rest[value_start..].find('"') else {
            break;
        };
        out.push((label, rest[value_start..value_start + len].to_owned()));
        rest = rest[value_start + len + 1..].trim_start_matches([',', ' ']);
    }
    out
}

/// Operator keywords, and aggregations (which may be followed by `by (..)` before their `(`).
const KEYWORDS: [&str; 22] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "group",
];

/// What one expression refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Metric name → its matchers (label, value).
    selectors: Vec<(String, Vec<(String, String)>)>,
    /// Labels named in `by (..)`, `without (..)`, `on (..)`, `ignoring (..)`.
    grouping: BTreeSet<String>,
}

fn refs(expr: &str) -> Refs {
    let expr = expr
        .replace("$__rate_interval", "5m")
        .replace("$job", ".*")
        .replace("$instance", ".*");
    let b = expr.as_bytes();
    let mut r = Refs::default();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1 + expr[i + 1..].find('"').map_or(b.len(), |n| n + 1);
            }
            b'[' => {
                i += expr[i..].find(']').map_or(b.len(), |n| n + 1);
            }
            b'{' => {
                // A selector without a name: `{__name__=..}`; not used by the kit.
                let end = expr[i..].find('}').map_or(b.len(), |n| i + n);
                r.selectors
                    .push((String::new(), matchers(&expr[i + 1..end])));
                i = end + 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
                let next = b.get(j).copied();
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word)
                    && next == Some(b'(')
                {
                    let end = expr[j..].find(')').map_or(b.len(), |n| j + n);
                    for label in expr[j + 1..end].split(',') {
                        let label = label.trim();
                        if !label.is_empty() {
                            r.grouping.insert(label.to_owned());
                        }
                    }
                    i = end + 1;
                } else if next == Some(b'(') || KEYWORDS.contains(&word) {
                    // A function or an operator keyword.
                } else if next == Some(b'{') {
                    let end = expr[j..].find('}').map_or(b.len(), |n| j + n);
                    r.selectors
                        .push((word.to_owned(), matchers(&expr[j + 1..end])));
                    i = end + 1;
                } else if !word.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    r.selectors.push((word.to_owned(), Vec::new()));
                }
            }
            _ => i += 1,
        }
    }
    r
}

/// Every problem with `expr` against what the gateway exports.
fn problems(expr: &str, exported: &Exported) -> Vec<String> {
    let r = refs(expr);
    let mut out = Vec::new();
    let mut labels_here: BTreeSet<&str> = SCRAPE_LABELS.into_iter().collect();
    for (metric, matchers) in &r.selectors {
        if metric.is_empty() {
            continue;
        }
        let Some(labels) = exported.get(metric) else {
            out.push(format!("`{metric}` is not exported"));
            continue;
        };
        labels_here.extend(labels.keys().map(String::as_str));
        for (label, value) in matchers {
            if SCRAPE_LABELS.contains(&label.as_str()) {
                continue;
            }
            let Some(values) = labels.get(label) else {
                out.push(format!("`{metric}` has no label `{label}`"));
                continue;
            };
            if CLOSED_LABELS.contains(&label.as_str()) {
                for v in value.split('|') {
                    if !values.contains(v) {
                        out.push(format!("`{metric}{{{label}}}` has no value `{v}`"));
                    }
                }
            }
        }
    }
    for label in &r.grouping {
        if !labels_here.contains(label.as_str()) {
            out.push(format!(
                "grouping by `{label}`, which no metric here carries"
            ));
        }
    }
    out
}

fn dashboard_exprs(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["definition"].as_str() {
            // label_values(metric{..}, label)
            let inner = q.trim_start_matches("label_values(").trim_end_matches(')');
            let (selector, label) = inner.rsplit_once(',').expect("label_values(m, l)");
            exprs.push(format!("sum by ({}) ({selector})", label.trim()));
        }
    }
    exprs
}

/// Every `expr:` of the rules file: one line, or a `|`/`>` block of more-indented lines.
fn rule_exprs(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("rules");
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some((indent, value)) = line.split_once("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let depth = indent.len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > depth)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            exprs.push(value.trim_matches(['\'', '"']).to_owned());
        }
    }
    exprs
}

#[tokio::test]
async fn dashboard_and_alerts_name_only_exported_metrics_and_labels() {
    let e = Edge::start(TempDir::new("ops"), "").await;
    // Traffic, so that series created on first use exist (upstream statuses).
    let url = format!("http://{}{}", e.addr, items_path(JOB_A, "limit=5"));
    let auth = bearer(TOKEN_A);
    let r = e
        .client
        .send(
            Method::GET,
            &url,
            &[("authorization", auth.as_str())],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = e.admin(Method::GET, "/metrics", None).await.text();
    let exported = exported(&text);
    assert!(exported.contains_key("pollgate_requests_total"), "{text}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let dashboard = dashboard_exprs(&root.join("grafana/pollgate-dashboard.json"));
    let rules = rule_exprs(&root.join("prometheus/pollgate-alerts.yml"));
    assert!(
        dashboard.len() >= 12 && rules.len() >= 4,
        "{dashboard:?} {rules:?}"
    );
    let mut all = Vec::new();
    for expr in dashboard.iter().chain(&rules) {
        let found = problems(expr, &exported);
        assert!(
            !refs(expr).selectors.is_empty(),
            "no metric found in {expr}"
        );
        all.extend(found.into_iter().map(|p| format!("{p}\n    in {expr}")));
    }
    assert!(
        all.is_empty(),
        "the ops kit names what pollgate does not export:\n{}",
        all.join("\n")
    );
    e.shutdown().await;
}

#[test]
fn the_checker_catches_a_wrong_name_label_or_value() {
    let exported = exported(
        "# TYPE pollgate_requests counter\n\
         pollgate_requests_total{route=\"items\",result=\"hit\"} 1\n\
         pollgate_cache_bytes 5\n",
    );
    let ok = "sum by (result) (rate(pollgate_requests_total{job=~\"$job\", result=~\"hit\"}[$__rate_interval])) / pollgate_cache_bytes";
    assert_eq!(problems(ok, &exported), Vec::<String>::new());
    for (bad, why) in [
        ("rate(pollgate_request_total[5m])", "not exported"),
        (
            "pollgate_requests_total{status=\"2xx\"}",
            "no label `status`",
        ),
        (
            "pollgate_requests_total{result=\"hitt\"}",
            "no value `hitt`",
        ),
        (
            "sum by (tenant) (pollgate_cache_bytes)",
            "grouping by `tenant`",
        ),
    ] {
        let found = problems(bad, &exported).join("; ");
        assert!(found.contains(why), "{bad}: {found}");
    }
}
