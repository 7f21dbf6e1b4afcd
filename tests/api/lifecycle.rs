//! A 201 is forever: once confirm answers 201 the file stays, exactly the
//! bytes and headers that were verified, until its owner deletes it. Races
//! between confirm and abort, the sweeper or a membership change have one
//! winner; a presigned URL cannot replace what it stored; nothing an upload
//! leaves in the store outlives it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Store, assert_error, on_every_store, spawn_app_on};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

on_every_store!(
    a_late_confirm_racing_the_sweeper_never_loses_a_confirmed_file,
    confirm_and_abort_at_once_have_exactly_one_winner,
    confirm_racing_the_uploaders_removal_never_leaves_a_file_without_its_object,
    a_presigned_url_cannot_replace_a_confirmed_file,
    a_presigned_url_cannot_replace_a_file_with_a_declared_sha256,
    unsigned_headers_on_the_put_never_reach_a_download,
    a_removed_member_can_no_longer_add_files,
    objects_put_after_an_abort_or_a_rejection_are_swept_in_the_background,
    generic_binary_passes_the_sniff_whatever_its_first_bytes,
    a_slow_put_to_an_encoded_path_cannot_replace_a_confirmed_file,
    an_encoded_query_name_does_not_skip_the_unsigned_header_checks,
);

/// A PNG of `len` bytes (signature first, padding after).
fn png_of(len: usize, fill: u8) -> Vec<u8> {
    let mut body = PNG.to_vec();
    body.resize(len, fill);
    body
}

