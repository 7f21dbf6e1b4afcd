//! The committed spec matches the code, and documents every operation and schema.

use serde_json::Value;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");

#[test]
fn committed_openapi_spec_is_up_to_date() {
    let generated = chatgenius_files::api::spec_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, format!("{generated}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).expect("openapi/openapi.json is committed");
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --test api openapi` and commit it"
    );
}

#[test]
fn every_operation_schema_and_field_is_described() {
    let spec: Value = serde_json::from_str(&chatgenius_files::api::spec_json()).unwrap();
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(id.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "readable operationId {id}");
            assert!(operation_ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{id} has a summary");
            for (status, resp) in op["responses"].as_object().unwrap() {
                assert!(resp["description"].as_str().is_some_and(|s| !s.is_empty()), "{id} {status} described");
            }
        }
    }
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        assert!(schema["description"].as_str().is_some_and(|s| !s.is_empty()), "schema {name} described");
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            let described = prop["description"].is_string()
                || prop["allOf"].as_array().is_some_and(|all| all.iter().any(|p| p["description"].is_string()));
            assert!(described, "{name}.{field} described");
        }
    }
}
