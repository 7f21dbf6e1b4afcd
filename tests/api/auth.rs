//! Bearer token checks and dev login.

use std::time::Duration;

use chatgenius_files::{
    auth::{CurrentUser, TokenKeys},
    config::Secret,
};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn every_bad_token_is_refused_with_401() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let user = CurrentUser { id: alice.id as i32, username: alice.username.clone(), created_ms: 0, expires_at: 0 };
    let foreign = TokenKeys::new(&Secret::new("x".repeat(40)), Duration::from_secs(60)).issue(&user);
    let expired = app.tokens.issue_with_ttl(&user, -120);
    let mut tampered = alice.token.clone();
    tampered.insert(tampered.len() - 3, 'A');

    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some(format!("Basic {}", alice.token))),
        ("malformed", Some("Bearer not-a-jwt".into())),
        ("empty", Some("Bearer ".into())),
        ("bad signature", Some(format!("Bearer {foreign}"))),
        ("tampered", Some(format!("Bearer {tampered}"))),
        ("expired", Some(format!("Bearer {expired}"))),
    ];
    for (what, header) in cases {
        let mut req = app.client.get(app.url("/channels"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    let ok = app.get(&alice, "/auth/me").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<serde_json::Value>().await.unwrap()["id"], alice.id);
}

#[tokio::test]
async fn dev_login_returns_the_same_user_for_the_same_name() {
    let app = spawn_app().await;
    let first = app.login("bob").await;
    let second = app.login("bob").await;
    assert_eq!(first.id, second.id);
    let resp =
        app.client.post(app.url("/auth/dev-login")).json(&json!({ "username": "bad name" })).send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_username").await;
}

#[tokio::test]
async fn dev_login_is_off_when_the_operator_sets_a_jwt_secret() {
    let secret = "s".repeat(40);
    let app = spawn_app_with(&[("jwt-secret", &secret)]).await;
    let resp = app.client.post(app.url("/auth/dev-login")).json(&json!({ "username": "eve" })).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "dev_login_disabled").await;

    let on = spawn_app_with(&[("jwt-secret", &secret), ("dev-login", "true")]).await;
    on.login("eve").await;
}