async fn a_late_confirm_racing_the_sweeper_never_loses_a_confirmed_file(store: Store) {
    // Three-second URLs, no grace: uploads expire while their confirms arrive.
    let app = spawn_app_on(
        &store,
        &[
            ("upload-url-ttl-secs", "3"),
            ("upload-confirm-grace-secs", "0"),
            ("sweep-interval-secs", "0"),
            ("presign-rate-per-min", "100000"),
            ("confirm-rate-per-min", "100000"),
            ("download-rate-per-min", "100000"),
        ],
    )
    .await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let mut uploads = Vec::new();
    for i in 0..40 {
        let body = png_of(64, i as u8);
        let presigned = app.presign_file(&alice, channel, &format!("{i}.png"), "image/png", body.len()).await;
        assert_eq!(app.put_presigned(&presigned, body.clone()).await, StatusCode::OK);
        uploads.push((Instant::now(), presigned, body));
    }
    // The sweeper runs all along, as another instance would.
    let sweeping = {
        let sweeper = app.sweeper.clone();
        tokio::spawn(async move {
            loop {
                sweeper.once().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Confirms from 0.6 s before to 0.6 s after each upload's expiry.
    let confirms: Vec<_> = uploads
        .iter()
        .enumerate()
        .map(|(i, (presigned_at, presigned, _))| {
            let at = *presigned_at + Duration::from_millis(2400 + 30 * i as u64);
            let (client, url, token) = (
                app.client.clone(),
                app.url(&format!("/files/uploads/{}/confirm", presigned["upload_id"].as_str().unwrap())),
                alice.token.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let resp = client.post(url).bearer_auth(token).send().await.unwrap();
                let status = resp.status();
                (status, resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for confirm in confirms {
        outcomes.push(confirm.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sweeping.abort();
    app.sweep_once().await.unwrap();

    let (mut created, mut expired) = (0, 0);
    for ((status, body), (_, _, bytes)) in outcomes.iter().zip(&uploads) {
        match *status {
            StatusCode::CREATED => {
                created += 1;
                let (got, _, downloaded) = app.download(&alice, body["id"].as_i64().unwrap()).await;
                assert_eq!(got, StatusCode::OK, "a confirmed file downloads");
                assert_eq!(&downloaded, bytes, "with its own bytes");
            }
            StatusCode::GONE => {
                expired += 1;
                assert_eq!(body["error"]["code"], "upload_expired");
            }
            other => panic!("confirm answered {other}: {body}"),
        }
    }
    assert!(created > 0 && expired > 0, "both sides of the race were run: {created} created, {expired} expired");
    assert_eq!(app.object_count().await, created, "the expired uploads' objects are gone, the files' stay");
}

async fn confirm_and_abort_at_once_have_exactly_one_winner(store: Store) {
    let app = spawn_app_on(&store, &[("presign-rate-per-min", "100000"), ("confirm-rate-per-min", "100000")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let (mut confirmed, mut aborted) = (0, 0);
    for i in 0..25 {
        let presigned = app.presign_file(&alice, channel, &format!("{i}.png"), "image/png", PNG.len()).await;
        assert_eq!(app.put_presigned(&presigned, PNG.to_vec()).await, StatusCode::OK);
        let (confirm, abort) = tokio::join!(app.confirm(&alice, &presigned), app.abort(&alice, &presigned));
        match (confirm.status(), abort.status()) {
            (StatusCode::CREATED, StatusCode::CONFLICT) => {
                confirmed += 1;
                assert_error(abort, StatusCode::CONFLICT, "upload_confirmed").await;
                let file: Value = confirm.json().await.unwrap();
                let (status, _, bytes) = app.download(&alice, file["id"].as_i64().unwrap()).await;
                assert_eq!((status, bytes.as_slice()), (StatusCode::OK, PNG), "the winner's file is there");
            }
            (StatusCode::CONFLICT, StatusCode::NO_CONTENT) => {
                aborted += 1;
                assert_error(confirm, StatusCode::CONFLICT, "upload_not_pending").await;
                let again = app.confirm(&alice, &presigned).await;
                assert_error(again, StatusCode::CONFLICT, "upload_not_pending").await;
            }
            (c, a) => panic!("confirm {c} and abort {a}: not exactly one winner"),
        }
    }
    assert_eq!(app.object_count().await, confirmed, "aborted uploads left no object ({aborted} aborted)");
}

async fn confirm_racing_the_uploaders_removal_never_leaves_a_file_without_its_object(store: Store) {
    let app = spawn_app_on(&store, &[("presign-rate-per-min", "100000"), ("confirm-rate-per-min", "100000")]).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let channel = app.create_channel(&alice, "general").await;
    let mut created = 0;
    for i in 0..15 {
        app.add_member(&alice, channel, &bob).await;
        let presigned = app.presign_file(&bob, channel, &format!("{i}.png"), "image/png", PNG.len()).await;
        assert_eq!(app.put_presigned(&presigned, PNG.to_vec()).await, StatusCode::OK);
        let member = format!("/channels/{channel}/members/{}", bob.id);
        let removal = app.delete(&alice, &member);
        let (confirm, removal) = tokio::join!(app.confirm(&bob, &presigned), removal);
        assert_eq!(removal.status(), StatusCode::NO_CONTENT);
        match confirm.status() {
            StatusCode::CREATED => {
                created += 1;
                let file: Value = confirm.json().await.unwrap();
                // Bob is gone; Alice still sees the file he confirmed while a member.
                let (status, _, bytes) = app.download(&alice, file["id"].as_i64().unwrap()).await;
                assert_eq!((status, bytes.as_slice()), (StatusCode::OK, PNG));
            }
            // The removed uploader sees what a stranger sees.
            StatusCode::NOT_FOUND => {
                assert_error(confirm, StatusCode::NOT_FOUND, "not_found").await;
            }
            other => panic!("confirm answered {other}"),
        }
    }
    app.sweep_once().await.unwrap();
    assert_eq!(app.object_count().await, created, "every object belongs to a file");
}

async fn a_presigned_url_cannot_replace_a_confirmed_file(store: Store) {
    let app = spawn_app_on(&store, &[]).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let channel = app.create_channel(&alice, "general").await;
    app.add_member(&alice, channel, &bob).await;

    let png = png_of(128, 0);
    let presigned = app.presign_file(&alice, channel, "pic.png", "image/png", png.len()).await;
    assert_eq!(app.put_presigned(&presigned, png.clone()).await, StatusCode::OK);
    let file: Value = app.confirm(&alice, &presigned).await.json().await.unwrap();

    // The same URL, the same signed headers, 128 bytes of HTML.
    let mut html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    html.resize(128, b' ');
    assert_eq!(
        app.put_presigned(&presigned, html.clone()).await,
        StatusCode::PRECONDITION_FAILED,
        "the object exists: no overwrite"
    );
    // Dropping the conditional header breaks the signature.
    let unconditional = app
        .client
        .put(presigned["url"].as_str().unwrap())
        .header("content-type", "image/png")
        .body(html)
        .send()
        .await
        .unwrap();
    assert_eq!(unconditional.status(), StatusCode::FORBIDDEN, "If-None-Match is signed");

    let (status, headers, bytes) = app.download(&bob, file["id"].as_i64().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, png, "other members download the verified bytes");
    assert_eq!(headers["content-type"], "image/png");
}

async fn a_presigned_url_cannot_replace_a_file_with_a_declared_sha256(store: Store) {
    let app = spawn_app_on(&store, &[]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let png = png_of(256, 1);
    let sha256 = hex::encode(Sha256::digest(&png));
    let presigned: Value = app
        .post(
            &alice,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "sum.png", "content_type": "image/png", "size": png.len(), "sha256": sha256 }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.put_presigned(&presigned, png.clone()).await, StatusCode::OK);
    let file: Value = app.confirm(&alice, &presigned).await.json().await.unwrap();
    assert_eq!(file["sha256"], sha256.as_str());

    let other = png_of(256, 2);
    let replaced = app.put_presigned(&presigned, other).await;
    assert!(replaced == StatusCode::PRECONDITION_FAILED || replaced == StatusCode::BAD_REQUEST, "{replaced}");
    let (_, _, bytes) = app.download(&alice, file["id"].as_i64().unwrap()).await;
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256, "the recorded sha256 is the served bytes'");
}

async fn unsigned_headers_on_the_put_never_reach_a_download(store: Store) {
    let app = spawn_app_on(&store, &[]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let png = png_of(100, 3);
    let presigned = app.presign_file(&alice, channel, "pic.png", "image/png", png.len()).await;

    // Unsigned x-amz-* headers are refused, as AWS S3 refuses them.
    for (name, value) in [("x-amz-meta-evil", "1"), ("x-amz-website-redirect-location", "/elsewhere")] {
        let resp =
            crate::presigned::put(&app.client, &presigned, png.clone()).header(name, value).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "unsigned {name}");
    }
    let resp = crate::presigned::put(&app.client, &presigned, png.clone())
        .header("cache-control", "public, max-age=31536000")
        .header("content-encoding", "gzip")
        .header("expires", "Thu, 01 Dec 2094 16:00:00 GMT")
        .header("content-language", "xx")
        .header("content-disposition", "inline")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let file: Value = app.confirm(&alice, &presigned).await.json().await.unwrap();

    let (status, headers, bytes) = app.download(&alice, file["id"].as_i64().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, png, "readable: no encoding was applied");
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert!(
        header("content-disposition").is_some_and(|d| d.starts_with("attachment;")),
        "{:?}",
        header("content-disposition")
    );
    assert!(
        header("cache-control").is_some_and(|c| c.starts_with("private, max-age=")),
        "{:?}",
        header("cache-control")
    );
    assert!(header("content-encoding").is_none_or(|e| e == "identity"), "{:?}", header("content-encoding"));
    assert!(header("expires").is_some_and(|e| !e.contains("2094")), "{:?}", header("expires"));
    if matches!(store, Store::Embedded) {
        // The embedded store drops unsigned metadata outright; other stores
        // keep `Content-Language` (informational; the presigned GET cannot unset it).
        assert_eq!(header("content-language"), None);
    }
}

async fn a_removed_member_can_no_longer_add_files(store: Store) {
    let app = spawn_app_on(&store, &[("multipart-part-size-mb", "5")]).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let channel = app.create_channel(&alice, "general").await;
    app.add_member(&alice, channel, &bob).await;

    // A single PUT presigned while a member, and a multipart upload started.
    let presigned = app.presign_file(&bob, channel, "late.png", "image/png", PNG.len()).await;
    let size = 6 * 1024 * 1024;
    let started: Value = app
        .post(
            &bob,
            "/files/multipart",
            json!({ "channel_id": channel, "file_name": "big.png", "content_type": "image/png", "size": size }),
        )
        .await
        .json()
        .await
        .unwrap();
    let part = png_of(5 * 1024 * 1024, 4);
    let first = crate::presigned::put(&app.client, &started["parts"][0], part).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();

    let removed = app.delete(&alice, &format!("/channels/{channel}/members/{}", bob.id)).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);

    // The URL still reaches the store, but the upload is gone for the broker.
    assert_eq!(app.put_presigned(&presigned, PNG.to_vec()).await, StatusCode::OK);
    assert_error(app.confirm(&bob, &presigned).await, StatusCode::NOT_FOUND, "not_found").await;
    let upload_id = started["upload_id"].as_str().unwrap();
    let parts = app.post(&bob, &format!("/files/uploads/{upload_id}/parts"), json!({ "part_numbers": [2] })).await;
    assert_error(parts, StatusCode::NOT_FOUND, "not_found").await;
    let complete = app
        .post(
            &bob,
            &format!("/files/uploads/{upload_id}/complete"),
            json!({ "parts": [{ "part_number": 1, "etag": etag }] }),
        )
        .await;
    assert_error(complete, StatusCode::NOT_FOUND, "not_found").await;
    // Re-added, Bob still finds nothing of those uploads: they were aborted.
    app.add_member(&alice, channel, &bob).await;
    assert_error(app.confirm(&bob, &presigned).await, StatusCode::CONFLICT, "upload_not_pending").await;

    // The multipart upload was aborted in the store; the late PUT's object is swept.
    let key = started["key"].as_str().unwrap();
    let store_upload = crate::multipart::store_upload_id(&started);
    if let Ok(left) = app.deps.storage.list_parts(key, &store_upload).await {
        assert!(left.is_empty(), "parts left: {left:?}");
    }
    app.sweep_once().await.unwrap();
    assert_eq!(app.object_count().await, 0, "nothing of Bob's uploads is left");
}

async fn objects_put_after_an_abort_or_a_rejection_are_swept_in_the_background(store: Store) {
    let app = spawn_app_on(&store, &[("sweep-interval-secs", "1")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;

    let aborted = app.presign_file(&alice, channel, "a.png", "image/png", PNG.len()).await;
    assert_eq!(app.put_presigned(&aborted, PNG.to_vec()).await, StatusCode::OK);
    assert_eq!(app.abort(&alice, &aborted).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.object_count().await, 0, "abort deleted the object");
    assert_eq!(app.put_presigned(&aborted, PNG.to_vec()).await, StatusCode::OK, "the URL is still valid");

    let mut html = b"<!DOCTYPE html><html><script>alert(1)</script>".to_vec();
    html.resize(PNG.len() + 40, b' ');
    let rejected = app.presign_file(&alice, channel, "b.png", "image/png", html.len()).await;
    assert_eq!(app.put_presigned(&rejected, html.clone()).await, StatusCode::OK);
    assert_error(app.confirm(&alice, &rejected).await, StatusCode::UNPROCESSABLE_ENTITY, "content_mismatch").await;
    assert_eq!(app.put_presigned(&rejected, html).await, StatusCode::OK, "the URL is still valid");
    assert_eq!(app.object_count().await, 2);

    // No `sweep` by hand: the background sweeper finds both.
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.object_count().await > 0 {
        assert!(Instant::now() < deadline, "objects of closed uploads still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_error(app.confirm(&alice, &aborted).await, StatusCode::CONFLICT, "upload_not_pending").await;
}

async fn generic_binary_passes_the_sniff_whatever_its_first_bytes(store: Store) {
    let app = spawn_app_on(&store, &[("allowed-file-types", "application/octet-stream,image/png")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut gzip = b"\x1f\x8b\x08\0\0\0\0\0\0\x03".to_vec();
    gzip.resize(300, 7);
    let mut eot = vec![0u8; 300];
    eot[8..11].copy_from_slice(&[0x02, 0x00, 0x01]);
    eot[34..36].copy_from_slice(b"LP");
    for (name, body) in [("random.bin", random), ("archive.bin", gzip), ("font.bin", eot)] {
        let file = app.upload(&alice, channel, None, name, "application/octet-stream", &body).await;
        assert_eq!(file["content_type"], "application/octet-stream", "{name}");
    }
    // A specific type is still held to its signature.
    let presigned = app.presign_file(&alice, channel, "fake.png", "image/png", 300).await;
    assert_eq!(app.put_presigned(&presigned, vec![7u8; 300]).await, StatusCode::OK);
    assert_error(app.confirm(&alice, &presigned).await, StatusCode::UNPROCESSABLE_ENTITY, "content_mismatch").await;
}

/// A presigned PUT sent by hand with the path's `uploads/` spelled `%75ploads/`
/// (the same key once decoded), its body held back after `head` bytes.
async fn encoded_put_started(presigned: &Value, body: &[u8], head: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let url = reqwest::Url::parse(presigned["url"].as_str().unwrap()).unwrap();
    let path = url.path().replacen("/uploads/", "/%75ploads/", 1);
    let (host, port) = (url.host_str().unwrap(), url.port().unwrap());
    let mut request = format!("PUT {path}?{} HTTP/1.1\r\nhost: {host}:{port}\r\n", url.query().unwrap());
    for (name, value) in presigned["headers"].as_object().unwrap() {
        request.push_str(&format!("{name}: {}\r\n", value.as_str().unwrap()));
    }
    request.push_str("connection: close\r\n\r\n");
    let mut socket = tokio::net::TcpStream::connect((host, port)).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&body[..head]).await.unwrap();
    socket
}

async fn a_slow_put_to_an_encoded_path_cannot_replace_a_confirmed_file(store: Store) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_on(&store, &[]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let png = png_of(64, 0);
    let mut html = b"<html><script>alert(1)</script></html>".to_vec();
    html.resize(64, b' ');
    let presigned = app.presign_file(&alice, channel, "pic.png", "image/png", png.len()).await;

    // A slow PUT of HTML under another spelling of the key, then the real
    // PUT and confirm while the slow one is still sending.
    let mut slow = encoded_put_started(&presigned, &html, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fast = async {
        let put = app.put_presigned(&presigned, png.clone()).await;
        let confirm = app.confirm(&alice, &presigned).await;
        let status = confirm.status();
        (put, status, confirm.json::<Value>().await.unwrap())
    };
    let slow_rest = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        slow.write_all(&html[10..]).await.unwrap();
        let mut answer = String::new();
        slow.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let ((fast_put, confirmed, file), answer) = tokio::join!(fast, slow_rest);
    assert!(
        !(answer.starts_with("HTTP/1.1 200") && fast_put == StatusCode::OK),
        "two create-only PUTs of one key both stored: {answer:.40} / {fast_put}"
    );
    if confirmed == StatusCode::CREATED {
        let (status, _, bytes) = app.download(&alice, file["id"].as_i64().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(bytes, png, "the confirmed file serves the bytes confirm verified");
    } else {
        assert_eq!(file["error"]["code"], "content_mismatch", "the HTML was stored first and refused: {file}");
    }
}

async fn an_encoded_query_name_does_not_skip_the_unsigned_header_checks(store: Store) {
    let app = spawn_app_on(&store, &[]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let png = png_of(100, 4);
    let mut presigned = app.presign_file(&alice, channel, "pic.png", "image/png", png.len()).await;
    let url = presigned["url"].as_str().unwrap().replace("X-Amz-SignedHeaders=", "X-Amz-Signed%48eaders=");
    presigned["url"] = url.into();
    let resp = crate::presigned::put(&app.client, &presigned, png)
        .header("x-amz-meta-evil", "1")
        .header("x-amz-website-redirect-location", "/elsewhere")
        .send()
        .await
        .unwrap();
    assert!(!resp.status().is_success(), "unsigned x-amz-* headers stored: {}", resp.status());
}
