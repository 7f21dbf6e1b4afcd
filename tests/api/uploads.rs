//! Direct uploads (presign → real PUT → confirm) and uploads through the broker,
//! each run against the embedded S3 and against SeaweedFS.

use std::time::Duration;

use chatgenius_files::events::{Event, FileUploadComplete};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{PNG, Store, TestApp, TestUser, assert_error, on_every_store, spawn_app_on};

on_every_store!(
    presign_put_confirm_records_the_file_and_announces_it,
    store_refuses_bodies_that_differ_from_what_was_signed,
    wrong_sha256_is_refused_and_nothing_is_kept,
    a_declared_sha256_is_read_back_from_a_store_that_verifies_it,
    confirm_before_upload_is_object_missing,
    html_declared_as_png_is_rejected_and_deleted,
    double_and_concurrent_confirms_yield_one_file,
    abort_deletes_the_object_and_closes_the_upload,
    upload_through_the_broker_streams_small_and_multipart_files,
    upload_through_the_broker_cuts_off_over_the_limit,
    an_upload_through_the_broker_its_client_cuts_off_keeps_no_part,
);

struct Setup {
    app: TestApp,
    alice: TestUser,
    channel: i64,
}

async fn setup(store: &Store, overrides: &[(&str, &str)]) -> Setup {
    let app = spawn_app_on(store, overrides).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    Setup { app, alice, channel }
}

async fn presign(s: &Setup, name: &str, content_type: &str, size: i64, extra: Value) -> reqwest::Response {
    let mut body = json!({ "channel_id": s.channel, "file_name": name, "content_type": content_type, "size": size });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    s.app.post(&s.alice, "/files/presign", body).await
}

