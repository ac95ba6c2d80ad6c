//! FastAPI's validation of query parameters, as pydantic v2 does it in lax mode.
//!
//! The simulator must refuse exactly what the real API refuses, with the same 422 body, so that a
//! gateway validating at its edge can be checked against it. The parsers themselves live in the
//! `pydantic-lax` crate, shared with the gateway and checked there against a table of verdicts
//! recorded from real pydantic; this module shapes their errors into FastAPI's body.
//!
//! One [`FieldError`] is one entry of FastAPI's `{"detail": [...]}` array.

use serde_json::{json, Value};

pub use pydantic_lax::expected_list;

/// `int` query parameters, with `ge`/`le` bounds like `Query(ge=, le=)`.
pub mod int {
    use super::FieldError;

    /// Values beyond `i64` saturate: bounds only need to know they are beyond every bound,
    /// and no simulated collection is that large.
    pub type LaxInt = i64;

    /// Parses query parameter `name` as an integer and checks `ge`/`le` like `Query(ge=, le=)`.
    pub fn query_param(
        name: &str,
        input: &str,
        ge: Option<i64>,
        le: Option<i64>,
    ) -> Result<LaxInt, FieldError> {
        let value = pydantic_lax::int::parse(input)
            .map_err(|e| FieldError::query(e.kind(), name, e.msg().to_owned(), input))?
            .saturating_i64();
        if let Some(ge) = ge.filter(|ge| value < *ge) {
            return Err(FieldError::query(
                "greater_than_equal",
                name,
                format!("Input should be greater than or equal to {ge}"),
                input,
            )
            .with_ctx(serde_json::json!({ "ge": ge })));
        }
        if let Some(le) = le.filter(|le| value > *le) {
            return Err(FieldError::query(
                "less_than_equal",
                name,
                format!("Input should be less than or equal to {le}"),
                input,
            )
            .with_ctx(serde_json::json!({ "le": le })));
        }
        Ok(value)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn bounds_errors_carry_ctx() {
            let e = query_param("limit", "0", Some(1), Some(1000)).unwrap_err();
            assert_eq!(e.kind, "greater_than_equal");
            assert_eq!(e.ctx.as_deref(), Some(&serde_json::json!({"ge": 1})));
            let e = query_param("limit", "1_001", Some(1), Some(1000)).unwrap_err();
            assert_eq!(e.kind, "less_than_equal");
            assert_eq!(e.input, "1_001");
        }
    }
}

/// `uuid.UUID` query parameters.
pub mod uuid {
    use super::FieldError;

    pub use pydantic_lax::uuid::{parse, Uuid};

    /// Validates query parameter `name` as a UUID: pydantic's `uuid_parsing` error on failure.
    pub fn query_param(name: &str, input: &str) -> Result<Uuid, FieldError> {
        parse(input).map_err(|error| {
            FieldError::query(
                "uuid_parsing",
                name,
                pydantic_lax::uuid::message(&error),
                input,
            )
            .with_ctx(serde_json::json!({ "error": error }))
        })
    }
}

/// `datetime` query parameters.
pub mod datetime {
    use super::FieldError;

    pub use pydantic_lax::datetime::Micros;

    /// Validates query parameter `name` as a datetime.
    pub fn query_param(name: &str, input: &str) -> Result<Micros, FieldError> {
        pydantic_lax::datetime::parse(input).map_err(|e| {
            FieldError::query(e.kind, name, e.msg(), input)
                .with_ctx(serde_json::json!({ "error": e.error }))
        })
    }
}

/// One invalid parameter, as FastAPI reports it: `{"type","loc","msg","input","ctx"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// pydantic's error `type`, e.g. `int_parsing`.
    pub kind: &'static str,
    /// Where the value was: `["query", name]`, `["body", field, ...]`, `["body", offset]`.
    pub loc: Vec<Value>,
    pub msg: String,
    /// The input as received (FastAPI echoes the raw string).
    pub input: Value,
    /// Boxed: most errors have none, and a small error keeps `Result`s cheap.
    pub ctx: Option<Box<Value>>,
}

impl FieldError {
    /// An error on query parameter `name` whose input was the string `input`.
    pub fn query(kind: &'static str, name: &str, msg: String, input: &str) -> Self {
        FieldError {
            kind,
            loc: vec![json!("query"), json!(name)],
            msg,
            input: Value::String(input.to_owned()),
            ctx: None,
        }
    }

    /// An error in the JSON body at `path`; `input` is the offending value.
    pub fn body(kind: &'static str, path: &[&str], msg: &str, input: Value) -> Self {
        let mut loc = vec![json!("body")];
        loc.extend(path.iter().map(|p| json!(p)));
        FieldError {
            kind,
            loc,
            msg: msg.to_owned(),
            input,
            ctx: None,
        }
    }

    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(Box::new(ctx));
        self
    }

    /// The JSON text FastAPI puts in `detail`, keys in FastAPI's order (`serde_json`'s map would
    /// sort them, and the order is visible to anyone comparing bytes).
    pub fn to_json(&self) -> String {
        let text = |v: &Value| serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned());
        let mut out = format!(
            "{{\"type\":{},\"loc\":{},\"msg\":{},\"input\":{}",
            text(&json!(self.kind)),
            text(&json!(self.loc)),
            text(&json!(self.msg)),
            text(&self.input),
        );
        if let Some(ctx) = &self.ctx {
            out.push_str(",\"ctx\":");
            out.push_str(&text(ctx));
        }
        out.push('}');
        out
    }
}

/// The whole 422 body: `{"detail": [...]}`.
pub fn detail_body(errors: &[FieldError]) -> Vec<u8> {
    let items: Vec<String> = errors.iter().map(FieldError::to_json).collect();
    format!("{{\"detail\":[{}]}}", items.join(",")).into_bytes()
}

/// A `Literal[...]` (`literal_error`) or `Enum` (`enum`) query parameter outside its values.
pub fn choice_error(kind: &'static str, name: &str, values: &[&str], input: &str) -> FieldError {
    let expected = expected_list(values);
    FieldError::query(kind, name, format!("Input should be {expected}"), input)
        .with_ctx(json!({ "expected": expected }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_json_has_fastapi_keys_in_order() {
        let e = choice_error("enum", "status", &["x", "y"], "z");
        let text = e.to_json();
        let _: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            text,
            r#"{"type":"enum","loc":["query","status"],"msg":"Input should be 'x' or 'y'","input":"z","ctx":{"expected":"'x' or 'y'"}}"#
        );
    }
}
