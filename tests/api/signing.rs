//! Presigned URLs as a real S3 server checks them: PUT, part PUT and GET for
//! keys with spaces, `+`, `%`, `~`, non-ASCII letters and long names, on the
//! embedded store and on SeaweedFS.

use aws_sdk_s3::types::CompletedPart;
use reqwest::StatusCode;
use std::time::Duration;

use crate::helpers::{Store, TestApp, on_every_store, spawn_app_on};

on_every_store!(every_presigned_url_shape_is_accepted_by_the_store);

const TTL: Duration = Duration::from_secs(300);

fn keys() -> Vec<String> {
    vec![
        "uploads/matrix/plain.txt".into(),
        "uploads/matrix/with space.txt".into(),
        "uploads/matrix/a+b=c&d.txt".into(),
        "uploads/matrix/100% done.txt".into(),
        "uploads/matrix/tilde~name_(1).txt".into(),
        "uploads/matrix/résumé ünïcödé 漢字.txt".into(),
        // The longest key the broker makes: a 10-digit channel, the upload
        // id, the longest key-safe name.
        format!("uploads/2147483647/{}/{}.txt", "0".repeat(32), "n".repeat(55)),
    ]
}

async fn send(
    app: &TestApp,
    request: &chatgenius_files::storage::PresignedRequest,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = match request.method {
        "PUT" => app.client.put(&request.url).body(body),
        _ => app.client.get(&request.url),
    };
    for (name, value) in &request.headers {
        if *name != "content-length" {
            req = req.header(*name, value);
        }
    }
    req.send().await.unwrap()
}

async fn every_presigned_url_shape_is_accepted_by_the_store(store: Store) {
    let app = spawn_app_on(&store, &[]).await;
    let storage = &app.deps.storage;
    let presigner = storage.presigner();
    for (i, key) in keys().iter().enumerate() {
        let body = format!("object {i} at {key}").into_bytes();
        let put = presigner.put_object(key, "text/plain", body.len() as u64, None, TTL).unwrap();
        let resp = send(&app, &put, body.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK, "PUT {key}: {}", resp.text().await.unwrap());
        let get = presigner.get_object(key, "text/plain", "attachment", TTL).unwrap();
        let resp = send(&app, &get, Vec::new()).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {key}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice(), "GET {key}");

        // A one-part multipart upload through a presigned part URL.
        let part_key = format!("{key}.parts");
        let upload_id = storage.create_multipart(&part_key, "text/plain").await.unwrap();
        let part = presigner.upload_part(&part_key, &upload_id, 1, body.len() as u64, TTL).unwrap();
        let resp = send(&app, &part, body.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK, "part PUT {part_key}: {}", resp.text().await.unwrap());
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        let completed = vec![CompletedPart::builder().part_number(1).e_tag(etag).build()];
        storage.complete_multipart(&part_key, &upload_id, completed).await.unwrap();
        let get = presigner.get_object(&part_key, "text/plain", "attachment", TTL).unwrap();
        let resp = send(&app, &get, Vec::new()).await;
        assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice(), "GET {part_key}");
    }
}
