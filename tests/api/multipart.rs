//! Multipart direct uploads (start → real part PUTs → complete), against the
//! embedded S3 and SeaweedFS (which enforces the 5 MiB minimum part size).

use std::time::Duration;

use chatgenius_files::events::Event;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Store, TestApp, TestUser, assert_error, on_every_store, spawn_app_on};

const MIB: usize = 1024 * 1024;
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

on_every_store!(
    three_parts_complete_and_download_byte_identical,
    a_client_resumes_from_the_parts_the_store_lists,
    abort_leaves_no_parts_and_no_object,
    a_part_bigger_than_signed_is_refused_by_the_store,
    part_lists_are_checked_before_completing,
    an_expired_multipart_upload_is_aborted_by_the_sweeper,
    a_complete_that_failed_after_the_store_assembled_the_object_is_finished_by_the_next,
    part_urls_cannot_change_a_completed_file,
    complete_and_abort_at_once_have_exactly_one_winner,
    concurrent_completes_of_one_upload_all_answer_with_the_same_file,
);

struct Setup {
    app: TestApp,
    alice: TestUser,
    channel: i64,
}

async fn setup(store: &Store) -> Setup {
    let app = spawn_app_on(store, &[("multipart-part-size-mb", "5")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    Setup { app, alice, channel }
}

/// A PNG-looking file of `len` bytes whose every MiB differs.
fn file_of(len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i / 997 + i % 251) as u8).collect();
    bytes[..PNG_MAGIC.len()].copy_from_slice(PNG_MAGIC);
    bytes
}

async fn start(s: &Setup, name: &str, size: usize) -> Value {
    let body = json!({ "channel_id": s.channel, "file_name": name, "content_type": "image/png", "size": size });
    let resp = s.app.post(&s.alice, "/files/multipart", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// PUTs `body` to a part URL; returns the status and the ETag header.
async fn put_part(app: &TestApp, part: &Value, body: Vec<u8>) -> (StatusCode, Option<String>) {
    let mut req = app.client.put(part["url"].as_str().unwrap());
    for (name, value) in part["headers"].as_object().unwrap() {
        if name != "content-length" {
            req = req.header(name, value.as_str().unwrap());
        }
    }
    let resp = req.body(body).send().await.unwrap();
    let etag = resp.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
    (resp.status(), etag)
}

fn chunk(file: &[u8], part_size: usize, n: usize) -> Vec<u8> {
    file[(n - 1) * part_size..(n * part_size).min(file.len())].to_vec()
}

async fn complete(s: &Setup, upload_id: &Value, parts: &[(usize, String)]) -> reqwest::Response {
    let parts: Vec<Value> = parts.iter().map(|(n, etag)| json!({ "part_number": n, "etag": etag })).collect();
    s.app
        .post(&s.alice, &format!("/files/uploads/{}/complete", upload_id.as_str().unwrap()), json!({ "parts": parts }))
        .await
}

async fn parts(s: &Setup, upload_id: &Value, numbers: &[usize]) -> reqwest::Response {
    s.app
        .post(
            &s.alice,
            &format!("/files/uploads/{}/parts", upload_id.as_str().unwrap()),
            json!({ "part_numbers": numbers }),
        )
        .await
}

/// Uploads every part listed in `started["parts"]`, returning their ETags.
async fn upload_all(s: &Setup, started: &Value, file: &[u8]) -> Vec<(usize, String)> {
    let part_size = started["part_size"].as_u64().unwrap() as usize;
    let mut etags = Vec::new();
    for part in started["parts"].as_array().unwrap() {
        let n = part["part_number"].as_u64().unwrap() as usize;
        let (status, etag) = put_part(&s.app, part, chunk(file, part_size, n)).await;
        assert_eq!(status, StatusCode::OK, "part {n}");
        etags.push((n, etag.expect("the store returns an ETag per part")));
    }
    etags
}

async fn three_parts_complete_and_download_byte_identical(store: Store) {
    let s = setup(&store).await;
    let mut events = s.app.events().await;
    let file = file_of(11 * MIB + 12_345);
    let started = start(&s, "big.png", file.len()).await;
    assert_eq!(started["part_size"], 5 * MIB);
    assert_eq!(started["part_count"], 3);
    assert_eq!(started["parts"].as_array().unwrap().len(), 3);
    assert_eq!(started["parts"][2]["headers"]["content-length"], (file.len() - 10 * MIB).to_string());
    let url = started["parts"][0]["url"].as_str().unwrap();
    assert!(url.contains("partNumber=1") && url.contains("uploadId="), "{url}");

    let etags = upload_all(&s, &started, &file).await;
    let resp = complete(&s, &started["upload_id"], &etags).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let recorded: Value = resp.json().await.unwrap();
    assert_eq!(recorded["file_size"], file.len());
    assert_eq!(recorded["content_type"], "image/png");
    let event = events.next().await;
    assert!(
        matches!(&event.event, Event::FileUploadComplete(e) if i64::from(e.file.id) == recorded["id"].as_i64().unwrap())
    );

    let download = s.app.get(&s.alice, &format!("/files/download/{}", recorded["id"])).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.bytes().await.unwrap() == file, "downloaded bytes differ");

    // Completing again answers the same file.
    let again = complete(&s, &started["upload_id"], &etags).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], recorded["id"]);
    assert_eq!(s.app.object_count().await, 1);
}

