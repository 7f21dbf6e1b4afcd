//! Posting and paging through messages.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn messages_page_newest_first_with_a_capped_limit() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let resp =
            app.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": format!("m{i}") })).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["user_id"], alice.id);
        assert_eq!(body["channel_id"], channel);
        ids.push(body["id"].as_i64().unwrap());
    }

    let page: Value = app.get(&alice, &format!("/channels/{channel}/messages?limit=2")).await.json().await.unwrap();
    let got: Vec<_> =
        page["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, ["m4", "m3"]);
    assert_eq!(page["next_before"], ids[3]);

    let older: Value =
        app.get(&alice, &format!("/channels/{channel}/messages?limit=2&before={}", ids[3])).await.json().await.unwrap();
    let got: Vec<_> = older["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(got, [ids[2], ids[1]]);

    let all: Value = app.get(&alice, &format!("/channels/{channel}/messages?limit=100000")).await.json().await.unwrap();
    assert_eq!(all["messages"].as_array().unwrap().len(), 5, "limit is capped, not refused");
    assert!(all["next_before"].is_null());

    let zero = app.get(&alice, &format!("/channels/{channel}/messages?limit=0")).await;
    assert_error(zero, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn empty_or_oversized_messages_are_refused() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    for content in ["", "  \n ", &"x".repeat(4001)] {
        let resp = app.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": content })).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_content").await;
    }
}
