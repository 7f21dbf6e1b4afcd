//! Photo privacy: an image original's location and other metadata never
//! reach a downloader; the record's sha256 and size are those of the served
//! bytes; racing confirms, re-used URLs and stopped confirms leave one file
//! and no stray object.

use chatgenius_files::entity::file_upload;
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    helpers::{TestApp, TestUser, assert_error, spawn_app_with},
    previews::{LATITUDE, contains, jpeg_with_gps},
};

/// Keys under `uploads/` in the test's bucket.
async fn upload_keys(app: &TestApp) -> Vec<String> {
    app.deps.storage.list_page("uploads/", None).await.unwrap().into_iter().map(|(key, _)| key).collect()
}

/// The key a file's download is served from.
async fn served_key(app: &TestApp, user: &TestUser, file_id: i64) -> String {
    let link = app.get(user, &format!("/files/download/{file_id}?redirect=false")).await;
    let url = link.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let path = url.split('?').next().unwrap();
    let key = &path[path.find("uploads/").unwrap()..];
    percent_encoding::percent_decode_str(key).decode_utf8().unwrap().into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Downloads a file and checks what the record says of it: no location, the
/// recorded size and sha256 those of the served bytes.
async fn served_without_location(app: &TestApp, user: &TestUser, file: &Value) -> Vec<u8> {
    let (status, _, served) = app.download(user, file["id"].as_i64().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!contains(&served, &LATITUDE), "the location was served");
    assert!(!contains(&served, b"Exif"), "an upright photo keeps no EXIF at all");
    assert_eq!(file["file_size"], served.len());
    assert_eq!(file["sha256"], sha256_hex(&served), "the record's sha256 is that of the served bytes");
    served
}

#[tokio::test]
async fn a_photos_location_is_removed_before_it_is_recorded_on_every_upload_path() {
    let app = spawn_app_with(&[("preview-workers", "0")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "photos").await;
    let photo = jpeg_with_gps(640, 480);
    let mut events = app.events().await;

    // Direct, with the original's sha256 declared: verified on the uploaded
    // bytes, recorded for the served ones.
    let body = json!({
        "channel_id": channel, "file_name": "beach.jpg", "content_type": "image/jpeg",
        "size": photo.len(), "sha256": sha256_hex(&photo),
    });
    let presigned: Value = app.post(&alice, "/files/presign", body).await.json().await.unwrap();
    assert!(app.put_presigned(&presigned, photo.clone()).await.is_success());
    let resp = app.confirm(&alice, &presigned).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let file: Value = resp.json().await.unwrap();
    let served = served_without_location(&app, &alice, &file).await;
    let (original, cleaned) = (image::load_from_memory(&photo).unwrap(), image::load_from_memory(&served).unwrap());
    assert_eq!(original.to_rgb8(), cleaned.to_rgb8(), "the pixels are untouched");
    // Announced as served.
    loop {
        let event = serde_json::to_value(&*events.next().await).unwrap();
        if event["type"] == "file_upload_complete" {
            assert_eq!(event["file"]["sha256"], file["sha256"]);
            assert_eq!(event["file"]["file_size"], file["file_size"]);
            break;
        }
    }
    // The uploaded original is gone; only the served copy is left.
    assert_eq!(upload_keys(&app).await, vec![served_key(&app, &alice, file["id"].as_i64().unwrap()).await]);
    // Confirming again answers with the same file.
    let again = app.confirm(&alice, &presigned).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], file["id"]);

    // Through the broker.
    let part = reqwest::multipart::Part::bytes(photo.clone()).file_name("b.jpg").mime_str("image/jpeg").unwrap();
    let form = reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", part);
    let resp = app.client.post(app.url("/files/upload")).bearer_auth(&alice.token).multipart(form).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    served_without_location(&app, &alice, &resp.json().await.unwrap()).await;

    // A file without metadata is served exactly as uploaded.
    let text = app.upload(&alice, channel, None, "notes.txt", "text/plain", b"taken at 52 N").await;
    assert_eq!(app.download(&alice, text["id"].as_i64().unwrap()).await.2, b"taken at 52 N");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("cgf_photo_metadata_total{outcome=\"removed\"} 2"), "{metrics}");
}

