//! Validation and canonical form of a cacheable route's query, driven by its parameter table.
//!
//! Two jobs, done in one pass so the hit path parses the query once:
//! 1. reject what the API would reject (422, FastAPI/pydantic-shaped, every
//!    bad parameter at once), so no upstream call is spent on it;
//! 2. produce the canonical query: decoded, values normalized (integers,
//!    UUIDs), documented defaults made explicit, scalars resolved as the API
//!    resolves repeats (the last wins), lists kept whole and in order, sorted
//!    by name, unknown parameters kept. The cache key is built from it *and*
//!    the upstream is sent exactly it, so a key can never describe a
//!    different response than the one stored under it.

use std::borrow::Cow;
use std::cmp::Ordering;

use bytes::Bytes;
use serde_json::{json, Value};

use pydantic_lax::{expected_list, int, uuid};

use super::memo;

/// One query parameter of a route, as the API's published schema describes it.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub arity: Arity,
    /// The value the API uses when the parameter is absent. The canonical query
    /// spells it out, so `?` and `?limit=100` are one key and one upstream query.
    pub default: Option<&'static str>,
}

/// A parameter's type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer (pydantic lax), with optional inclusive bounds.
    Int { min: Option<i64>, max: Option<i64> },
    /// One of these exact strings (case matters), declared as a Python `Enum`
    /// (pydantic's error type `enum`).
    Enum(&'static [&'static str]),
    /// One of these exact strings, declared as a `Literal` (error type `literal_error`).
    Literal(&'static [&'static str]),
    /// A UUID; canonical spelling is lower-case hyphenated.
    Uuid,
    /// Any string, forwarded as sent (opaque tokens, ids, date-times).
    Text,
}

/// Whether a repeated parameter means "the last one" or "all of them".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// The last value wins, as FastAPI resolves a repeated scalar.
    Scalar,
    /// Every value is kept, in the order sent (`expand=a&expand=b`).
    List,
}

impl Param {
    pub const fn scalar(name: &'static str, kind: Kind) -> Param {
        Param {
            name,
            kind,
            arity: Arity::Scalar,
            default: None,
        }
    }

    pub const fn list(name: &'static str, kind: Kind) -> Param {
        Param {
            name,
            kind,
            arity: Arity::List,
            default: None,
        }
    }

    pub const fn with_default(self, default: &'static str) -> Param {
        Param {
            default: Some(default),
            ..self
        }
    }
}

/// One invalid parameter, as pydantic reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: &'static str,
    pub param: String,
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

/// Validate and canonicalize a raw (still percent-encoded) query string against `params`.
pub fn canonicalize(params: &[Param], raw: Option<&str>) -> Result<String, QueryRejection> {
    let mut out = String::new();
    canonicalize_fresh(params, raw.unwrap_or(""), &mut out)?;
    Ok(out)
}

/// Most pairs a query takes the fast path with; longer queries take the general one.
const PLAIN_PAIRS: usize = 16;

/// Like [`canonicalize`], appending the canonical query to `out` (the cache key being built).
///
/// A query made only of characters that form-encoding leaves alone (`A-Z a-z 0-9 * - . _`,
/// one `=` per pair) decodes and re-encodes to itself, so it is resolved from slices of
/// the raw text with no allocation; anything else is decoded and re-encoded in full.
/// Both paths give the same result (see the tests).
pub fn canonicalize_into(
    params: &'static [Param],
    raw: Option<&str>,
    out: &mut String,
) -> Result<(), QueryRejection> {
    let raw = raw.unwrap_or("");
    if memo::recall(params, raw, out) {
        return Ok(());
    }
    let start = out.len();
    canonicalize_fresh(params, raw, out)?;
    if let Some(canon) = out.get(start..) {
        memo::remember(params, raw, canon);
    }
    Ok(())
}

