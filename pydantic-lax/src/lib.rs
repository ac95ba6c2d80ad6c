//! Query values parsed the way the API's validator, pydantic v2 in lax mode, parses them.
//!
//! Two parts of pollgate need exactly pydantic's verdicts: the gateway, which
//! rejects at its edge what the API would reject (and must never reject what
//! it would accept), and the simulated API its tests run against. Both use
//! this crate, so there is one implementation of each rule, checked against
//! one table of verdicts recorded from real pydantic (`fixtures/pydantic.json`,
//! made by `fixtures/pydantic_table.py`; pydantic 2.14.4, pydantic-core 2.50.5).
//!
//! Each module returns pydantic's error *type* and message text; shaping them
//! into a FastAPI `{"detail": [...]}` body is the caller's business.

pub mod datetime;
pub mod int;
pub mod uuid;

/// How pydantic lists the members of a `Literal[...]` or an `Enum`: `'a', 'b' or 'c'`.
pub fn expected_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn expected_lists_read_like_pydantic() {
        assert_eq!(expected_list(&["a"]), "'a'");
        assert_eq!(expected_list(&["a", "b"]), "'a' or 'b'");
        assert_eq!(expected_list(&["a", "b", "c"]), "'a', 'b' or 'c'");
    }

    /// Every case pydantic was asked about gets the same verdict here: the
    /// value, or the error type, message and context.
    #[test]
    fn agrees_with_pydantic_on_the_recorded_table() {
        let table: Value =
            serde_json::from_str(include_str!("../fixtures/pydantic.json")).expect("json");
        let cases = table["cases"].as_array().expect("cases");
        assert!(cases.len() > 1000);
        let mut disagreements = Vec::new();
        for case in cases {
            let input = case["input"].as_str().expect("input");
            let ours = match case["field"].as_str().expect("field") {
                "i" => match int::parse(input) {
                    Ok(v) => json!({ "value": v.canonical() }),
                    Err(e) => json!({ "error": { "type": e.kind(), "msg": e.msg() } }),
                },
                "u" => match uuid::parse(input) {
                    Ok(v) => json!({ "value": v.hyphenated() }),
                    Err(e) => json!({ "error": {
                        "type": "uuid_parsing",
                        "msg": uuid::message(&e),
                        "ctx": { "error": e },
                    } }),
                },
                _ => match datetime::parse(input) {
                    Ok(v) => json!({ "value": v.to_string() }),
                    Err(e) => json!({ "error": {
                        "type": e.kind,
                        "msg": e.msg(),
                        "ctx": { "error": e.error },
                    } }),
                },
            };
            let mut want = case.clone();
            let want = want.as_object_mut().expect("object");
            want.remove("field");
            want.remove("input");
            if Value::Object(want.clone()) != ours {
                disagreements.push(format!("{input:?}: pydantic {want:?}, here {ours}"));
            }
        }
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    }
}
