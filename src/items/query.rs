//! Validation and canonical form of an item-list query.
//!
//! Two jobs, done in one pass so the hit path parses the query once:
//! 1. reject what the API would reject (422, FastAPI/pydantic-shaped), so no
//!    upstream call is spent on it;
//! 2. produce the canonical query: decoded, numbers normalized, one value per
//!    name (the last, as the API resolves repeats), sorted by name, unknown
//!    parameters kept. The cache key is built from it *and* the upstream is
//!    sent exactly it, so a key can never describe a different response than
//!    the one stored under it.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::{json, Value};

/// API bounds (see `shared/api/list-batch-job-items.txt`).
pub const LIMIT_MIN: u64 = 1;
pub const LIMIT_MAX: u64 = 1000;
/// Offsets are stored as 64-bit signed integers upstream; larger cannot be valid.
pub const OFFSET_MAX: u64 = i64::MAX as u64;
pub const STATUSES: [&str; 6] = [
    "pending",
    "processing",
    "completed",
    "failed",
    "skipped",
    "cancelled",
];
const STATUS_EXPECTED: &str =
    "'pending', 'processing', 'completed', 'failed', 'skipped' or 'cancelled'";

/// The canonical, form-encoded query (empty when the request had none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalQuery(String);

impl CanonicalQuery {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One invalid parameter, as pydantic reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: &'static str,
    pub param: &'static str,
    pub msg: Cow<'static, str>,
    pub input: String,
    pub ctx: Option<Value>,
}

/// Every invalid parameter of a query (FastAPI reports them all at once).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRejection {
    pub errors: Vec<FieldError>,
}

impl QueryRejection {
    /// `{"detail":[{"type","loc":["query",name],"msg","input","ctx"?}, ...]}`
    pub fn to_json(&self) -> Bytes {
        let detail: Vec<Value> = self
            .errors
            .iter()
            .map(|e| {
                let mut v = json!({
                    "type": e.kind,
                    "loc": ["query", e.param],
                    "msg": e.msg,
                    "input": e.input,
                });
                if let (Some(ctx), Value::Object(map)) = (&e.ctx, &mut v) {
                    map.insert("ctx".to_owned(), ctx.clone());
                }
                v
            })
            .collect();
        Bytes::from(json!({ "detail": detail }).to_string())
    }
}

