//! Messages with files, downloads through the real presigned GET, deletes,
//! statistics and the download rate limit.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chatgenius_files::{
    events::{Event, FileDeleted, MessageCreated, MessageUpdated},
    ratelimit::Action,
    service::messages,
};
use reqwest::{StatusCode, redirect::Policy};
use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

#[tokio::test]
async fn files_are_attached_when_posting_and_listed_with_their_messages() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let mut events = app.events().await;
    let a = app.upload(&alice, channel, None, "a.txt", "text/plain", b"first").await;
    let b = app.upload(&alice, channel, None, "b.png", "image/png", PNG).await;

    let resp = app
        .post(
            &alice,
            &format!("/channels/{channel}/messages"),
            json!({ "content": "", "file_ids": [a["id"], b["id"]] }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let message: Value = resp.json().await.unwrap();
    let names: Vec<_> = message["files"].as_array().unwrap().iter().map(|f| f["file_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.txt", "b.png"]);
    assert_eq!(message["files"][0]["message_id"], message["id"]);

    let created = loop {
        let event = events.next().await;
        if let Event::MessageCreated(MessageCreated { message, .. }) = &event.event {
            break message.clone();
        }
    };
    assert_eq!(created.files.len(), 2);

    let page: Value = app.get(&alice, &format!("/channels/{channel}/messages")).await.json().await.unwrap();
    assert_eq!(page["messages"][0]["files"].as_array().unwrap().len(), 2);
    assert_eq!(page["messages"][0]["files"][1]["download_url"], format!("/files/download/{}", b["id"]));

    // Attaching again, someone else's file, a file of another channel, a deleted file: refused, nothing posted.
    let bob = app.login("bob").await;
    app.add_member(&alice, channel, &bob).await;
    let bobs = app.upload(&bob, channel, None, "bob.txt", "text/plain", b"bob").await;
    let other_channel = app.create_channel(&alice, "other").await;
    let elsewhere = app.upload(&alice, other_channel, None, "x.txt", "text/plain", b"x").await;
    let deleted = app.upload(&alice, channel, None, "gone.txt", "text/plain", b"gone").await;
    assert_eq!(app.delete(&alice, &format!("/files/{}", deleted["id"])).await.status(), StatusCode::NO_CONTENT);
    let fresh = app.upload(&alice, channel, None, "fresh.txt", "text/plain", b"fresh").await;
    for (bad, why) in [
        (&a, "already attached"),
        (&bobs, "not your upload"),
        (&elsewhere, "another channel"),
        (&deleted, "is deleted"),
    ] {
        let resp = app
            .post(
                &alice,
                &format!("/channels/{channel}/messages"),
                json!({ "content": "x", "file_ids": [fresh["id"], bad["id"]] }),
            )
            .await;
        let body = assert_error(resp, StatusCode::CONFLICT, "file_not_attachable").await;
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{why}: {body}");
    }
    let unknown = app
        .post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "x", "file_ids": [999999] }))
        .await;
    assert_error(unknown, StatusCode::CONFLICT, "file_not_attachable").await;
    let page: Value = app.get(&alice, &format!("/channels/{channel}/messages")).await.json().await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "no half-posted message");
    let still_free: Value = app.get(&alice, &format!("/files/{}", fresh["id"])).await.json().await.unwrap();
    assert!(still_free["message_id"].is_null(), "nothing attached");
}

#[tokio::test]
async fn uploading_into_an_existing_message_announces_the_updated_message() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let message: Value = app
        .post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "see attached" }))
        .await
        .json()
        .await
        .unwrap();
    let mut events = app.events().await;
    let file = app.upload(&alice, channel, message["id"].as_i64(), "late.txt", "text/plain", b"late").await;
    assert_eq!(file["message_id"], message["id"]);
    let updated = loop {
        let event = events.next().await;
        if let Event::MessageUpdated(MessageUpdated { message, .. }) = &event.event {
            break message.clone();
        }
    };
    assert_eq!(i64::from(updated.id), message["id"].as_i64().unwrap());
    assert_eq!(updated.files.len(), 1);
}

#[tokio::test]
async fn a_message_page_costs_two_statements_whatever_its_size() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    for i in 0..30 {
        let content = json!({ "content": format!("m{i}") });
        let message: Value =
            app.post(&alice, &format!("/channels/{channel}/messages"), content).await.json().await.unwrap();
        if i % 3 == 0 {
            app.upload(&alice, channel, message["id"].as_i64(), "f.txt", "text/plain", b"f").await;
        }
    }
    let statements = Arc::new(AtomicUsize::new(0));
    let mut db = app.deps.db.clone();
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    for limit in [1, 10, 30] {
        statements.store(0, Ordering::SeqCst);
        let page = messages::page(&db, channel as i32, alice.id as i32, None, limit).await.unwrap();
        assert_eq!(page.len() as u64, limit);
        assert!(
            statements.load(Ordering::SeqCst) <= 2,
            "page of {limit}: {} statements",
            statements.load(Ordering::SeqCst)
        );
    }
    let with_files: usize = messages::page(&db, channel as i32, alice.id as i32, None, 30)
        .await
        .unwrap()
        .iter()
        .map(|m| m.files.len())
        .sum();
    assert_eq!(with_files, 10);
}