async fn presign_ok(s: &Setup, name: &str, content_type: &str, size: usize) -> Value {
    let resp = presign(s, name, content_type, size as i64, json!({})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// PUTs `body` to a presigned URL with the headers it came with (except the
/// length, which the client computes) and any overrides.
async fn put(app: &TestApp, presigned: &Value, body: Vec<u8>, overrides: &[(&str, &str)]) -> StatusCode {
    let mut req = app.client.put(presigned["url"].as_str().unwrap());
    for (name, value) in presigned["headers"].as_object().unwrap() {
        if name != "content-length" && !overrides.iter().any(|(n, _)| n == name) {
            req = req.header(name, value.as_str().unwrap());
        }
    }
    for (name, value) in overrides {
        req = req.header(*name, *value);
    }
    req.body(body).send().await.unwrap().status()
}

async fn confirm(s: &Setup, upload_id: &Value) -> reqwest::Response {
    s.app.post(&s.alice, &format!("/files/uploads/{}/confirm", upload_id.as_str().unwrap()), json!({})).await
}

async fn object_exists(app: &TestApp, key: &str) -> bool {
    app.deps.storage.head(key).await.unwrap().is_some()
}

async fn objects_under_uploads(app: &TestApp) -> usize {
    let out = app
        .deps
        .storage
        .client()
        .list_objects_v2()
        .bucket(app.deps.storage.bucket())
        .prefix("uploads/")
        .send()
        .await
        .unwrap();
    out.key_count().unwrap_or(0) as usize
}

async fn presign_put_confirm_records_the_file_and_announces_it(store: Store) {
    let s = setup(&store, &[]).await;
    let mut events = s.app.events().await;
    let presigned = presign_ok(&s, "pixel.png", "image/png", PNG.len()).await;
    assert_eq!(presigned["method"], "PUT");
    let key = presigned["key"].as_str().unwrap();
    assert!(key.starts_with(&format!("uploads/{}/", s.channel)) && key.ends_with("/pixel.png"), "{key}");
    assert_eq!(put(&s.app, &presigned, PNG.to_vec(), &[]).await, StatusCode::OK);

    let resp = confirm(&s, &presigned["upload_id"]).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let file: Value = resp.json().await.unwrap();
    assert_eq!(file["file_name"], "pixel.png");
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(file["file_size"], PNG.len());
    assert_eq!(file["channel_id"], s.channel);
    assert_eq!(file["uploaded_by"], s.alice.id);
    assert!(file["message_id"].is_null());
    assert_eq!(file["download_url"], format!("/files/download/{}", file["id"]));

    let event = events.next().await;
    let Event::FileUploadComplete(FileUploadComplete { channel_id, file: announced, .. }) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(i64::from(*channel_id), s.channel);
    assert_eq!(i64::from(announced.id), file["id"].as_i64().unwrap());

    let mut fetched: Value = s.app.get(&s.alice, &format!("/files/{}", file["id"])).await.json().await.unwrap();
    // The preview job may already have run: the record is the same, with or without its preview.
    let (image, preview) = (fetched["image"].take(), fetched["preview"].take());
    if !preview.is_null() {
        assert_eq!(image, json!({ "width": 1, "height": 1 }));
        assert_eq!(preview["url"], format!("/files/{}/preview", file["id"]));
    }
    assert_eq!(fetched, file);
    let bob = s.app.login("bob").await;
    assert_error(s.app.get(&bob, &format!("/files/{}", file["id"])).await, StatusCode::NOT_FOUND, "not_found").await;
}

async fn store_refuses_bodies_that_differ_from_what_was_signed(store: Store) {
    let s = setup(&store, &[]).await;
    let body = b"plain words for the store".to_vec();

    let bigger = presign_ok(&s, "a.txt", "text/plain", body.len()).await;
    let mut longer = body.clone();
    longer.extend_from_slice(b" and more");
    assert!(put(&s.app, &bigger, longer, &[]).await.is_client_error(), "bigger body than signed");

    let other_type = presign_ok(&s, "b.txt", "text/plain", body.len()).await;
    assert!(
        put(&s.app, &other_type, body.clone(), &[("content-type", "text/html")]).await.is_client_error(),
        "other type"
    );

    let tampered = presign_ok(&s, "c.txt", "text/plain", body.len()).await;
    let url = tampered["url"].as_str().unwrap();
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = format!("{}{}{}", &url[..at], if &url[at..at + 1] == "0" { "1" } else { "0" }, &url[at + 1..]);
    let mut tampered_req = tampered.clone();
    tampered_req["url"] = json!(flipped);
    assert!(put(&s.app, &tampered_req, body.clone(), &[]).await.is_client_error(), "tampered signature");

    let expiring = spawn_app_on(&store, &[("upload-url-ttl-secs", "1")]).await;
    let bob = expiring.login("bob").await;
    let channel = expiring.create_channel(&bob, "x").await;
    let resp = expiring
        .post(
            &bob,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "d.txt", "content_type": "text/plain", "size": body.len() }),
        )
        .await;
    let expired: Value = resp.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(put(&expiring, &expired, body.clone(), &[]).await.is_client_error(), "expired URL");

    for p in [&bigger, &other_type, &tampered] {
        assert!(!object_exists(&s.app, p["key"].as_str().unwrap()).await, "nothing stored for {}", p["key"]);
    }
    assert!(!object_exists(&expiring, expired["key"].as_str().unwrap()).await);
}

async fn wrong_sha256_is_refused_and_nothing_is_kept(store: Store) {
    let s = setup(&store, &[]).await;
    let body = b"the real content".to_vec();
    let wrong = hex::encode(Sha256::digest(b"some other content"));
    let resp = presign(&s, "sum.txt", "text/plain", body.len() as i64, json!({ "sha256": wrong })).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let presigned: Value = resp.json().await.unwrap();
    let url = presigned["url"].as_str().unwrap();
    assert!(
        url.contains(
            "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-checksum-sha256"
        ),
        "{}",
        chatgenius_files::storage::presign::redact(url)
    );
    assert_eq!(
        put(&s.app, &presigned, body, &[]).await,
        StatusCode::BAD_REQUEST,
        "the store checks the signed checksum"
    );
    // Nothing was stored (s3s-fs alone would keep the body; the embedded bridge checks it first).
    assert!(!object_exists(&s.app, presigned["key"].as_str().unwrap()).await);
    assert_error(confirm(&s, &presigned["upload_id"]).await, StatusCode::UNPROCESSABLE_ENTITY, "object_missing").await;

    // The right checksum goes through.
    let body = b"checked content".to_vec();
    let right = hex::encode(Sha256::digest(&body));
    let presigned: Value =
        presign(&s, "ok.txt", "text/plain", body.len() as i64, json!({ "sha256": right })).await.json().await.unwrap();
    assert_eq!(put(&s.app, &presigned, body, &[]).await, StatusCode::OK);
    let file: Value = confirm(&s, &presigned["upload_id"]).await.json().await.unwrap();
    assert_eq!(file["sha256"], right);
}