/// [`canonicalize_into`] without the memo.
fn canonicalize_fresh(params: &[Param], raw: &str, out: &mut String) -> Result<(), QueryRejection> {
    let start = out.len();
    let mut plain = [("", ""); PLAIN_PAIRS];
    if let Some(n) = split_plain(params, raw, &mut plain) {
        return resolve(params, &mut plain[..n], |name, value| {
            if out.len() > start {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(value);
        });
    }
    // Defaults go first, so a value the client sent comes later and wins.
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = params
        .iter()
        .filter_map(|p| Some((Cow::Borrowed(p.name), Cow::Borrowed(p.default?))))
        .collect();
    pairs.extend(form_urlencoded::parse(raw.as_bytes()).filter(|(k, _)| !k.is_empty()));
    let mut serializer = form_urlencoded::Serializer::for_suffix(out, start);
    let result = resolve(params, &mut pairs, |name, value| {
        serializer.append_pair(name, value);
    });
    serializer.finish();
    result
}

/// Split a query that form-encoding leaves unchanged into `pairs` (defaults first);
/// the number of pairs, or `None` when the query needs the general path.
fn split_plain<'a>(
    params: &'a [Param],
    raw: &'a str,
    pairs: &mut [(&'a str, &'a str); PLAIN_PAIRS],
) -> Option<usize> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_');
    let mut n = 0;
    for p in params {
        if let Some(default) = p.default {
            *pairs.get_mut(n)? = (p.name, default);
            n += 1;
        }
    }
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.is_empty() {
            continue;
        }
        if !name.bytes().all(plain) || !value.bytes().all(plain) {
            return None;
        }
        *pairs.get_mut(n)? = (name, value);
        n += 1;
    }
    Some(n)
}

/// Resolve decoded `pairs` (defaults first, then the query in arrival order) against
/// `params`: validate, normalize, and `emit` the canonical pairs in name order.
fn resolve<N: AsRef<str>, V: AsRef<str>>(
    params: &[Param],
    pairs: &mut [(N, V)],
    mut emit: impl FnMut(&str, &str),
) -> Result<(), QueryRejection> {
    // Stable: arrival order is kept within a name, so the last of a run is the last
    // sent, and a list's values stay in the order sent.
    pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut errors = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let name = pairs[i].0.as_ref();
        let mut end = i + 1;
        while end < pairs.len() && pairs[end].0.as_ref() == name {
            end += 1;
        }
        let spec = params.iter().find(|p| p.name == name);
        let values = match spec.map(|p| p.arity) {
            Some(Arity::List) => &pairs[i..end],
            // Scalars and unknown parameters: the last value, as the API resolves repeats.
            Some(Arity::Scalar) | None => &pairs[end - 1..end],
        };
        for (_, value) in values {
            let value = value.as_ref();
            match spec {
                None => emit(name, value),
                Some(p) => match normalize(p, value) {
                    Ok(canonical) => emit(name, &canonical),
                    Err(e) => errors.push(e),
                },
            }
        }
        i = end;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(QueryRejection { errors })
    }
}