#[tokio::test]
async fn download_redirects_to_a_short_lived_attachment_with_the_same_bytes() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let body = "naïve café ☕ contents".as_bytes();
    let file = app.upload(&alice, channel, None, "Résumé \"final\" 日本.txt", "text/plain", body).await;

    let resp = no_redirects()
        .get(app.url(&format!("/files/download/{}", file["id"])))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let url = reqwest::Url::parse(&location).unwrap();
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(params["X-Amz-Expires"].parse::<u64>().unwrap() <= 300);
    assert_eq!(params["response-content-type"], "text/plain");

    let fetched = app.client.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.headers()["content-type"], "text/plain");
    let disposition = fetched.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert_eq!(
        disposition,
        "attachment; filename=\"R_sum_ _final_ __.txt\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22%20%E6%97%A5%E6%9C%AC.txt"
    );
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), body);

    // The redirect is followed by ordinary clients.
    let followed = app.get(&alice, &format!("/files/download/{}", file["id"])).await;
    assert_eq!(followed.bytes().await.unwrap().as_ref(), body);

    let link: Value =
        app.get(&alice, &format!("/files/download/{}?redirect=false", file["id"])).await.json().await.unwrap();
    assert!(link["url"].as_str().unwrap().contains("X-Amz-Signature="));
    assert!(link["expires_at"].is_string());

    // Inline only for safe media types.
    assert_error(
        app.get(&alice, &format!("/files/download/{}?inline=true", file["id"])).await,
        StatusCode::BAD_REQUEST,
        "inline_not_allowed",
    )
    .await;
    let png = app.upload(&alice, channel, None, "p.png", "image/png", PNG).await;
    let inline: Value = app
        .get(&alice, &format!("/files/download/{}?inline=true&redirect=false", png["id"]))
        .await
        .json()
        .await
        .unwrap();
    let shown = app.client.get(inline["url"].as_str().unwrap()).send().await.unwrap();
    assert!(shown.headers()["content-disposition"].to_str().unwrap().starts_with("inline; "));

    // Statistics: three downloads handed out for the text file, counted within moments.
    let mut counted = Value::Null;
    for _ in 0..50 {
        counted = app.get(&alice, &format!("/files/{}", file["id"])).await.json().await.unwrap();
        if counted["download_count"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted["download_count"], 3);
    assert!(counted["last_downloaded_at"].is_string());
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let logged = chatgenius_files::entity::file_download::Entity::find()
        .filter(chatgenius_files::entity::file_download::Column::FileId.eq(file["id"].as_i64().unwrap() as i32))
        .count(&app.deps.db)
        .await
        .unwrap();
    assert_eq!(logged, 3);
}

#[tokio::test]
async fn owner_deletes_and_the_file_disappears_at_once() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mallory = app.login("mallory").await;
    let channel = app.create_channel(&alice, "general").await;
    app.add_member(&alice, channel, &bob).await;
    let message: Value = app
        .post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "doc" }))
        .await
        .json()
        .await
        .unwrap();
    let file = app.upload(&alice, channel, message["id"].as_i64(), "doc.txt", "text/plain", b"doc").await;
    let path = format!("/files/{}", file["id"]);
    let mut events = app.events().await;

    assert_error(app.delete(&bob, &path).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(app.delete(&mallory, &path).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.delete(&alice, &path).await.status(), StatusCode::NO_CONTENT);
    assert_error(app.delete(&alice, &path).await, StatusCode::NOT_FOUND, "not_found").await;

    let event = events.next().await;
    let expected = FileDeleted {
        channel_id: channel as i32,
        message_id: message["id"].as_i64().map(|i| i as i32),
        file_id: file["id"].as_i64().unwrap() as i32,
    };
    assert_eq!(event.event, Event::FileDeleted(expected));
    let event = events.next().await;
    assert!(matches!(&event.event, Event::MessageUpdated(MessageUpdated { message, .. }) if message.files.is_empty()));

    assert_error(app.get(&alice, &path).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(app.get(&alice, &format!("/files/download/{}", file["id"])).await, StatusCode::NOT_FOUND, "not_found")
        .await;
    let page: Value = app.get(&bob, &format!("/channels/{channel}/messages")).await.json().await.unwrap();
    assert!(page["messages"][0]["files"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn downloads_are_rate_limited_per_user_with_retry_after() {
    let app = spawn_app_with(&[("download-rate-per-min", "2")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let file = app.upload(&alice, channel, None, "a.txt", "text/plain", b"a").await;
    let path = format!("/files/download/{}?redirect=false", file["id"]);
    assert_eq!(app.get(&alice, &path).await.status(), StatusCode::OK);
    assert_eq!(app.get(&alice, &path).await.status(), StatusCode::OK);
    let limited = app.get(&alice, &path).await;
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_error(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn limiter_memory_falls_back_after_many_distinct_users() {
    let app = spawn_app_with(&[("download-rate-per-min", "600000"), ("limiter-cleanup-secs", "1")]).await;
    for user in 0..100_000 {
        app.deps.limits.check(Action::Download, user).unwrap();
    }
    assert!(app.deps.limits.len() >= 100_000, "{} keys", app.deps.limits.len());
    let mut keys = app.deps.limits.len();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        keys = app.deps.limits.len();
        if keys < 1000 {
            break;
        }
    }
    assert!(keys < 1000, "stale keys are dropped: {keys} left");
}