async fn a_declared_sha256_is_read_back_from_a_store_that_verifies_it(store: Store) {
    let s = setup(&store, &[]).await;
    let storage = &s.app.deps.storage;
    let verifies = storage.probe_checksums().await;
    if matches!(store, Store::SeaweedFs { .. }) {
        assert!(verifies, "SeaweedFS refuses a body that does not match its signed SHA-256 and reports the checksum");
    }
    let body = b"checked content".to_vec();
    let sha256 = hex::encode(Sha256::digest(&body));
    let with: Value =
        presign(&s, "a.txt", "text/plain", body.len() as i64, json!({ "sha256": sha256 })).await.json().await.unwrap();
    assert_eq!(put(&s.app, &with, body.clone(), &[]).await, StatusCode::OK);
    let without = presign_ok(&s, "b.txt", "text/plain", body.len()).await;
    assert_eq!(put(&s.app, &without, body, &[]).await, StatusCode::OK);
    let read_back = storage.verified_sha256(with["key"].as_str().unwrap()).await.unwrap();
    assert_eq!(read_back, verifies.then_some(sha256.clone()), "the store's own check, when it makes one");
    assert_eq!(storage.verified_sha256(without["key"].as_str().unwrap()).await.unwrap(), None);
    // Either way the confirm records the declared checksum.
    let file: Value = confirm(&s, &with["upload_id"]).await.json().await.unwrap();
    assert_eq!(file["sha256"], sha256);
    // The probe left nothing behind.
    let keys = storage.list_page("uploads/", None).await.unwrap();
    assert!(keys.iter().all(|(key, _)| !key.contains("checksum-probe")), "{keys:?}");
}

async fn confirm_before_upload_is_object_missing(store: Store) {
    let s = setup(&store, &[]).await;
    let presigned = presign_ok(&s, "later.png", "image/png", PNG.len()).await;
    assert_error(confirm(&s, &presigned["upload_id"]).await, StatusCode::UNPROCESSABLE_ENTITY, "object_missing").await;
    // The upload stays open: upload now and confirm again.
    assert_eq!(put(&s.app, &presigned, PNG.to_vec(), &[]).await, StatusCode::OK);
    assert_eq!(confirm(&s, &presigned["upload_id"]).await.status(), StatusCode::CREATED);
}

async fn html_declared_as_png_is_rejected_and_deleted(store: Store) {
    let s = setup(&store, &[]).await;
    for body in [
        &b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"[..],
        b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0\xb8\0\0\0\0\0\0\0@\0\0\0",
    ] {
        let presigned = presign_ok(&s, "cat.png", "image/png", body.len()).await;
        assert_eq!(put(&s.app, &presigned, body.to_vec(), &[]).await, StatusCode::OK);
        assert_error(confirm(&s, &presigned["upload_id"]).await, StatusCode::UNPROCESSABLE_ENTITY, "content_mismatch")
            .await;
        assert!(!object_exists(&s.app, presigned["key"].as_str().unwrap()).await, "rejected object deleted");
        assert_error(confirm(&s, &presigned["upload_id"]).await, StatusCode::CONFLICT, "upload_not_pending").await;
    }
    let count = chatgenius_files::entity::file_upload::Entity::find().count(&s.app.deps.db).await.unwrap();
    assert_eq!(count, 0);
}