async fn a_client_resumes_from_the_parts_the_store_lists(store: Store) {
    let s = setup(&store).await;
    let file = file_of(11 * MIB);
    let started = start(&s, "resumed.png", file.len()).await;
    let first = &started["parts"][0];
    let (status, first_etag) = put_part(&s.app, first, chunk(&file, 5 * MIB, 1)).await;
    assert_eq!(status, StatusCode::OK);
    // The page reloads: every URL is forgotten. The broker says what is there.
    let resp = parts(&s, &started["upload_id"], &[2, 3]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let listing: Value = resp.json().await.unwrap();
    assert_eq!(listing["part_count"], 3);
    let uploaded = listing["uploaded"].as_array().unwrap();
    assert_eq!(uploaded.len(), 1, "{listing}");
    assert_eq!((uploaded[0]["part_number"].as_u64(), uploaded[0]["size"].as_u64()), (Some(1), Some(5 * MIB as u64)));
    let mut etags = Vec::new();
    match uploaded[0]["etag"].as_str() {
        // The store reports ETags (SeaweedFS, AWS): part 1 is done.
        Some(etag) => {
            assert_eq!(Some(etag), first_etag.as_deref().map(|e| e.trim_matches('"')));
            etags.push((1, etag.to_owned()));
        }
        // It does not (the embedded s3s-fs): part 1 goes up again.
        None => {
            let again: Value = parts(&s, &started["upload_id"], &[1]).await.json().await.unwrap();
            let (status, etag) = put_part(&s.app, &again["parts"][0], chunk(&file, 5 * MIB, 1)).await;
            assert_eq!(status, StatusCode::OK);
            etags.push((1, etag.unwrap()));
        }
    }
    let fresh = json!({ "part_size": listing["part_size"], "parts": listing["parts"] });
    etags.extend(upload_all(&s, &fresh, &file).await);
    let resp = complete(&s, &started["upload_id"], &etags).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let recorded: Value = resp.json().await.unwrap();
    let download = s.app.get(&s.alice, &format!("/files/download/{}", recorded["id"])).await;
    assert!(download.bytes().await.unwrap() == file, "downloaded bytes differ");
}

async fn abort_leaves_no_parts_and_no_object(store: Store) {
    let s = setup(&store).await;
    let file = file_of(11 * MIB);
    let started = start(&s, "dropped.png", file.len()).await;
    let (status, _) = put_part(&s.app, &started["parts"][0], chunk(&file, 5 * MIB, 1)).await;
    assert_eq!(status, StatusCode::OK);
    let upload_id = started["upload_id"].as_str().unwrap();
    let aborted = s.app.delete(&s.alice, &format!("/files/uploads/{upload_id}")).await;
    assert_eq!(aborted.status(), StatusCode::NO_CONTENT);

    let pending = s.app.deps.storage.list_multipart("uploads/").await;
    if let Ok(pending) = pending {
        assert!(pending.is_empty(), "multipart uploads left: {pending:?}");
    }
    assert_eq!(s.app.object_count().await, 0);
    assert_error(parts(&s, &started["upload_id"], &[2]).await, StatusCode::CONFLICT, "upload_not_pending").await;
    let (status, _) = put_part(&s.app, &started["parts"][1], chunk(&file, 5 * MIB, 2)).await;
    assert!(status.is_client_error(), "a part of an aborted upload is refused: {status}");
}

async fn a_part_bigger_than_signed_is_refused_by_the_store(store: Store) {
    let s = setup(&store).await;
    let file = file_of(11 * MIB);
    let started = start(&s, "bigger.png", file.len()).await;
    let mut too_long = chunk(&file, 5 * MIB, 1);
    too_long.push(0);
    let (status, _) = put_part(&s.app, &started["parts"][0], too_long).await;
    assert!(status.is_client_error(), "a part longer than signed: {status}");
}

async fn part_lists_are_checked_before_completing(store: Store) {
    let s = setup(&store).await;
    let file = file_of(11 * MIB);
    let started = start(&s, "checked.png", file.len()).await;
    let id = &started["upload_id"];
    assert_error(parts(&s, id, &[4]).await, StatusCode::BAD_REQUEST, "invalid_part_number").await;
    assert_error(parts(&s, id, &[0]).await, StatusCode::BAD_REQUEST, "invalid_part_number").await;
    let confirm = s.app.post(&s.alice, &format!("/files/uploads/{}/confirm", id.as_str().unwrap()), json!({})).await;
    assert_error(confirm, StatusCode::CONFLICT, "upload_is_multipart").await;

    let etags = upload_all(
        &s,
        &json!({ "part_size": started["part_size"], "parts": started["parts"].as_array().unwrap()[..2] }),
        &file,
    )
    .await;
    assert_error(complete(&s, id, &etags).await, StatusCode::BAD_REQUEST, "invalid_part_list").await;
    let with_missing = [etags.clone(), vec![(3, "0123456789abcdef0123456789abcdef".to_owned())]].concat();
    assert_error(complete(&s, id, &with_missing).await, StatusCode::UNPROCESSABLE_ENTITY, "part_missing").await;

    let etags = [
        etags,
        upload_all(&s, &json!({ "part_size": started["part_size"], "parts": [started["parts"][2].clone()] }), &file)
            .await,
    ]
    .concat();
    let reports_etags = store_reports_etags(&s, id).await;
    assert!(reports_etags || matches!(store, Store::Embedded), "SeaweedFS lists part ETags");
    if reports_etags {
        // A wrong ETag is refused where the store reports ETags (the
        // embedded s3s-fs reports none and ignores them).
        let mut wrong = etags.clone();
        wrong[1].1 = "0123456789abcdef0123456789abcdef".into();
        assert_error(complete(&s, id, &wrong).await, StatusCode::UNPROCESSABLE_ENTITY, "part_mismatch").await;
    }
    assert_eq!(complete(&s, id, &etags).await.status(), StatusCode::CREATED);

    // A single-PUT upload has no parts.
    let single: Value = s
        .app
        .post(
            &s.alice,
            "/files/presign",
            json!({ "channel_id": s.channel, "file_name": "s.png", "content_type": "image/png", "size": 10 }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_error(parts(&s, &single["upload_id"], &[1]).await, StatusCode::CONFLICT, "upload_not_multipart").await;
}

async fn store_reports_etags(s: &Setup, id: &Value) -> bool {
    let listing: Value = parts(s, id, &[]).await.json().await.unwrap();
    listing["uploaded"].as_array().unwrap().iter().all(|p| p["etag"].is_string())
}

async fn an_expired_multipart_upload_is_aborted_by_the_sweeper(store: Store) {
    let app = spawn_app_on(&store, &[("multipart-part-size-mb", "5"), ("multipart-upload-ttl-secs", "1")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let s = Setup { app, alice, channel };
    let file = file_of(11 * MIB);
    let started = start(&s, "left.png", file.len()).await;
    assert_eq!(put_part(&s.app, &started["parts"][0], chunk(&file, 5 * MIB, 1)).await.0, StatusCode::OK);
    let key = started["key"].as_str().unwrap();
    let multipart_id = store_upload_id(&started);
    assert_eq!(s.app.deps.storage.list_parts(key, &multipart_id).await.unwrap().len(), 1);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = s.app.sweep_once().await.unwrap();
    assert_eq!(report.expired_uploads_removed, 1);
    // Gone: SeaweedFS answers NoSuchUpload, s3s-fs lists no part files.
    if let Ok(left) = s.app.deps.storage.list_parts(key, &multipart_id).await {
        assert!(left.is_empty(), "parts left: {left:?}");
    }
    assert_error(parts(&s, &started["upload_id"], &[1]).await, StatusCode::GONE, "upload_expired").await;
}

async fn a_complete_that_failed_after_the_store_assembled_the_object_is_finished_by_the_next(store: Store) {
    let s = setup(&store).await;
    let file = file_of(11 * MIB);
    let started = start(&s, "assembled.png", file.len()).await;
    let etags = upload_all(&s, &started, &file).await;
    // The broker completed the upload in the store, then failed before recording it.
    let completed = etags
        .iter()
        .map(|(n, etag)| aws_sdk_s3::types::CompletedPart::builder().part_number(*n as i32).e_tag(etag).build())
        .collect();
    let key = started["key"].as_str().unwrap();
    s.app.deps.storage.complete_multipart(key, &store_upload_id(&started), completed).await.unwrap();

    let done = complete(&s, &started["upload_id"], &etags).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let recorded: Value = done.json().await.unwrap();
    assert_eq!(recorded["file_size"], file.len());
    let again = complete(&s, &started["upload_id"], &etags).await;
    assert_eq!(again.status(), StatusCode::OK, "a repeated complete returns the recorded file");
}

/// The store's multipart upload id, as the first part URL carries it.
pub(crate) fn store_upload_id(started: &Value) -> String {
    let url = started["parts"][0]["url"].as_str().unwrap();
    percent_decode(url.split("uploadId=").nth(1).unwrap().split('&').next().unwrap())
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8().unwrap().into_owned()
}

async fn part_urls_cannot_change_a_completed_file(store: Store) {
    let s = setup(&store).await;
    let file = file_of(6 * MIB);
    let started = start(&s, "done.png", file.len()).await;
    let etags = upload_all(&s, &started, &file).await;
    let completed: Value = complete(&s, &started["upload_id"], &etags).await.json().await.unwrap();

    // The part URLs are still within their lifetime; the upload is gone from the store.
    let mut other = file.clone();
    other[5 * MIB..].fill(0xEE);
    let (status, _) = put_part(&s.app, &started["parts"][1], chunk(&other, 5 * MIB, 2)).await;
    assert!(!status.is_success(), "a part PUT after complete answered {status}");
    let link: Value =
        s.app.get(&s.alice, &format!("/files/download/{}?redirect=false", completed["id"])).await.json().await.unwrap();
    let downloaded = s.app.client.get(link["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert!(downloaded.as_ref() == file.as_slice(), "the completed file is unchanged");
}

async fn complete_and_abort_at_once_have_exactly_one_winner(store: Store) {
    let s = setup(&store).await;
    let file = file_of(64);
    let mut created = 0;
    for _ in 0..12 {
        let started = start(&s, "race.png", file.len()).await;
        let etags = upload_all(&s, &started, &file).await;
        let upload_id = started["upload_id"].as_str().unwrap();
        let abort_path = format!("/files/uploads/{upload_id}");
        let abort = s.app.delete(&s.alice, &abort_path);
        let (completed, aborted) = tokio::join!(complete(&s, &started["upload_id"], &etags), abort);
        match (completed.status(), aborted.status()) {
            (StatusCode::CREATED, StatusCode::CONFLICT) => {
                created += 1;
                assert_error(aborted, StatusCode::CONFLICT, "upload_confirmed").await;
            }
            (StatusCode::CONFLICT, StatusCode::NO_CONTENT) => {
                assert_error(completed, StatusCode::CONFLICT, "upload_not_pending").await;
            }
            (c, a) => {
                panic!("complete {c} ({}) and abort {a}: not exactly one winner", completed.text().await.unwrap())
            }
        }
    }
    assert_eq!(s.app.object_count().await, created, "every object is a completed file's");
}

async fn concurrent_completes_of_one_upload_all_answer_with_the_same_file(store: Store) {
    let s = setup(&store).await;
    let file = file_of(64);
    for _ in 0..4 {
        let started = start(&s, "twice.png", file.len()).await;
        let etags = upload_all(&s, &started, &file).await;
        let answers = futures_util::future::join_all((0..6).map(|_| complete(&s, &started["upload_id"], &etags))).await;
        let mut ids = std::collections::BTreeSet::new();
        let mut created = 0;
        for answer in answers {
            let status = answer.status();
            let body: Value = answer.json().await.unwrap();
            assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}: {body}");
            created += usize::from(status == StatusCode::CREATED);
            ids.insert(body["id"].as_i64().unwrap());
        }
        assert_eq!((created, ids.len()), (1, 1), "one file, created once, returned to every caller");
    }
}
