//! The embedded S3 endpoint checks SigV4 and answers CORS for allowed origins only.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{TestApp, spawn_app};

async fn presigned_put(app: &TestApp, key: &str, body: &[u8], ttl: Duration) -> String {
    app.deps.storage.presigner().put_object(key, "text/plain", body.len() as u64, None, ttl).unwrap().url
}

async fn put(app: &TestApp, url: &str, body: &'static [u8]) -> StatusCode {
    app.client
        .put(url)
        .header("content-type", "text/plain")
        .header("if-none-match", "*")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn embedded_s3_accepts_a_correct_presigned_put_and_refuses_the_rest() {
    let app = spawn_app().await;
    let bucket = app.deps.storage.bucket().to_owned();
    let body: &'static [u8] = b"hello embedded s3";

    let unsigned = format!("{}/{bucket}/unsigned.txt", app.s3_endpoint);
    assert_eq!(put(&app, &unsigned, body).await, StatusCode::FORBIDDEN, "unsigned PUT");

    let url = presigned_put(&app, "tampered.txt", body, Duration::from_secs(60)).await;
    let (before, signature) = url.split_once("X-Amz-Signature=").unwrap();
    let flipped: String = signature.chars().rev().collect();
    assert_eq!(put(&app, &format!("{before}X-Amz-Signature={flipped}"), body).await, StatusCode::FORBIDDEN, "tampered");

    let expired = presigned_put(&app, "expired.txt", body, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(put(&app, &expired, body).await, StatusCode::FORBIDDEN, "expired");

    let good = presigned_put(&app, "good.txt", body, Duration::from_secs(60)).await;
    assert_eq!(put(&app, &good, b"other size!").await, StatusCode::FORBIDDEN, "different length than signed");
    assert_eq!(put(&app, &good, body).await, StatusCode::OK, "correct presigned PUT");

    let stored = app.deps.storage.client().get_object().bucket(&bucket).key("good.txt").send().await.unwrap();
    assert_eq!(stored.body.collect().await.unwrap().into_bytes().as_ref(), body);
    for key in ["unsigned.txt", "tampered.txt", "expired.txt"] {
        let head = app.deps.storage.client().head_object().bucket(&bucket).key(key).send().await;
        assert!(head.is_err(), "{key} must not exist");
    }
}

#[tokio::test]
async fn embedded_s3_answers_cors_preflight_only_for_allowed_origins() {
    let app = spawn_app().await;
    let url = format!("{}/{}/some/key.png", app.s3_endpoint, app.deps.storage.bucket());
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
    };

    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert!(allowed.status().is_success(), "allowed origin: {}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "http://localhost:3000");
    let methods = allowed.headers()["access-control-allow-methods"].to_str().unwrap().to_ascii_uppercase();
    assert!(methods.contains("PUT"), "{methods}");

    let foreign = preflight("http://evil.example").await.unwrap();
    assert!(foreign.headers().get("access-control-allow-origin").is_none(), "foreign origin gets no CORS grant");
    assert!(!foreign.status().is_success(), "foreign origin preflight refused: {}", foreign.status());

    // Actual responses expose ETag to allowed origins (multipart uploads need it).
    let get = app.client.get(&url).header("origin", "http://localhost:3000").send().await.unwrap();
    let exposed = get.headers().get("access-control-expose-headers").map(|v| v.to_str().unwrap().to_ascii_lowercase());
    assert!(exposed.is_some_and(|e| e.contains("etag")), "ETag exposed");
}

#[tokio::test]
async fn a_deleted_object_leaves_no_metadata_or_folders_behind() {
    let app = spawn_app().await;
    let storage = &app.deps.storage;
    let root = app.data_dir().join("s3");
    let entries = || std::fs::read_dir(&root).unwrap().count();
    let before = entries();
    storage.put("uploads/7/abc/notes.txt", "text/plain", bytes::Bytes::from_static(b"hello")).await.unwrap();
    assert!(entries() > before, "s3s-fs keeps metadata files beside the bucket");
    storage.delete("uploads/7/abc/notes.txt").await.unwrap();
    assert_eq!(entries(), before, "the object's metadata files are gone");
    let uploads = root.join(storage.bucket()).join("uploads");
    assert!(!uploads.join("7").exists(), "its empty folders are gone");
}