/// Check one value against its parameter; its canonical form (borrowed when unchanged).
fn normalize<'v>(param: &Param, value: &'v str) -> Result<Cow<'v, str>, FieldError> {
    let err = |kind: &'static str, msg: Cow<'static, str>, ctx: Option<Value>| FieldError {
        kind,
        param: param.name.to_owned(),
        msg,
        input: value.to_owned(),
        ctx,
    };
    match param.kind {
        Kind::Text => Ok(Cow::Borrowed(value)),
        Kind::Enum(allowed) => choice(allowed, "enum", value).map_err(|e| err(e.0, e.1, e.2)),
        Kind::Literal(allowed) => {
            choice(allowed, "literal_error", value).map_err(|e| err(e.0, e.1, e.2))
        }
        Kind::Uuid => match uuid::parse(value) {
            Ok(uuid) => Ok(Cow::Owned(uuid.hyphenated())),
            Err(reason) => Err(err(
                "uuid_parsing",
                Cow::Owned(uuid::message(&reason)),
                Some(json!({ "error": reason })),
            )),
        },
        Kind::Int { min, max } => {
            // Fast path for what pollers send: plain digits, canonical already, in bounds.
            if let Some(n) = plain_int(value) {
                if min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m) {
                    return Ok(Cow::Borrowed(value));
                }
            }
            let n = int::parse(value).map_err(|e| err(e.kind(), Cow::Borrowed(e.msg()), None))?;
            if let Some(min) = min.filter(|m| n.cmp_i64(*m) == Ordering::Less) {
                return Err(err(
                    "greater_than_equal",
                    Cow::Owned(format!("Input should be greater than or equal to {min}")),
                    Some(json!({ "ge": min })),
                ));
            }
            if let Some(max) = max.filter(|m| n.cmp_i64(*m) == Ordering::Greater) {
                return Err(err(
                    "less_than_equal",
                    Cow::Owned(format!("Input should be less than or equal to {max}")),
                    Some(json!({ "le": max })),
                ));
            }
            Ok(n.canonical())
        }
    }
}