#[tokio::test]
async fn with_removal_turned_off_a_photo_is_served_as_uploaded() {
    let app = spawn_app_with(&[("strip-photo-metadata", "false")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "photos").await;
    let photo = jpeg_with_gps(64, 48);
    let file = app.upload(&alice, channel, None, "beach.jpg", "image/jpeg", &photo).await;
    assert_eq!(app.download(&alice, file["id"].as_i64().unwrap()).await.2, photo);
}

#[tokio::test]
async fn a_photo_over_the_limit_is_served_as_uploaded() {
    let app = spawn_app_with(&[("strip-photo-metadata-max-mb", "1")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "photos").await;
    let mut photo = jpeg_with_gps(64, 48);
    photo.resize(1024 * 1024 + 1, 0);
    let file = app.upload(&alice, channel, None, "big.jpg", "image/jpeg", &photo).await;
    assert_eq!(app.download(&alice, file["id"].as_i64().unwrap()).await.2, photo);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("cgf_photo_metadata_total{outcome=\"over_limit\"} 1"), "{metrics}");
}

#[tokio::test]
async fn racing_confirms_of_a_photo_record_one_file_and_leave_one_object() {
    let app = spawn_app_with(&[("preview-workers", "0"), ("confirm-rate-per-min", "1000")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "photos").await;
    let photo = jpeg_with_gps(320, 240);
    let presigned = app.presign_file(&alice, channel, "race.jpg", "image/jpeg", photo.len()).await;
    assert!(app.put_presigned(&presigned, photo).await.is_success());
    let confirms = (0..6).map(|_| app.confirm(&alice, &presigned));
    let mut ids = Vec::new();
    for resp in futures_util::future::join_all(confirms).await {
        assert!(matches!(resp.status(), StatusCode::CREATED | StatusCode::OK), "{}", resp.status());
        let file: Value = resp.json().await.unwrap();
        served_without_location(&app, &alice, &file).await;
        ids.push(file["id"].clone());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one file: {ids:?}");
    let files = file_upload::Entity::find().count(&app.deps.db).await.unwrap();
    assert_eq!(files, 1);
    // The copies of the losing confirms are deleted, by them or by the sweeper.
    app.sweep_once().await.unwrap();
    assert_eq!(upload_keys(&app).await, vec![served_key(&app, &alice, ids[0].as_i64().unwrap()).await]);
}

#[tokio::test]
async fn a_copy_left_by_a_stopped_confirm_and_a_reused_url_never_touch_the_file() {
    let app = spawn_app_with(&[("preview-workers", "0")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "photos").await;
    let photo = jpeg_with_gps(320, 240);
    let presigned = app.presign_file(&alice, channel, "left.jpg", "image/jpeg", photo.len()).await;
    assert!(app.put_presigned(&presigned, photo.clone()).await.is_success());
    // A confirm that stopped after writing its cleaned copy.
    let uploaded = upload_keys(&app).await.pop().unwrap();
    let (prefix, name) = uploaded.rsplit_once('/').unwrap();
    let stray = format!("{prefix}/clean-0123456789abcdef0123456789abcdef/{name}");
    app.deps.storage.put(&stray, "image/jpeg", b"half-made copy".to_vec().into()).await.unwrap();
    app.sweep_once().await.unwrap();
    assert!(upload_keys(&app).await.contains(&stray), "a pending upload owns its copies");

    let resp = app.confirm(&alice, &presigned).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let file: Value = resp.json().await.unwrap();
    let served = served_without_location(&app, &alice, &file).await;
    // The uploaded object is gone, so the still valid URL can PUT again.
    assert!(app.put_presigned(&presigned, photo).await.is_success());
    app.sweep_once().await.unwrap();
    let key = served_key(&app, &alice, file["id"].as_i64().unwrap()).await;
    assert_eq!(upload_keys(&app).await, vec![key], "the stray copy and the re-PUT object were swept");
    assert_eq!(served_without_location(&app, &alice, &file).await, served, "the file never changed");
}

#[tokio::test]
async fn a_photo_that_cannot_be_cleaned_is_refused_and_nothing_is_kept() {
    let app = spawn_app_with(&[]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "photos").await;
    // An EXIF segment whose length field says 0 bytes: where it ends is unknowable.
    let photo = jpeg_with_gps(64, 48);
    let mut broken = photo[..4].to_vec();
    broken.extend([0, 0]);
    broken.extend(&photo[6..]);
    let presigned = app.presign_file(&alice, channel, "broken.jpg", "image/jpeg", broken.len()).await;
    assert!(app.put_presigned(&presigned, broken).await.is_success());
    let body =
        assert_error(app.confirm(&alice, &presigned).await, StatusCode::UNPROCESSABLE_ENTITY, "image_malformed").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("length"), "{body}");
    assert!(upload_keys(&app).await.is_empty(), "the upload's object was deleted");
}
