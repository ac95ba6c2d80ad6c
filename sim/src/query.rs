//! Query strings of the API routes, validated as FastAPI does it, with pydantic's 422 answers.
//!
//! FastAPI validates every declared parameter and reports all failures at once, in declaration
//! order (the order the published OpenAPI description lists them). A scalar parameter takes the
//! last of repeated values; a list parameter keeps all of them in order. Undeclared parameters are
//! ignored. The parsing of each value lives in [`crate::pydantic`].

use crate::data::ItemStatus;
use crate::pydantic::uuid::Uuid;
use crate::pydantic::{choice_error, int, uuid, FieldError};

/// Upper bound of `limit` enforced by the real API.
pub const MAX_LIMIT: i64 = 1000;
/// Page size when the client sends no `limit` (published default).
pub const DEFAULT_LIMIT: i64 = 100;

/// A decoded query string: every `name=value` pair, in order.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Decodes a raw query string (`+` is a space, bad percent-escapes stay as they are, invalid
    /// UTF-8 becomes U+FFFD, as Starlette does it).
    pub fn parse(raw: Option<&str>) -> Self {
        QueryParams {
            pairs: form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// A scalar parameter: the last value given.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A list parameter: every value given, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// An optional UUID parameter.
    pub fn uuid(&self, name: &str, errors: &mut Vec<FieldError>) -> Option<Uuid> {
        let input = self.last(name)?;
        uuid::query_param(name, input)
            .map_err(|e| errors.push(e))
            .ok()
    }

    /// `project_id` then `organization_id`, as every route declares them.
    pub fn scope(&self, errors: &mut Vec<FieldError>) -> Scope {
        Scope {
            project_id: self.uuid("project_id", errors),
            organization_id: self.uuid("organization_id", errors),
        }
    }
}

/// The `project_id` and `organization_id` a request is scoped to, when given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    pub project_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
}

/// A route whose only parameters are the scope (v1 status and cancel, v2 cancel and create).
pub fn parse_scope_query(raw: Option<&str>) -> Result<Scope, Vec<FieldError>> {
    let mut errors = Vec::new();
    let scope = QueryParams::parse(raw).scope(&mut errors);
    if errors.is_empty() {
        Ok(scope)
    } else {
        Err(errors)
    }
}

/// A validated item-list query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemsQuery {
    pub limit: u64,
    pub offset: u64,
    pub status: Option<ItemStatus>,
    pub scope: Scope,
}

/// Parses an item-list query; `Err` carries every invalid parameter, in the API's order
/// (`status`, `limit`, `offset`, `project_id`, `organization_id`).
pub fn parse_items_query(raw: Option<&str>) -> Result<ItemsQuery, Vec<FieldError>> {
    let params = QueryParams::parse(raw);
    let mut errors = Vec::new();
    let status = params.last("status").and_then(|s| {
        ItemStatus::parse(s).or_else(|| {
            let names = ItemStatus::ALL.map(ItemStatus::as_str);
            errors.push(choice_error("enum", "status", &names, s));
            None
        })
    });
    let mut int_param = |name: &str, ge: i64, le: Option<i64>, default: i64| {
        params.last(name).map_or(default, |s| {
            int::query_param(name, s, Some(ge), le)
                .map_err(|e| errors.push(e))
                .unwrap_or(default)
        })
    };
    let limit = int_param("limit", 1, Some(MAX_LIMIT), DEFAULT_LIMIT);
    let offset = int_param("offset", 0, None, 0);
    let scope = params.scope(&mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ItemsQuery {
        limit: limit.max(0) as u64,
        offset: offset.max(0) as u64,
        status,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(errors: &[FieldError]) -> Vec<(&str, &str)> {
        errors
            .iter()
            .map(|e| (e.kind, e.loc[1].as_str().unwrap_or_default()))
            .collect()
    }

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
    fn lax_integers_as_pydantic_reads_them() {
        for (query, limit) in [
            ("limit=%2B5", 5),
            ("limit=+5", 5),
            ("limit=%205%20", 5),
            ("limit=5.0", 5),
            ("limit=1_000", 1000),
        ] {
            assert_eq!(
                parse_items_query(Some(query)).unwrap().limit,
                limit,
                "{query}"
            );
        }
        let e = parse_items_query(Some("limit=1.5")).unwrap_err();
        assert_eq!(kinds(&e), [("int_parsing", "limit")]);
    }

    #[test]
    fn rejects_like_fastapi_in_declaration_order() {
        let e = parse_items_query(Some(
            "organization_id=x&limit=0&offset=-1&status=nope&project_id=y",
        ))
        .unwrap_err();
        assert_eq!(
            kinds(&e),
            [
                ("enum", "status"),
                ("greater_than_equal", "limit"),
                ("greater_than_equal", "offset"),
                ("uuid_parsing", "project_id"),
                ("uuid_parsing", "organization_id"),
            ]
        );
        let e = parse_items_query(Some("limit=99999999999999999999999")).unwrap_err();
        assert_eq!(e[0].kind, "less_than_equal");
        let e = parse_items_query(Some("limit=%ZZ&offset=1.5")).unwrap_err();
        assert_eq!(
            kinds(&e),
            [("int_parsing", "limit"), ("int_parsing", "offset")]
        );
    }

    #[test]
    fn scope_accepts_any_uuid_spelling() {
        let s = parse_scope_query(Some(
            "project_id=%7B5F3C1A2E-7B4D-4E8A-9C61-0A1B2C3D4E5F%7D&organization_id=urn:uuid:0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a",
        ))
        .unwrap();
        assert_eq!(
            s.project_id.map(|u| u.hyphenated()).as_deref(),
            Some(crate::PROJECT_A)
        );
        assert_eq!(
            s.organization_id.map(|u| u.hyphenated()).as_deref(),
            Some(crate::ORG_A)
        );
        let e = parse_scope_query(Some("project_id=%205f3c1a2e-7b4d-4e8a-9c61-0a1b2c3d4e5f"))
            .unwrap_err();
        assert_eq!(
            e[0].msg,
            "Input should be a valid UUID, invalid character: found ` ` at 0"
        );
    }
}