async fn double_and_concurrent_confirms_yield_one_file(store: Store) {
    let s = setup(&store, &[]).await;
    let presigned = presign_ok(&s, "once.png", "image/png", PNG.len()).await;
    assert_eq!(put(&s.app, &presigned, PNG.to_vec(), &[]).await, StatusCode::OK);
    let results = futures_util::future::join_all((0..6).map(|_| confirm(&s, &presigned["upload_id"]))).await;
    let mut statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 201]);
    let mut ids = Vec::new();
    for r in results {
        ids.push(r.json::<Value>().await.unwrap()["id"].as_i64().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every confirm returns the same file");
    let rows = chatgenius_files::entity::file_upload::Entity::find()
        .filter(chatgenius_files::entity::file_upload::Column::S3Key.eq(presigned["key"].as_str().unwrap()))
        .count(&s.app.deps.db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(confirm(&s, &presigned["upload_id"]).await.status(), StatusCode::OK);
}

async fn abort_deletes_the_object_and_closes_the_upload(store: Store) {
    let s = setup(&store, &[]).await;
    let presigned = presign_ok(&s, "gone.png", "image/png", PNG.len()).await;
    assert_eq!(put(&s.app, &presigned, PNG.to_vec(), &[]).await, StatusCode::OK);
    let path = format!("/files/uploads/{}", presigned["upload_id"].as_str().unwrap());
    let bob = s.app.login("bob").await;
    assert_error(s.app.delete(&bob, &path).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(s.app.delete(&s.alice, &path).await.status(), StatusCode::NO_CONTENT);
    assert!(!object_exists(&s.app, presigned["key"].as_str().unwrap()).await);
    assert_error(confirm(&s, &presigned["upload_id"]).await, StatusCode::CONFLICT, "upload_not_pending").await;

    let kept = presign_ok(&s, "kept.png", "image/png", PNG.len()).await;
    put(&s.app, &kept, PNG.to_vec(), &[]).await;
    assert_eq!(confirm(&s, &kept["upload_id"]).await.status(), StatusCode::CREATED);
    let path = format!("/files/uploads/{}", kept["upload_id"].as_str().unwrap());
    assert_error(s.app.delete(&s.alice, &path).await, StatusCode::CONFLICT, "upload_confirmed").await;
}

fn form(channel: i64, name: &str, content_type: &str, body: Vec<u8>) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(body).file_name(name.to_owned()).mime_str(content_type).unwrap();
    reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", part)
}

async fn upload_through_the_broker_streams_small_and_multipart_files(store: Store) {
    let s = setup(&store, &[]).await;
    let mut events = s.app.events().await;
    // Four parts, three sent at once: they complete in any order.
    let big: Vec<u8> = (0..25 * 1024 * 1024 + 123).map(|i| (i % 251) as u8).collect();
    for (name, content_type, body) in [
        ("pixel.png", "image/png", PNG.to_vec()),
        ("big.bin.zip", "application/zip", [b"PK\x03\x04".to_vec(), big].concat()),
    ] {
        let resp = s
            .app
            .client
            .post(s.app.url("/files/upload"))
            .bearer_auth(&s.alice.token)
            .multipart(form(s.channel, name, content_type, body.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{name}");
        let file: Value = resp.json().await.unwrap();
        assert_eq!(file["file_size"], body.len(), "{name}");
        assert_eq!(file["content_type"], content_type);
        let id = file["id"].as_i64().unwrap();
        let model = chatgenius_files::entity::file_upload::Entity::find_by_id(id as i32)
            .one(&s.app.deps.db)
            .await
            .unwrap()
            .unwrap();
        let stored = s
            .app
            .deps
            .storage
            .client()
            .get_object()
            .bucket(s.app.deps.storage.bucket())
            .key(&model.s3_key)
            .send()
            .await
            .unwrap();
        assert_eq!(stored.body.collect().await.unwrap().into_bytes().as_ref(), &body[..], "{name} stored intact");
        let event = events.next().await;
        assert_eq!(event.event.channel_id().map(i64::from), Some(s.channel));
    }

    let disguised = s
        .app
        .client
        .post(s.app.url("/files/upload"))
        .bearer_auth(&s.alice.token)
        .multipart(form(s.channel, "x.png", "image/png", b"<html><script>x</script></html>".to_vec()))
        .send()
        .await
        .unwrap();
    assert_error(disguised, StatusCode::UNPROCESSABLE_ENTITY, "content_mismatch").await;
    assert_eq!(objects_under_uploads(&s.app).await, 2);
}

async fn upload_through_the_broker_cuts_off_over_the_limit(store: Store) {
    let s = setup(&store, &[("max-file-size-mb", "1")]).await;
    // Chunked, so the broker cannot know the size up front and must count while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..24).map(|_| Ok(vec![b'a'; 64 * 1024])).collect();
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .file_name("huge.txt")
        .mime_str("text/plain")
        .unwrap();
    let form = reqwest::multipart::Form::new().text("channel_id", s.channel.to_string()).part("file", part);
    let resp =
        s.app.client.post(s.app.url("/files/upload")).bearer_auth(&s.alice.token).multipart(form).send().await.unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;

    // With a Content-Length the broker refuses before reading.
    let known = s
        .app
        .client
        .post(s.app.url("/files/upload"))
        .bearer_auth(&s.alice.token)
        .multipart(form_sized(s.channel, 2 * 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_error(known, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    assert_eq!(objects_under_uploads(&s.app).await, 0, "nothing left in the bucket");
    assert_eq!(chatgenius_files::entity::file_upload::Entity::find().count(&s.app.deps.db).await.unwrap(), 0);
}

fn form_sized(channel: i64, len: usize) -> reqwest::multipart::Form {
    form(channel, "big.txt", "text/plain", vec![b'b'; len])
}

// Validation and authorisation do not depend on the store: embedded only.

#[tokio::test]
async fn presign_validates_size_type_name_and_membership() {
    let s = setup(&Store::Embedded, &[("max-file-size-mb", "1"), ("allowed-file-types", "image/*,text/plain")]).await;
    assert_error(
        presign(&s, "big.png", "image/png", 1024 * 1024 + 1, json!({})).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
    )
    .await;
    assert_error(
        presign(&s, "a.pdf", "application/pdf", 10, json!({})).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "type_not_allowed",
    )
    .await;
    assert_error(presign(&s, "a.png", "image/png", 0, json!({})).await, StatusCode::BAD_REQUEST, "invalid_size").await;
    assert_error(presign(&s, "a.png", "image/png", -5, json!({})).await, StatusCode::BAD_REQUEST, "invalid_size").await;
    assert_error(presign(&s, "a.jpg", "image/png", 10, json!({})).await, StatusCode::BAD_REQUEST, "extension_mismatch")
        .await;
    assert_error(
        presign(&s, "a.png", "not a type", 10, json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalid_content_type",
    )
    .await;
    assert_error(
        presign(&s, "a.png", "image/png", 10, json!({ "sha256": "xyz" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_sha256",
    )
    .await;

    let long = format!("{}.png", "n".repeat(252));
    for name in [
        "",
        "  ",
        "../../etc/passwd",
        "a/b.png",
        "a\\b.png",
        "..",
        "a\r\nX-Injected: 1.png",
        "nul\0.png",
        "evil\u{202E}gnp.exe",
        "zero\u{200B}width.png",
        long.as_str(),
    ] {
        assert_error(presign(&s, name, "image/png", 10, json!({})).await, StatusCode::BAD_REQUEST, "invalid_file_name")
            .await;
    }

    let mallory = s.app.login("mallory").await;
    let resp = s
        .app
        .post(
            &mallory,
            "/files/presign",
            json!({ "channel_id": s.channel, "file_name": "a.png", "content_type": "image/png", "size": 10 }),
        )
        .await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn presign_attaches_only_to_the_callers_own_message_in_that_channel() {
    let s = setup(&Store::Embedded, &[]).await;
    let bob = s.app.login("bob").await;
    s.app.add_member(&s.alice, s.channel, &bob).await;
    let bobs: Value = s
        .app
        .post(&bob, &format!("/channels/{}/messages", s.channel), json!({ "content": "mine" }))
        .await
        .json()
        .await
        .unwrap();
    let own: Value = s
        .app
        .post(&s.alice, &format!("/channels/{}/messages", s.channel), json!({ "content": "hers" }))
        .await
        .json()
        .await
        .unwrap();
    let other_channel = s.app.create_channel(&s.alice, "other").await;

    assert_error(
        presign(&s, "a.png", "image/png", PNG.len() as i64, json!({ "message_id": bobs["id"] })).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let wrong_channel = s.app.post(&s.alice, "/files/presign", json!({ "channel_id": other_channel, "message_id": own["id"], "file_name": "a.png", "content_type": "image/png", "size": 10 })).await;
    assert_error(wrong_channel, StatusCode::NOT_FOUND, "not_found").await;

    let presigned: Value = presign(&s, "a.png", "image/png", PNG.len() as i64, json!({ "message_id": own["id"] }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(put(&s.app, &presigned, PNG.to_vec(), &[]).await, StatusCode::OK);
    let file: Value = confirm(&s, &presigned["upload_id"]).await.json().await.unwrap();
    assert_eq!(file["message_id"], own["id"]);

    let other_user = s
        .app
        .post(&bob, &format!("/files/uploads/{}/confirm", presigned["upload_id"].as_str().unwrap()), json!({}))
        .await;
    assert_error(other_user, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn presigned_put_signs_length_type_create_only_and_host() {
    let s = setup(&Store::Embedded, &[]).await;
    let presigned = presign_ok(&s, "a.png", "image/png", 42).await;
    let url = reqwest::Url::parse(presigned["url"].as_str().unwrap()).unwrap();
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(params["X-Amz-SignedHeaders"], "content-length;content-type;host;if-none-match");
    assert_eq!(params["X-Amz-Expires"], "900");
    for name in params.keys() {
        let lower = name.to_ascii_lowercase();
        assert!(
            !lower.starts_with("x-amz-checksum") && lower != "x-amz-sdk-checksum-algorithm",
            "stray parameter {name}"
        );
    }
    assert_eq!(presigned["headers"]["content-type"], "image/png");
    assert_eq!(presigned["headers"]["content-length"], "42");
    assert_eq!(presigned["headers"]["if-none-match"], "*");
}

#[tokio::test]
async fn presign_and_confirm_are_rate_limited_per_user() {
    let s = setup(&Store::Embedded, &[("presign-rate-per-min", "2"), ("confirm-rate-per-min", "1")]).await;
    presign_ok(&s, "a.png", "image/png", 10).await;
    let second = presign_ok(&s, "b.png", "image/png", 10).await;
    let limited = presign(&s, "c.png", "image/png", 10, json!({})).await;
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_error(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Another user has a budget of their own.
    let bob = s.app.login("bob").await;
    let channel = s.app.create_channel(&bob, "b").await;
    let resp = s
        .app
        .post(
            &bob,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "a.png", "content_type": "image/png", "size": 10 }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    confirm(&s, &second["upload_id"]).await;
    assert_error(confirm(&s, &second["upload_id"]).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn confirm_answers_503_while_the_store_is_down() {
    let s = setup(&Store::Embedded, &[]).await;
    let presigned = presign_ok(&s, "a.png", "image/png", PNG.len()).await;
    put(&s.app, &presigned, PNG.to_vec(), &[]).await;
    s.app.s3_stopper.as_ref().unwrap().notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_error(confirm(&s, &presigned["upload_id"]).await, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        .await;
}

/// Files of the embedded store's multipart uploads (s3s-fs keeps each part
/// as a file named after its upload id) under `dir`.
fn embedded_part_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                embedded_part_files(&path)
            } else {
                usize::from(entry.file_name().to_string_lossy().contains("upload_id"))
            }
        })
        .sum()
}

async fn an_upload_through_the_broker_its_client_cuts_off_keeps_no_part(store: Store) {
    let s = setup(&store, &[]).await;
    // 33 MiB arrive, then the client's body fails: parts were being sent.
    let chunks = (0..40).map(|i| if i < 33 { Ok(vec![b'c'; 1024 * 1024]) } else { Err(std::io::Error::other("gone")) });
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .file_name("cut.txt")
        .mime_str("text/plain")
        .unwrap();
    let form = reqwest::multipart::Form::new().text("channel_id", s.channel.to_string()).part("file", part);
    let sent = s.app.client.post(s.app.url("/files/upload")).bearer_auth(&s.alice.token).multipart(form).send().await;
    assert!(sent.is_err() || !sent.unwrap().status().is_success());
    // The broker closes the upload once the parts being sent are done.
    let mut closed = false;
    for _ in 0..100 {
        let open = chatgenius_files::entity::pending_upload::Entity::find()
            .filter(chatgenius_files::entity::pending_upload::Column::State.eq("pending"))
            .count(&s.app.deps.db)
            .await
            .unwrap();
        if open == 0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the cut-off upload was closed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(objects_under_uploads(&s.app).await, 0);
    match store {
        Store::Embedded => assert_eq!(embedded_part_files(s.app.data_dir()), 0, "no part left on disk"),
        Store::SeaweedFs { .. } => assert!(s.app.deps.storage.list_multipart("uploads/").await.unwrap().is_empty()),
    }
}