/// Validate and canonicalize a raw (still percent-encoded) query string.
pub fn canonicalize(raw: Option<&str>) -> Result<CanonicalQuery, QueryRejection> {
    let raw = match raw {
        Some(r) if !r.is_empty() => r,
        _ => return Ok(CanonicalQuery(String::new())),
    };
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = form_urlencoded::parse(raw.as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .collect();
    // Stable sort keeps arrival order within a name, so the last of a run is the last sent.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));

    let mut errors = Vec::new();
    let mut out = form_urlencoded::Serializer::new(String::with_capacity(raw.len()));
    let mut i = 0;
    while i < pairs.len() {
        let mut last = i;
        while last + 1 < pairs.len() && pairs[last + 1].0 == pairs[i].0 {
            last += 1;
        }
        let (name, value) = (&pairs[last].0, &pairs[last].1);
        match name.as_ref() {
            "limit" => match parse_int("limit", value, LIMIT_MIN, LIMIT_MAX) {
                Ok(n) => {
                    out.append_pair("limit", itoa::Buffer::new().format(n));
                }
                Err(e) => errors.push(e),
            },
            "offset" => match parse_int("offset", value, 0, OFFSET_MAX) {
                Ok(n) => {
                    out.append_pair("offset", itoa::Buffer::new().format(n));
                }
                Err(e) => errors.push(e),
            },
            "status" => {
                if STATUSES.contains(&value.as_ref()) {
                    out.append_pair("status", value);
                } else {
                    errors.push(FieldError {
                        kind: "enum",
                        param: "status",
                        msg: Cow::Owned(format!("Input should be {STATUS_EXPECTED}")),
                        input: value.to_string(),
                        ctx: Some(json!({ "expected": STATUS_EXPECTED })),
                    });
                }
            }
            _ => {
                out.append_pair(name, value);
            }
        }
        i = last + 1;
    }
    if errors.is_empty() {
        Ok(CanonicalQuery(out.finish()))
    } else {
        Err(QueryRejection { errors })
    }
}

/// Parse an integer query value the way pydantic's lax mode does: surrounding
/// whitespace, a sign and leading zeros are fine, as is a zero fraction (`5.0`);
/// anything else is a parse error, and the bounds are checked after parsing.
fn parse_int(param: &'static str, value: &str, min: u64, max: u64) -> Result<u64, FieldError> {
    let err = |kind: &'static str, msg: Cow<'static, str>, ctx: Option<Value>| FieldError {
        kind,
        param,
        msg,
        input: value.to_owned(),
        ctx,
    };
    let trimmed = value.trim();
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    // Python-style digit grouping (`1_000`) is accepted, as pydantic does: single underscores between digits.
    let grouped = whole.contains('_');
    let digits_ok = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !whole.starts_with('_')
        && !whole.ends_with('_')
        && !whole.contains("__");
    let ungrouped;
    let whole = if grouped && digits_ok {
        ungrouped = whole.replace('_', "");
        ungrouped.as_str()
    } else {
        whole
    };
    let fraction_ok =
        fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if !digits_ok || !fraction_ok {
        return Err(err(
            "int_parsing",
            Cow::Borrowed("Input should be a valid integer, unable to parse string as an integer"),
            None,
        ));
    }
    // pydantic-core's `str_as_int` only drops an all-zero fraction; `1.5` is a parse error.
    if fraction.is_some_and(|f| f.bytes().any(|b| b != b'0')) {
        return Err(err(
            "int_parsing",
            Cow::Borrowed("Input should be a valid integer, unable to parse string as an integer"),
            None,
        ));
    }
    let is_zero = whole.bytes().all(|b| b == b'0');
    let too_low = || {
        err(
            "greater_than_equal",
            Cow::Owned(format!("Input should be greater than or equal to {min}")),
            Some(json!({ "ge": min })),
        )
    };
    if negative && !is_zero {
        return Err(too_low());
    }
    // Digits beyond u64 are certainly above every bound we check.
    let n = whole.parse::<u64>().unwrap_or(u64::MAX);
    if n < min {
        return Err(too_low());
    }
    if n > max {
        return Err(err(
            "less_than_equal",
            Cow::Owned(format!("Input should be less than or equal to {max}")),
            Some(json!({ "le": max })),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(q: &str) -> String {
        canonicalize(Some(q)).expect("valid").as_str().to_owned()
    }

    fn reject(q: &str) -> Vec<(&'static str, &'static str)> {
        canonicalize(Some(q))
            .expect_err("invalid")
            .errors
            .iter()
            .map(|e| (e.param, e.kind))
            .collect()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("offset=20&limit=050"), "limit=50&offset=20");
        assert_eq!(canon("limit=5&limit=7"), "limit=7");
        assert_eq!(
            canon("status=completed&zeta=1&alpha=x%20y"),
            "alpha=x+y&status=completed&zeta=1"
        );
        assert_eq!(canon("limit=+5"), "limit=5");
        assert_eq!(canon("limit=%2010%20"), "limit=10");
        assert_eq!(canon("limit=5.0"), "limit=5");
        assert_eq!(canon("offset=-0"), "offset=0");
        assert_eq!(canon("&&limit=1&"), "limit=1");
        assert_eq!(canon("limit=1000"), "limit=1000");
        assert_eq!(canon("limit=1_000"), "limit=1000");
        assert!(canonicalize(None).expect("empty").is_empty());
        assert!(canonicalize(Some("")).expect("empty").is_empty());
    }

    #[test]
    fn rejections() {
        assert_eq!(reject("limit=0"), [("limit", "greater_than_equal")]);
        assert_eq!(reject("limit=1001"), [("limit", "less_than_equal")]);
        assert_eq!(reject("limit=-1"), [("limit", "greater_than_equal")]);
        assert_eq!(reject("limit=abc"), [("limit", "int_parsing")]);
        assert_eq!(reject("limit=1__0"), [("limit", "int_parsing")]);
        assert_eq!(reject("limit=_10"), [("limit", "int_parsing")]);
        assert_eq!(reject("limit=1.5"), [("limit", "int_parsing")]);
        assert_eq!(reject("limit="), [("limit", "int_parsing")]);
        assert_eq!(
            reject("limit=99999999999999999999999"),
            [("limit", "less_than_equal")]
        );
        assert_eq!(reject("offset=-1"), [("offset", "greater_than_equal")]);
        assert_eq!(reject("status=done"), [("status", "enum")]);
        assert_eq!(reject("status=Completed"), [("status", "enum")]);
        assert_eq!(
            reject("limit=0&offset=x&status=nope"),
            [
                ("limit", "greater_than_equal"),
                ("offset", "int_parsing"),
                ("status", "enum")
            ]
        );
        // The last repeat decides, as upstream.
        assert_eq!(reject("limit=5&limit=0"), [("limit", "greater_than_equal")]);
        assert_eq!(canon("limit=0&limit=5"), "limit=5");
    }

    #[test]
    fn canonical_form_is_a_fixed_point_and_order_free() {
        let queries = [
            "limit=050&offset=0010&status=failed",
            "zeta=%C3%A9t%C3%A9&alpha=a+b&limit=7",
            "project_id=p%2F1&organization_id=o%261&limit=10",
            "limit=3&limit=4&x=&x=2",
            "a=%ZZ&limit=1_0",
        ];
        for q in queries {
            let once = canon(q);
            assert_eq!(canon(&once), once, "re-canonicalizing {q:?} changed it");
            let mut parts: Vec<&str> = q.split('&').collect();
            parts.reverse();
            // Reversing order changes only which repeat is last; skip queries with repeats.
            let names: Vec<&str> = parts
                .iter()
                .map(|p| p.split('=').next().unwrap_or(""))
                .collect();
            let unique =
                names.iter().collect::<std::collections::HashSet<_>>().len() == names.len();
            if unique {
                assert_eq!(
                    canon(&parts.join("&")),
                    once,
                    "order changed the key of {q:?}"
                );
            }
        }
    }

    #[test]
    fn rejection_json_is_fastapi_shaped() {
        let body = canonicalize(Some("limit=0"))
            .expect_err("invalid")
            .to_json();
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["detail"][0]["loc"], json!(["query", "limit"]));
        assert_eq!(v["detail"][0]["type"], "greater_than_equal");
        assert_eq!(v["detail"][0]["input"], "0");
        assert_eq!(v["detail"][0]["ctx"]["ge"], 1);
    }
}