/// `value` as an `i64` when it is already in canonical form: 1 to 18 ASCII digits, with
/// no leading zero (unless it is `0`). Anything else takes pydantic's full lax parse.
fn plain_int(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.is_empty() || b.len() > 18 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    b.iter().try_fold(0i64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

/// Why a value is not one of `allowed`: pydantic's error type, message and context.
type ChoiceError = (&'static str, Cow<'static, str>, Option<Value>);

/// `value` if it is one of `allowed`, else the error pydantic gives (`kind` is `enum` or `literal_error`).
fn choice<'v>(
    allowed: &[&str],
    kind: &'static str,
    value: &'v str,
) -> Result<Cow<'v, str>, ChoiceError> {
    if allowed.contains(&value) {
        return Ok(Cow::Borrowed(value));
    }
    let expected = expected_list(allowed);
    Err((
        kind,
        Cow::Owned(format!("Input should be {expected}")),
        Some(json!({ "expected": expected })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[Param] = &[
        Param::scalar(
            "limit",
            Kind::Int {
                min: Some(1),
                max: Some(1000),
            },
        )
        .with_default("100"),
        Param::scalar(
            "offset",
            Kind::Int {
                min: Some(0),
                max: None,
            },
        )
        .with_default("0"),
        Param::scalar("status", Kind::Enum(&["pending", "failed"])),
        Param::scalar("project_id", Kind::Uuid),
        Param::list("expand", Kind::Text),
        Param::scalar(
            "page_size",
            Kind::Int {
                min: None,
                max: None,
            },
        ),
    ];

    fn canon(q: &str) -> String {
        canonicalize(PARAMS, Some(q)).expect("valid")
    }

    fn reject(q: &str) -> Vec<(String, &'static str)> {
        canonicalize(PARAMS, Some(q))
            .expect_err("invalid")
            .errors
            .iter()
            .map(|e| (e.param.clone(), e.kind))
            .collect()
    }

    #[test]
    fn defaults_are_explicit_so_spellings_share_a_key() {
        let all = [
            "",
            "offset=0",
            "limit=100",
            "limit=100&offset=0",
            "offset=00&limit=1_00",
        ];
        for q in all {
            assert_eq!(canon(q), "limit=100&offset=0", "{q:?}");
        }
        assert_eq!(canonicalize(&[], None).expect("empty"), "");
        assert_eq!(canonicalize(&[], Some("")).expect("empty"), "");
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("offset=20&limit=050"), "limit=50&offset=20");
        assert_eq!(canon("limit=5&limit=7"), "limit=7&offset=0");
        assert_eq!(
            canon("status=failed&zeta=1&alpha=x%20y"),
            "alpha=x+y&limit=100&offset=0&status=failed&zeta=1"
        );
        assert_eq!(canon("limit=+5&offset=-0"), "limit=5&offset=0");
        assert_eq!(canon("limit=%2010%20"), "limit=10&offset=0");
        assert_eq!(canon("limit=5.0"), "limit=5&offset=0");
        assert_eq!(
            canon("project_id=6F9619FF8B86D011B42D00C04FC964FF"),
            "limit=100&offset=0&project_id=6f9619ff-8b86-d011-b42d-00c04fc964ff"
        );
        // Lists keep every value, in order; scalars keep the last.
        assert_eq!(
            canon("expand=results&expand=zzz&expand=results"),
            "expand=results&expand=zzz&expand=results&limit=100&offset=0"
        );
        assert_eq!(canon("page_size=-3"), "limit=100&offset=0&page_size=-3");
        assert_eq!(
            canon("page_size=99999999999999999999"),
            "limit=100&offset=0&page_size=99999999999999999999"
        );
    }

    #[test]
    fn rejections_name_every_bad_parameter() {
        assert_eq!(reject("limit=0"), [("limit".into(), "greater_than_equal")]);
        assert_eq!(reject("limit=1001"), [("limit".into(), "less_than_equal")]);
        assert_eq!(reject("limit=1.5"), [("limit".into(), "int_parsing")]);
        assert_eq!(reject("limit="), [("limit".into(), "int_parsing")]);
        assert_eq!(
            reject("limit=99999999999999999999999"),
            [("limit".into(), "less_than_equal")]
        );
        assert_eq!(reject("status=Failed"), [("status".into(), "enum")]);
        assert_eq!(
            reject("project_id=p1"),
            [("project_id".into(), "uuid_parsing")]
        );
        assert_eq!(
            reject("page_size=ten"),
            [("page_size".into(), "int_parsing")]
        );
        assert_eq!(
            reject("limit=0&offset=x&status=nope"),
            [
                ("limit".into(), "greater_than_equal"),
                ("offset".into(), "int_parsing"),
                ("status".into(), "enum")
            ]
        );
        // The last repeat decides, as upstream; a bad default-shadowing value still fails.
        assert_eq!(
            reject("limit=5&limit=0"),
            [("limit".into(), "greater_than_equal")]
        );
        assert_eq!(canon("limit=0&limit=5"), "limit=5&offset=0");
    }

    #[test]
    fn canonical_form_is_a_fixed_point_and_order_free() {
        for q in [
            "limit=050&offset=0010&status=failed",
            "zeta=%C3%A9t%C3%A9&alpha=a+b&limit=7",
            "project_id=6f9619ff-8b86-d011-b42d-00c04fc964ff&other=o%261&limit=10",
            "limit=3&limit=4&x=&x=2",
            "a=%ZZ&limit=1_0",
        ] {
            let once = canon(q);
            assert_eq!(canon(&once), once, "re-canonicalizing {q:?} changed it");
            let mut parts: Vec<&str> = q.split('&').collect();
            parts.reverse();
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

    /// The general path, forced: what a plain query must also give.
    fn general(q: &str) -> Result<String, QueryRejection> {
        // A `%2A` (`*`) pair is never plain, and is kept as an unknown parameter.
        let forced = format!("{q}&zz=%2A");
        canonicalize(PARAMS, Some(&forced)).map(|s| {
            s.strip_suffix("&zz=*")
                .or_else(|| s.strip_suffix("zz=*"))
                .unwrap_or(&s)
                .to_owned()
        })
    }

    #[test]
    fn the_plain_fast_path_agrees_with_the_general_one() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let names = [
            "limit",
            "offset",
            "status",
            "expand",
            "page_size",
            "a",
            "zeta",
            "_x",
        ];
        let values = [
            "10",
            "010",
            "1_0",
            "5.0",
            "0",
            "1001",
            "-1",
            "failed",
            "pending",
            "x",
            "",
            "1.5",
            "6F9619FF8B86D011B42D00C04FC964FF",
            "results",
            "*",
            "a.b-c",
        ];
        for _ in 0..3000 {
            let n = next(6);
            let q: Vec<String> = (0..n)
                .map(|_| {
                    let name = names[next(names.len() as u64) as usize];
                    let value = values[next(values.len() as u64) as usize];
                    format!("{name}={value}")
                })
                .collect();
            let q = q.join("&");
            let fast = canonicalize(PARAMS, Some(&q));
            let slow = general(&q);
            match (&fast, &slow) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{q}"),
                (Err(a), Err(b)) => assert_eq!(a, b, "{q}"),
                _ => panic!("{q}: fast {fast:?}, general {slow:?}"),
            }
        }
    }

    #[test]
    fn the_plain_int_fast_path_agrees_with_pydantic() {
        let samples = [
            "0",
            "1",
            "9",
            "10",
            "100",
            "1000",
            "1001",
            "00",
            "01",
            "007",
            "-1",
            "+5",
            " 5",
            "5.0",
            "1_000",
            "",
            "a",
            "999999999999999999",
            "1000000000000000000",
            "12345678901234567890",
            "1e3",
            "٣",
        ];
        for s in samples {
            let general = int::parse(s)
                .ok()
                .map(|n| (n.canonical().into_owned(), n.saturating_i64()));
            // Whenever the fast path answers, pydantic agrees on the value and the spelling;
            // refusing is always safe (the full parse decides).
            if let Some(n) = plain_int(s) {
                assert_eq!(general, Some((s.to_owned(), n)), "{s:?}");
            }
        }
    }

    #[test]
    fn the_memo_gives_what_a_fresh_canonicalization_gives() {
        const BARE: &[Param] = &[Param::scalar(
            "limit",
            Kind::Int {
                min: None,
                max: None,
            },
        )];
        let queries = [
            "limit=10",
            "offset=5&limit=10",
            "limit=%2B5",
            "limit=0",
            "limit=abc",
            "status=failed&status=pending",
            "",
            "x=1",
            &"a".repeat(100),
            &format!("limit=7&zz={}", "b".repeat(120)),
        ];
        let into = |params: &'static [Param], q: &str| {
            let mut out = String::from("prefix:");
            canonicalize_into(params, Some(q), &mut out).map(|()| out)
        };
        // Three rounds over more queries than the memo has slots: first fresh, then
        // remembered or replaced, always the same answer.
        for _ in 0..3 {
            for q in queries
                .iter()
                .chain(&["limit=1", "limit=2", "limit=3", "limit=4"])
            {
                for params in [PARAMS, BARE] {
                    let fresh = canonicalize(params, Some(q)).map(|c| format!("prefix:{c}"));
                    assert_eq!(into(params, q), fresh, "{q:?}");
                }
            }
        }
        // One raw text, two routes: remembered per route.
        assert_eq!(
            into(PARAMS, "limit=9").as_deref(),
            Ok("prefix:limit=9&offset=0")
        );
        assert_eq!(into(BARE, "limit=9").as_deref(), Ok("prefix:limit=9"));
    }

    #[test]
    fn rejection_json_is_fastapi_shaped() {
        let body = canonicalize(PARAMS, Some("limit=0&status=x"))
            .expect_err("invalid")
            .to_json();
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["detail"][0]["loc"], json!(["query", "limit"]));
        assert_eq!(v["detail"][0]["type"], "greater_than_equal");
        assert_eq!(v["detail"][0]["input"], "0");
        assert_eq!(v["detail"][0]["ctx"]["ge"], 1);
        assert_eq!(
            v["detail"][1]["msg"],
            "Input should be 'pending' or 'failed'"
        );
        let uuid = canonicalize(PARAMS, Some("project_id=nope")).expect_err("invalid");
        let v: Value = serde_json::from_slice(&uuid.to_json()).expect("json");
        assert_eq!(v["detail"][0]["type"], "uuid_parsing");
        assert!(v["detail"][0]["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Input should be a valid UUID, ")));
    }
}
