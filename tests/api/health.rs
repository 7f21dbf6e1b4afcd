//! Liveness and readiness.

use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn health_and_ready_answer_200_when_everything_is_up() {
    let app = spawn_app().await;
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.client.get(app.url("/ready")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn ready_names_the_object_store_when_it_is_down() {
    let app = spawn_app().await;
    app.s3_stopper.as_ref().unwrap().notify_one();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let resp = app.client.get(app.url("/ready")).send().await.unwrap();
    let body = assert_error(resp, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("storage"));
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn docs_are_served() {
    let app = spawn_app().await;
    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let spec: serde_json::Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["info"]["title"], "ChatGenius Files");
}
