//! The embedded browser client and its `/config` (the client's behaviour in
//! Chromium is covered by tests/ui).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self';") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/ui/app.js">"#));
    for (path, kind) in
        [("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css"), ("/ui/icon.svg", "image/svg+xml")]
    {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
    }
    // Every module the client imports, transitively, is served as a script.
    let (mut queue, mut seen) = (vec!["app.js".to_owned()], std::collections::BTreeSet::new());
    while let Some(module) = queue.pop() {
        if !seen.insert(module.clone()) {
            continue;
        }
        let resp = app.client.get(app.url(&format!("/ui/{module}"))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{module}");
        assert_eq!(resp.headers()["content-type"], "text/javascript; charset=utf-8", "{module}");
        let source = resp.text().await.unwrap();
        for import in source.split("from './").skip(1) {
            queue.push(import.split('\'').next().unwrap().to_owned());
        }
    }
    assert!(seen.len() >= 6 && seen.contains("upload-state.js"), "{seen:?}");
    // The API still owns everything else, with its error body.
    let missing = app.client.get(app.url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"]["code"], "not_found");
}

#[tokio::test]
async fn config_exposes_the_upload_limits_without_a_token() {
    let app = spawn_app_with(&[("max-file-size-mb", "7"), ("allowed-file-types", "image/*,text/plain")]).await;
    let config: Value = app.client.get(app.url("/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["max_file_size_mb"], 7);
    assert_eq!(config["max_file_size_bytes"], 7 * 1024 * 1024);
    assert_eq!(config["allowed_file_types"], serde_json::json!(["image/*", "text/plain"]));
    assert_eq!(config["dev_login"], true);
}
