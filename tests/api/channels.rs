//! Channel membership rules: a channel you are not in looks exactly like a missing one.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn creator_becomes_member_and_lists_only_their_channels() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let general = app.create_channel(&alice, "  general ").await;
    app.create_channel(&bob, "bobs").await;

    let resp = app.get(&alice, "/channels").await;
    let body: Value = resp.json().await.unwrap();
    let channels = body["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0]["id"], general);
    assert_eq!(channels[0]["name"], "general");
    assert_eq!(channels[0]["created_by"], alice.id);

    let members: Value = app.get(&alice, &format!("/channels/{general}/members")).await.json().await.unwrap();
    assert_eq!(members["members"][0]["user"]["username"], "alice");
}

#[tokio::test]
async fn non_member_gets_the_same_404_as_for_a_missing_channel() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let mallory = app.login("mallory").await;
    let channel = app.create_channel(&alice, "secret").await;

    let hidden =
        assert_error(app.get(&mallory, &format!("/channels/{channel}")).await, StatusCode::NOT_FOUND, "not_found")
            .await;
    let missing = assert_error(app.get(&mallory, "/channels/999999").await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(hidden, missing, "no difference between hidden and missing");

    for resp in [
        app.get(&mallory, &format!("/channels/{channel}/messages")).await,
        app.get(&mallory, &format!("/channels/{channel}/members")).await,
        app.post(&mallory, &format!("/channels/{channel}/messages"), json!({ "content": "hi" })).await,
        app.post(&mallory, &format!("/channels/{channel}/members"), json!({ "username": "mallory" })).await,
        app.delete(&mallory, &format!("/channels/{channel}/members/{}", alice.id)).await,
    ] {
        let body = assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(body, missing);
    }
}

#[tokio::test]
async fn members_add_others_and_only_the_creator_removes_them() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let channel = app.create_channel(&alice, "team").await;

    app.add_member(&alice, channel, &bob).await;
    assert_eq!(app.get(&bob, &format!("/channels/{channel}")).await.status(), StatusCode::OK);
    let again = app.post(&alice, &format!("/channels/{channel}/members"), json!({ "username": "bob" })).await;
    assert_error(again, StatusCode::CONFLICT, "already_member").await;
    let nobody = app.post(&alice, &format!("/channels/{channel}/members"), json!({ "username": "nobody" })).await;
    assert_error(nobody, StatusCode::NOT_FOUND, "not_found").await;

    app.add_member(&bob, channel, &carol).await;
    let kick = app.delete(&bob, &format!("/channels/{channel}/members/{}", carol.id)).await;
    assert_error(kick, StatusCode::FORBIDDEN, "forbidden").await;

    let leave = app.delete(&carol, &format!("/channels/{channel}/members/{}", carol.id)).await;
    assert_eq!(leave.status(), StatusCode::NO_CONTENT);
    assert_error(app.get(&carol, &format!("/channels/{channel}")).await, StatusCode::NOT_FOUND, "not_found").await;

    let removed = app.delete(&alice, &format!("/channels/{channel}/members/{}", bob.id)).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_error(app.get(&bob, &format!("/channels/{channel}/messages")).await, StatusCode::NOT_FOUND, "not_found")
        .await;
}

#[tokio::test]
async fn channel_names_are_validated() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    for name in ["", "   ", "a\u{0007}b", &"x".repeat(81)] {
        let resp = app.post(&alice, "/channels", json!({ "name": name })).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_channel_name").await;
    }
}
