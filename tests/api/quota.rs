//! Storage quotas: QUOTA_USER_MB and QUOTA_CHANNEL_MB, reserved at presign,
//! multipart start and streamed upload; `GET /files/usage`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PNG, TestApp, TestUser, assert_error, spawn_app_with};

const MIB: usize = 1024 * 1024;

async fn presign(app: &TestApp, user: &TestUser, channel: i64, size: usize) -> reqwest::Response {
    let body = json!({ "channel_id": channel, "file_name": "photo.png", "content_type": "image/png", "size": size });
    app.post(user, "/files/presign", body).await
}

async fn usage(app: &TestApp, user: &TestUser, channel: Option<i64>) -> Value {
    let path = match channel {
        Some(channel) => format!("/files/usage?channel_id={channel}"),
        None => "/files/usage".to_owned(),
    };
    let resp = app.get(user, &path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn concurrent_presigns_never_reserve_more_than_the_user_quota() {
    let app = spawn_app_with(&[("quota-user-mb", "3")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    // Eight presigns of 1 MiB at once against a 3 MiB quota: exactly three fit.
    let answers =
        futures_util::future::join_all((0..8).map(|_| async { presign(&app, &alice, channel, MIB).await })).await;
    let mut created = 0;
    for resp in answers {
        match resp.status() {
            StatusCode::CREATED => created += 1,
            _ => {
                let body = assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("of your 3.0 MiB") && message.contains("needs 1.0 MiB"), "{message}");
            }
        }
    }
    assert_eq!(created, 3);
    let mine = usage(&app, &alice, None).await;
    assert_eq!(mine["user"], json!({ "used_bytes": 3 * MIB, "limit_bytes": 3 * MIB }));
    assert_eq!(mine["channel"], Value::Null);
}

#[tokio::test]
async fn the_channel_quota_counts_every_members_files_and_deletes_free_space_at_once() {
    let app = spawn_app_with(&[("quota-channel-mb", "1")]).await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let channel = app.create_channel(&alice, "general").await;
    app.add_member(&alice, channel, &bob).await;
    let other = app.create_channel(&bob, "elsewhere").await;

    // Alice fills most of the channel with a real file.
    let big = vec![b'a'; MIB - 100];
    let file = app.upload(&alice, channel, None, "big.txt", "text/plain", &big).await;
    let resp = presign(&app, &bob, channel, 200).await;
    let body = assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert!(body["error"]["message"].as_str().unwrap().starts_with("channel storage quota exceeded"), "{body}");
    // Another channel has its own quota.
    assert_eq!(presign(&app, &bob, other, 200).await.status(), StatusCode::CREATED);
    let theirs = usage(&app, &bob, Some(channel)).await;
    assert_eq!(theirs["channel"], json!({ "used_bytes": MIB - 100, "limit_bytes": MIB }));
    assert_eq!(theirs["user"]["limit_bytes"], Value::Null, "no user quota set");

    // Deleting the file frees the channel's space at once.
    let resp = app.delete(&alice, &format!("/files/{}", file["id"])).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(&app, &bob, Some(channel)).await["channel"]["used_bytes"], 0);
    assert_eq!(presign(&app, &bob, channel, 200).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_aborted_upload_frees_its_reservation_and_outsiders_see_no_channel_usage() {
    let app = spawn_app_with(&[("quota-user-mb", "1")]).await;
    let (alice, mallory) = (app.login("alice").await, app.login("mallory").await);
    let channel = app.create_channel(&alice, "general").await;
    let presigned: Value = presign(&app, &alice, channel, MIB).await.json().await.unwrap();
    assert_error(presign(&app, &alice, channel, 1).await, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(app.abort(&alice, &presigned).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(&app, &alice, None).await["user"]["used_bytes"], 0);
    assert_eq!(presign(&app, &alice, channel, 1).await.status(), StatusCode::CREATED);

    let resp = app.get(&mallory, &format!("/files/usage?channel_id={channel}")).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn multipart_starts_and_streamed_uploads_are_held_to_the_quota_too() {
    let app = spawn_app_with(&[("quota-user-mb", "5")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let start = |size: usize| {
        let body = json!({ "channel_id": channel, "file_name": "big.png", "content_type": "image/png", "size": size });
        app.post(&alice, "/files/multipart", body)
    };
    assert_error(start(6 * MIB).await, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(start(4 * MIB).await.status(), StatusCode::CREATED);

    // 4 MiB reserved: a 2 MiB file through the broker does not fit, and nothing of it is kept.
    let mut body = PNG.to_vec();
    body.resize(2 * MIB, 0);
    let part = reqwest::multipart::Part::bytes(body).file_name("two.png").mime_str("image/png").unwrap();
    let form = reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", part);
    let resp = app.client.post(app.url("/files/upload")).bearer_auth(&alice.token).multipart(form).send().await;
    assert_error(resp.unwrap(), StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(usage(&app, &alice, None).await["user"]["used_bytes"], 4 * MIB);
    assert_eq!(app.object_count().await, 0);
}
