//! Query validation for the item-list endpoint, mirroring FastAPI/pydantic's 422 answers.
//!
//! The gateway normalises and forwards these parameters, so the sim must reject exactly what the
//! real service rejects, with the same error shape, and never panic on hostile input.

use serde_json::{json, Value};

use crate::data::ItemStatus;

/// Upper bound of `limit` enforced by the real API.
pub const MAX_LIMIT: i64 = 1000;
/// Page size when the client sends no `limit`.
pub const DEFAULT_LIMIT: i64 = 100;

/// A validated item-list query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemsQuery {
    pub limit: u64,
    pub offset: u64,
    pub status: Option<ItemStatus>,
}

/// Parses a raw query string; `Err` carries the FastAPI `detail` array.
pub fn parse_items_query(raw: Option<&str>) -> Result<ItemsQuery, Value> {
    let mut limit = None;
    let mut offset = None;
    let mut status = None;
    // Repeated parameters: the last one wins, as in FastAPI for scalar parameters.
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" => limit = Some(v.into_owned()),
            "offset" => offset = Some(v.into_owned()),
            "status" => status = Some(v.into_owned()),
            _ => {}
        }
    }
    let mut errors = Vec::new();
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(s) => bounded_int(&s, "limit", Some(1), Some(MAX_LIMIT), &mut errors).unwrap_or(0),
    };
    let offset = match offset {
        None => 0,
        Some(s) => bounded_int(&s, "offset", Some(0), None, &mut errors).unwrap_or(0),
    };
    let status = match status {
        None => None,
        Some(s) => match ItemStatus::parse(&s) {
            Some(st) => Some(st),
            None => {
                let expected =
                    "'pending', 'processing', 'completed', 'failed', 'skipped' or 'cancelled'";
                errors.push(json!({
                    "type": "enum",
                    "loc": ["query", "status"],
                    "msg": format!("Input should be {expected}"),
                    "input": s,
                    "ctx": {"expected": expected},
                }));
                None
            }
        },
    };
    if errors.is_empty() {
        Ok(ItemsQuery {
            limit: limit.max(0) as u64,
            offset: offset.max(0) as u64,
            status,
        })
    } else {
        Err(Value::Array(errors))
    }
}

/// Parses an integer like pydantic's lax mode and checks its bounds. Numbers too large for
/// `i64` are still integers, so they fail the bound check rather than parsing.
fn bounded_int(
    input: &str,
    name: &str,
    ge: Option<i64>,
    le: Option<i64>,
    errors: &mut Vec<Value>,
) -> Option<i64> {
    let trimmed = input.trim();
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    let is_integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if !is_integer {
        errors.push(json!({
            "type": "int_parsing",
            "loc": ["query", name],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": input,
        }));
        return None;
    }
    let value = trimmed
        .parse::<i64>()
        .unwrap_or(if trimmed.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
    if let Some(ge) = ge.filter(|ge| value < *ge) {
        errors.push(json!({
            "type": "greater_than_equal",
            "loc": ["query", name],
            "msg": format!("Input should be greater than or equal to {ge}"),
            "input": input,
            "ctx": {"ge": ge},
        }));
        return None;
    }
    if let Some(le) = le.filter(|le| value > *le) {
        errors.push(json!({
            "type": "less_than_equal",
            "loc": ["query", name],
            "msg": format!("Input should be less than or equal to {le}"),
            "input": input,
            "ctx": {"le": le},
        }));
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_last_wins() {
        let q = parse_items_query(None).unwrap();
        assert_eq!((q.limit, q.offset, q.status), (100, 0, None));
        let q = parse_items_query(Some("limit=5&limit=7&status=failed&offset=3")).unwrap();
        assert_eq!(
            (q.limit, q.offset, q.status),
            (7, 3, Some(ItemStatus::Failed))
        );
    }

    #[test]
    fn rejects_like_fastapi() {
        let e = parse_items_query(Some("limit=0&offset=-1&status=nope")).unwrap_err();
        let types: Vec<_> = e
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["type"].clone())
            .collect();
        assert_eq!(types, ["greater_than_equal", "greater_than_equal", "enum"]);
        let e = parse_items_query(Some("limit=99999999999999999999999")).unwrap_err();
        assert_eq!(e[0]["type"], "less_than_equal");
        let e = parse_items_query(Some("limit=%ZZ&offset=1.5")).unwrap_err();
        assert_eq!(e[0]["type"], "int_parsing");
        assert_eq!(e[1]["type"], "int_parsing");
    }
}
