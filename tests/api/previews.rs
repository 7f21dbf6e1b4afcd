//! Image previews: thumbnails made off the request path, without metadata,
//! bounded against decompression bombs, surviving a restart, purged with
//! their file.

use std::time::Duration;

use image::{DynamicImage, ImageFormat, RgbImage};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest;

use crate::helpers::{
    Events, PNG, TestApp, TestUser, assert_error, fresh_database_url, outside_store, spawn_app_with, spawn_with,
    store_args,
};

/// The latitude 52° 31′ 0″ as EXIF stores it: three rationals.
pub(crate) const LATITUDE: [u8; 24] = [52, 0, 0, 0, 1, 0, 0, 0, 31, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];

/// A `width`×`height` JPEG photo (a gradient) carrying an EXIF block with a
/// GPS position (latitude N 52° 31′).
pub(crate) fn jpeg_with_gps(width: u32, height: u32) -> Vec<u8> {
    let pixels = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(pixels).write_to(&mut jpeg, ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    // TIFF (little endian): IFD0 with one entry pointing at the GPS IFD, whose
    // two entries are the latitude's reference and value.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend([1, 0, 0x25, 0x88, 4, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0, 0, 0, 0]);
    tiff.extend([2, 0]);
    tiff.extend([1, 0, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    tiff.extend([2, 0, 5, 0, 3, 0, 0, 0, 56, 0, 0, 0]);
    tiff.extend([0, 0, 0, 0]);
    tiff.extend(LATITUDE);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The file once its preview is made (at most 60 s).
async fn settled(app: &TestApp, user: &TestUser, file_id: &Value) -> Value {
    for _ in 0..600 {
        let file: Value = app.get(user, &format!("/files/{file_id}")).await.json().await.unwrap();
        if !file["preview"].is_null() {
            return file;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no preview for file {file_id}")
}

/// The file as the `file_updated` event announcing its preview job's outcome carries it.
async fn announced(events: &mut Events, file_id: &Value) -> Value {
    loop {
        let event = serde_json::to_value(&*events.next().await).unwrap();
        if event["type"] == "file_updated" && event["file"]["id"] == *file_id {
            return event["file"].clone();
        }
    }
}

async fn preview_bytes(app: &TestApp, user: &TestUser, file: &Value) -> (String, Vec<u8>) {
    let link = app.get(user, &format!("/files/{}/preview?redirect=false", file["id"])).await;
    assert_eq!(link.status(), StatusCode::OK);
    let url = link.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    (url, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_12_megapixel_photo_gets_a_320_pixel_thumbnail_without_its_gps_position() {
    let app = spawn_app_with(&[]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "photos").await;
    let photo = jpeg_with_gps(4000, 3000);
    assert!(contains(&photo, b"Exif\0\0") && contains(&photo, &LATITUDE));
    let mut events = app.events().await;
    let file = app.upload(&alice, channel, None, "holiday.jpg", "image/jpeg", &photo).await;
    assert_eq!(file["preview"], Value::Null, "made after the confirm, off the request path");

    let file = settled(&app, &alice, &file["id"]).await;
    assert_eq!(file["image"], serde_json::json!({ "width": 4000, "height": 3000 }));
    assert_eq!(file["preview"]["width"], 320);
    assert_eq!(file["preview"]["height"], 240);
    assert_eq!(file["preview"]["url"], format!("/files/{}/preview", file["id"]));
    let (url, thumbnail) = preview_bytes(&app, &alice, &file).await;
    assert!(url.contains(&format!("/previews/{channel}/")), "its own prefix: {}", url.split('?').next().unwrap());
    let decoded = image::load_from_memory(&thumbnail).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    assert!(!contains(&thumbnail, b"Exif") && !contains(&thumbnail, &LATITUDE), "the thumbnail has no metadata");
    // The original downloads without its location, as the record describes it.
    let (_, _, original) = app.download(&alice, file["id"].as_i64().unwrap()).await;
    assert!(!contains(&original, &LATITUDE), "the original has no GPS position");
    assert_eq!(file["sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(&original)));

    // Members learn of it: file_upload_complete, then file_updated with the preview.
    let mut kinds = Vec::new();
    while kinds.last().map(String::as_str) != Some("file_updated") {
        let event = serde_json::to_value(&*events.next().await).unwrap();
        if event["type"] == "file_updated" {
            assert_eq!(event["file"]["preview"], file["preview"]);
        }
        kinds.push(event["type"].as_str().unwrap().to_owned());
    }
    assert!(kinds.contains(&"file_upload_complete".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn a_decompression_bomb_gets_no_preview_and_the_broker_goes_on() {
    let app = spawn_app_with(&[]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    // A 1×1 PNG whose header claims 100,000 × 100,000 pixels (10 gigapixels).
    let mut bomb = PNG.to_vec();
    bomb[16..24].copy_from_slice(&[100_000u32.to_be_bytes(), 100_000u32.to_be_bytes()].concat());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let mut events = app.events().await;
    let file = app.upload(&alice, channel, None, "bomb.png", "image/png", &bomb).await;
    let file = announced(&mut events, &file["id"]).await;
    assert_eq!(file["preview"], Value::Null, "no preview: {file}");
    assert_eq!(file["image"], serde_json::json!({ "width": 100_000, "height": 100_000 }));
    let resp = app.get(&alice, &format!("/files/{}/preview", file["id"])).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    // The worker goes on with the next image.
    let next = app.upload(&alice, channel, None, "pixel.png", "image/png", PNG).await;
    assert_eq!(settled(&app, &alice, &next["id"]).await["preview"]["width"], 1);
}

#[tokio::test]
async fn a_preview_job_left_by_a_stopped_broker_is_done_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = outside_store(&dir.path().join("s3")).await;
    let mut args = store_args(s3.endpoint().as_str(), &s3);
    args.push(("database-url", fresh_database_url(dir.path()).await));
    args.push(("data-dir", dir.path().join("broker").display().to_string()));
    // The first broker makes no previews: its job waits in the database.
    let first = spawn_with(&[args.clone(), vec![("preview-workers", "0".to_owned())]].concat()).await;
    let alice = first.login("alice").await;
    let channel = first.create_channel(&alice, "general").await;
    let file = first.upload(&alice, channel, None, "photo.jpg", "image/jpeg", &jpeg_with_gps(640, 480)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting: Value = first.get(&alice, &format!("/files/{}", file["id"])).await.json().await.unwrap();
    assert_eq!((waiting["image"].clone(), waiting["preview"].clone()), (Value::Null, Value::Null));
    first.shut_down();
    drop(first);

    let second = spawn_with(&args).await;
    let file = settled(&second, &alice, &file["id"]).await;
    assert_eq!(file["preview"]["width"], 320);
    assert_eq!(file["preview"]["height"], 240);
}

#[tokio::test]
async fn a_deleted_files_thumbnail_is_purged_with_it_and_other_files_get_none() {
    let app = spawn_app_with(&[("deleted-file-retention-days", "0")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let photo = app.upload(&alice, channel, None, "photo.jpg", "image/jpeg", &jpeg_with_gps(400, 300)).await;
    let photo = settled(&app, &alice, &photo["id"]).await;
    let (url, _) = preview_bytes(&app, &alice, &photo).await;
    let path = url.split('?').next().unwrap();
    let key = path[path.find("previews/").unwrap()..].to_owned();
    assert!(app.deps.storage.head(&key).await.unwrap().is_some());

    let text = app.upload(&alice, channel, None, "notes.txt", "text/plain", b"hello").await;
    assert_eq!((text["image"].clone(), text["preview"].clone()), (Value::Null, Value::Null));
    let resp = app.get(&alice, &format!("/files/{}/preview", text["id"])).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;

    assert_eq!(app.delete(&alice, &format!("/files/{}", photo["id"])).await.status(), StatusCode::NO_CONTENT);
    app.sweep_once().await.unwrap();
    assert!(app.deps.storage.head(&key).await.unwrap().is_none(), "the thumbnail went with its file");
}

#[tokio::test]
async fn a_thumbnail_written_but_never_recorded_is_purged_with_its_file() {
    let app = spawn_app_with(&[("deleted-file-retention-days", "0"), ("preview-workers", "0")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let photo = app.upload(&alice, channel, None, "photo.png", "image/png", PNG).await;
    // A preview job that wrote its thumbnail and crashed before recording it.
    let key = format!("previews/{channel}/{}.jpg", photo["id"]);
    app.deps.storage.put(&key, "image/jpeg", bytes::Bytes::from_static(b"\xff\xd8\xff")).await.unwrap();
    assert_eq!(app.delete(&alice, &format!("/files/{}", photo["id"])).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.sweep_once().await.unwrap().deleted_files_purged, 1);
    assert!(app.deps.storage.head(&key).await.unwrap().is_none(), "no thumbnail outlives its file");
}

#[tokio::test]
async fn two_workers_racing_over_the_jobs_make_each_preview_exactly_once() {
    use chatgenius_files::service::previews::{PreviewPolicy, process_next};
    // No worker of the broker's own: the two below are the only ones.
    let app = spawn_app_with(&[("preview-workers", "0")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            app.upload(&alice, channel, None, &format!("p{i}.jpg"), "image/jpeg", &jpeg_with_gps(400, 300)).await["id"]
                .clone(),
        );
    }
    let mut events = app.events().await;
    let policy = PreviewPolicy { workers: 2, max_source_bytes: 40 * 1024 * 1024, max_pixels: 50_000_000 };
    let worker = |deps: chatgenius_files::service::deps::Deps| async move {
        let mut done = 0;
        while process_next(&deps, &policy).await.unwrap() {
            done += 1;
        }
        done
    };
    let (a, b) = tokio::join!(worker(app.deps.clone()), worker(app.deps.clone()));
    assert_eq!(a + b, 6, "every job claimed once: {a} + {b}");
    let mut announced_ids = Vec::new();
    while announced_ids.len() < ids.len() {
        let event = serde_json::to_value(&*events.next().await).unwrap();
        if event["type"] == "file_updated" {
            assert_eq!(event["file"]["preview"]["width"], 320, "{event}");
            announced_ids.push(event["file"]["id"].clone());
        }
    }
    announced_ids.sort_by_key(|id| id.as_i64());
    assert_eq!(announced_ids, ids, "each file announced once");
    // No seventh event: nothing was made twice.
    let extra = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(extra.is_err(), "an extra event: {:?}", extra.map(|e| e.event.clone()));
}
