//! The body of `POST /api/v2/batches` (`BatchCreateRequest`), validated as FastAPI would: the
//! required fields (`source_directory_id`, `config.job.type`, `config.job.configuration_id`) with
//! pydantic's `missing`, `string_type`, `literal_error` and `model_attributes_type` errors; the
//! optional webhook fields are accepted and ignored.
//!
//! A body that is not JSON gets one `json_invalid` error. FastAPI puts the position of the
//! decode error in `loc` and Python's message in `ctx`; the simulator reports position 0 and
//! "Expecting value" whatever the fault (a known difference, in the README).

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
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        let mut e = FieldError::body("json_invalid", &[], "JSON decode error", json!({}));
        e.loc.push("0".to_owned());
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
                        .map(str::to_owned)
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
            .map(|e| (e.kind.to_owned(), e.loc.join(".")))
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
        assert_eq!(kinds("{"), [k("json_invalid", "body.0")]);
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
