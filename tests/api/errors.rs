//! Every error, including poem's own, is the one JSON body.

use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn framework_errors_use_the_json_error_body() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;

    assert_error(app.client.get(app.url("/no/such/route")).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found")
        .await;

    let bad_json = app
        .client
        .post(app.url("/channels"))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(bad_json, StatusCode::BAD_REQUEST, "invalid_request").await;

    let missing_field = app.post(&alice, "/channels", serde_json::json!({ "nam": "x" })).await;
    assert_error(missing_field, StatusCode::BAD_REQUEST, "invalid_request").await;

    let wrong_type = app
        .client
        .post(app.url("/channels"))
        .bearer_auth(&alice.token)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_error(wrong_type, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

    let bad_path = app.get(&alice, "/channels/abc").await;
    assert_error(bad_path, StatusCode::BAD_REQUEST, "invalid_request").await;

    let wrong_method = app.client.put(app.url("/channels")).bearer_auth(&alice.token).send().await.unwrap();
    assert_error(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn strings_in_bodies_must_be_json_strings() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let login = app
        .client
        .post(app.url("/auth/dev-login"))
        .json(&serde_json::json!({ "username": false }))
        .send()
        .await
        .unwrap();
    assert_error(login, StatusCode::BAD_REQUEST, "invalid_request").await;
    for body in [serde_json::json!({ "name": 12 }), serde_json::json!({ "name": true })] {
        assert_error(app.post(&alice, "/channels", body).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let channel = app.create_channel(&alice, "general").await;
    let message =
        app.post(&alice, &format!("/channels/{channel}/messages"), serde_json::json!({ "content": false })).await;
    assert_error(message, StatusCode::BAD_REQUEST, "invalid_request").await;
}
