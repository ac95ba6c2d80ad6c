//! The body of `POST /api/v2/batches` (`BatchCreateRequest`), validated as FastAPI would: the
//! required fields (`source_directory_id`, `config.job.type`, `config.job.configuration_id`) with
//! pydantic's `missing`, `string_type`, `literal_error` and `model_attributes_type` errors; the
//! optional webhook fields are accepted and ignored.
//!
//! A body that is not JSON gets one `json_invalid` error with the position of the fault in `loc`,
//! as FastAPI reports it. FastAPI's `ctx.error` is Python's own message (e.g. "Expecting property
//! name enclosed in double quotes"); the simulator always says "Expecting value" (a known
//! difference, in the README), and its position is `serde_json`'s, which may differ from
//! Python's by a character on some faults.

use serde_json::{json, Value};

use crate::batches::BatchJobType;
use crate::pydantic::{choice_error, FieldError};

/// A valid create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub source_directory_id: String,
    pub job_type: BatchJobType,
    pub configuration_id: String,
}

const OBJECT_MSG: &str = "Input should be a valid dictionary or object to extract fields from";

fn object<'a>(
    value: &'a Value,
    path: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<&'a serde_json::Map<String, Value>> {
    let map = value.as_object();
    if map.is_none() {
        errors.push(FieldError::body(
            "model_attributes_type",
            path,
            OBJECT_MSG,
            value.clone(),
        ));
    }
    map
}

/// A required field of `parent` (at `path`): pydantic's `missing` when absent.
fn field<'a>(
    parent: &'a serde_json::Map<String, Value>,
    path: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<&'a Value> {
    let name = path.last().copied().unwrap_or_default();
    let value = parent.get(name);
    if value.is_none() {
        errors.push(FieldError::body(
            "missing",
            path,
            "Field required",
            Value::Object(parent.clone()),
        ));
    }
    value
}

fn string(value: &Value, path: &[&str], errors: &mut Vec<FieldError>) -> Option<String> {
    let s = value.as_str().map(str::to_owned);
    if s.is_none() {
        errors.push(FieldError::body(
            "string_type",
            path,
            "Input should be a valid string",
            value.clone(),
        ));
    }
    s
}

/// The character offset of a 1-based line and column, as Python's `json` counts positions.
fn char_offset(body: &[u8], line: usize, column: usize) -> usize {
    let text = String::from_utf8_lossy(body);
    let before: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.chars().count())
        .sum();
    before + column
}

/// Parses and validates the body; `Err` is every problem found, in field order.
pub fn parse(body: &[u8]) -> Result<CreateRequest, Vec<FieldError>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![FieldError::body(
            "missing",
            &[],
            "Field required",
            Value::Null,
        )]);
    }
    let value: Value = serde_json::from_slice(body).map_err(|fault| {
        let mut e = FieldError::body("json_invalid", &[], "JSON decode error", json!({}));
        e.loc
            .push(json!(char_offset(body, fault.line(), fault.column())));
        vec![e.with_ctx(json!({ "error": "Expecting value" }))]
    })?;
    let mut errors = Vec::new();
    let root = object(&value, &[], &mut errors);
    let mut source = None;
    let mut job_type = None;
    let mut configuration_id = None;
    if let Some(root) = root {
        let path = ["source_directory_id"];
        source = field(root, &path, &mut errors).and_then(|v| string(v, &path, &mut errors));
        let config = field(root, &["config"], &mut errors)
            .and_then(|v| object(v, &["config"], &mut errors))
            .and_then(|c| field(c, &["config", "job"], &mut errors))
            .and_then(|v| object(v, &["config", "job"], &mut errors));
        if let Some(job) = config {
            let path = ["config", "job", "type"];
            job_type = field(job, &path, &mut errors).and_then(|v| {
                let parsed = v.as_str().and_then(BatchJobType::parse);
                if parsed.is_none() {
                    let names = BatchJobType::ALL.map(BatchJobType::as_str);
                    let mut e = choice_error("literal_error", "", &names, "");
                    e.loc = std::iter::once("body")
                        .chain(path)
                        .map(|p| json!(p))
                        .collect();
                    e.input = v.clone();
                    errors.push(e);
                }
                parsed
            });
            let path = ["config", "job", "configuration_id"];
            configuration_id =
                field(job, &path, &mut errors).and_then(|v| string(v, &path, &mut errors));
        }
    }
    match (source, job_type, configuration_id) {
        (Some(source_directory_id), Some(job_type), Some(configuration_id))
            if errors.is_empty() =>
        {
            Ok(CreateRequest {
                source_directory_id,
                job_type,
                configuration_id,
            })
        }
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(body: &str) -> Vec<(String, String)> {
        parse(body.as_bytes())
            .unwrap_err()
            .iter()
            .map(|e| {
                let loc: Vec<String> = e
                    .loc
                    .iter()
                    .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                    .collect();
                (e.kind.to_owned(), loc.join("."))
            })
            .collect()
    }

    #[test]
    fn accepts_the_sdk_body() {
        let r = parse(br#"{"source_directory_id":"dir-1","config":{"job":{"type":"extract_v2","configuration_id":"cfg-1"}},"webhook_configurations":[]}"#).unwrap();
        assert_eq!(r.job_type, BatchJobType::ExtractV2);
        assert_eq!(r.source_directory_id, "dir-1");
    }

    #[test]
    fn reports_like_pydantic() {
        let k = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(kinds(""), [k("missing", "body")]);
        assert_eq!(kinds("{"), [k("json_invalid", "body.1")]);
        assert_eq!(kinds("[]"), [k("model_attributes_type", "body")]);
        assert_eq!(
            kinds("{}"),
            [
                k("missing", "body.source_directory_id"),
                k("missing", "body.config")
            ]
        );
        assert_eq!(
            kinds(r#"{"source_directory_id":1,"config":{"job":{"type":"parse"}}}"#),
            [
                k("string_type", "body.source_directory_id"),
                k("literal_error", "body.config.job.type"),
                k("missing", "body.config.job.configuration_id"),
            ]
        );
        let e = parse(
            br#"{"source_directory_id":"d","config":{"job":{"type":"x","configuration_id":"c"}}}"#,
        )
        .unwrap_err();
        assert_eq!(e[0].msg, "Input should be 'parse_v2' or 'extract_v2'");
        assert_eq!(e[0].input, json!("x"));
    }
}
