//! The sweeper leaves no object behind: deleted files after retention, expired
//! uploads, orphans.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use chatgenius_files::entity::file_upload;
use sea_orm::EntityTrait;

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn sweep_purges_deleted_files_and_expired_uploads_leaving_no_object() {
    // Two seconds: X-Amz-Date has whole seconds, so a 1 s URL may live only a few
    // milliseconds, less than a loaded machine needs between presign and PUT.
    let app = spawn_app_with(&[
        ("deleted-file-retention-days", "0"),
        ("upload-url-ttl-secs", "2"),
        ("upload-confirm-grace-secs", "0"),
        ("sweep-interval-secs", "0"),
    ])
    .await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;

    // A deleted file, an upload PUT but never confirmed, one never uploaded, one kept.
    let deleted = app.upload(&alice, channel, None, "deleted.txt", "text/plain", b"deleted").await;
    assert_eq!(app.delete(&alice, &format!("/files/{}", deleted["id"])).await.status(), StatusCode::NO_CONTENT);
    let abandoned: Value = app
        .post(
            &alice,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "a.txt", "content_type": "text/plain", "size": 9 }),
        )
        .await
        .json()
        .await
        .unwrap();
    let put = crate::presigned::put(&app.client, &abandoned, "abandoned").send().await.unwrap();
    assert!(put.status().is_success());
    app.post(
        &alice,
        "/files/presign",
        json!({ "channel_id": channel, "file_name": "b.txt", "content_type": "text/plain", "size": 1 }),
    )
    .await;
    assert_eq!(app.object_count().await, 2);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = app.sweep_once().await.unwrap();
    assert_eq!(report.deleted_files_purged, 1);
    assert_eq!(report.expired_uploads_removed, 2);
    assert_eq!(report.orphans_found, 0);
    assert_eq!(app.object_count().await, 0, "no object left");
    let confirm = app
        .post(&alice, &format!("/files/uploads/{}/confirm", abandoned["upload_id"].as_str().unwrap()), json!({}))
        .await;
    crate::helpers::assert_error(confirm, StatusCode::GONE, "upload_expired").await;

    // A live file survives every sweep.
    let kept = app.upload(&alice, channel, None, "kept.txt", "text/plain", b"kept").await;
    let again = app.sweep_once().await.unwrap();
    assert_eq!((again.deleted_files_purged, again.expired_uploads_removed, again.orphans_deleted), (0, 0, 0));
    assert_eq!(app.object_count().await, 1);
    assert_eq!(
        app.get(&alice, &format!("/files/download/{}?redirect=false", kept["id"])).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn sweep_deletes_objects_no_row_knows_once_no_url_could_still_write_them() {
    let app = spawn_app_with(&[("upload-url-ttl-secs", "60"), ("sweep-interval-secs", "0")]).await;
    let key = "uploads/1/unknown/orphan.txt";
    app.deps.storage.put(key, "text/plain", bytes::Bytes::from_static(b"orphan")).await.unwrap();
    let report = app.sweep_once().await.unwrap();
    assert_eq!((report.orphans_found, report.orphans_deleted), (1, 0), "young: a URL might still be writing it");
    assert_eq!(app.object_count().await, 1);

    // Older than the URL lifetime plus the margin (the embedded store dates objects by their file).
    let path = app.data_dir().join("s3").join(app.deps.storage.bucket()).join(key);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(125)).unwrap();
    let report = app.sweep_once().await.unwrap();
    assert_eq!((report.orphans_found, report.orphans_deleted), (1, 1));
    assert_eq!(app.object_count().await, 0);
    assert!(report.table().contains("| orphan objects deleted | 1 |"));
}

#[test]
fn sweep_command_prints_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatgenius-files"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path())
        .current_dir(dir.path())
        .arg("sweep")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| deleted files purged | 0 |"), "{table}");
    assert!(table.contains("| stale multipart uploads aborted |"), "{table}");
}

#[tokio::test]
async fn only_one_instance_sweeps_at_a_time_on_postgresql() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
    let app = spawn_app_with(&[("sweep-interval-secs", "0")]).await;
    if app.deps.db.get_database_backend() != DatabaseBackend::Postgres {
        // SQLite serves a single instance: no lock, the sweep always runs.
        assert!(!app.sweep_once().await.unwrap().skipped);
        return;
    }
    let other_instance = app.deps.db.begin().await.unwrap();
    let lock = format!("SELECT pg_advisory_xact_lock({})", chatgenius_files::service::sweeper::LOCK_KEY);
    other_instance.execute_raw(Statement::from_string(DatabaseBackend::Postgres, lock)).await.unwrap();
    assert!(app.sweep_once().await.unwrap().skipped, "locked by another instance");
    other_instance.rollback().await.unwrap();
    assert!(!app.sweep_once().await.unwrap().skipped);
}

/// Incomplete multipart uploads past their TTL are aborted where the store lists them.
async fn stale_multipart_uploads_are_aborted(store: crate::helpers::Store, store_lists_them: bool) {
    let app =
        crate::helpers::spawn_app_on(&store, &[("multipart-upload-ttl-secs", "0"), ("sweep-interval-secs", "0")]).await;
    let upload_id =
        app.deps.storage.create_multipart("uploads/1/stale/big.bin", "application/octet-stream").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = app.sweep_once().await.unwrap();
    assert_eq!(report.multipart_supported, store_lists_them);
    if !report.multipart_supported {
        // s3s-fs does not list multipart uploads; the table says so.
        assert!(report.table().contains("not supported by this store"));
        app.deps.storage.abort_multipart("uploads/1/stale/big.bin", &upload_id).await.unwrap();
        return;
    }
    assert_eq!(report.multipart_aborted, 1);
    assert!(app.deps.storage.list_multipart("uploads/").await.unwrap().is_empty());
    assert_eq!(app.object_count().await, 0);
}

#[tokio::test]
async fn stale_multipart_uploads_are_aborted_on_seaweedfs() {
    match crate::helpers::Store::seaweedfs() {
        Some(store) => stale_multipart_uploads_are_aborted(store, true).await,
        None => eprintln!("SeaweedFS not configured (TEST_S3_ENDPOINT); run tests/run.sh"),
    }
}

#[tokio::test]
async fn stale_multipart_uploads_are_reported_unsupported_on_the_embedded_store() {
    stale_multipart_uploads_are_aborted(crate::helpers::Store::Embedded, false).await;
}

/// The sweep lock lives with its connection: when that connection dies
/// (PostgreSQL restarted, backend terminated, network cut), the sweep stops
/// before its next deletion instead of going on beside the next lock holder's.
#[tokio::test]
async fn a_sweep_stops_when_its_lock_connection_dies() {
    use chatgenius_files::entity::file_upload;
    use sea_orm::{
        ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait, QueryFilter,
    };
    let app = spawn_app_with(&[("sweep-interval-secs", "0"), ("deleted-file-retention-days", "0")]).await;
    if app.deps.db.get_database_backend() != DatabaseBackend::Postgres {
        eprintln!("PostgreSQL only (TEST_POSTGRES_URL): SQLite serves a single instance");
        return;
    }
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await as i32;
    // 1,000 deleted files due for purge: each is a store call and a statement.
    let deleted_at = chrono::Utc::now().naive_utc() - chrono::Duration::days(1);
    let rows = (0..1000).map(|i| file_upload::ActiveModel {
        file_name: Set(format!("{i}.txt")),
        s3_key: Set(format!("uploads/{channel}/gone{i}/{i}.txt")),
        channel_id: Set(channel),
        is_deleted: Set(Some(true)),
        deleted_at: Set(Some(deleted_at)),
        download_count: Set(0),
        ..Default::default()
    });
    file_upload::Entity::insert_many(rows).exec(&app.deps.db).await.unwrap();
    let due = || file_upload::Entity::find().filter(file_upload::Column::IsDeleted.eq(true)).count(&app.deps.db);

    let sweeper = app.sweeper.clone();
    let sweeping = tokio::spawn(async move { sweeper.once().await });
    let holder = loop {
        let row = app
            .deps
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            ))
            .await
            .unwrap();
        if let Some(row) = row {
            break row.try_get::<i32>("", "pid").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.deps.db.execute_unprepared(&format!("SELECT pg_terminate_backend({holder})")).await.unwrap();
    let stopped = sweeping.await.unwrap();
    assert!(stopped.is_err(), "the sweep went on without its lock: {stopped:?}");
    // It stopped at its next deletion, long before the end of its work.
    let left = due().await.unwrap();
    assert!(left > 0, "the sweep purged everything after losing its lock");
    let next = app.sweep_once().await.unwrap();
    assert_eq!(next.deleted_files_purged, left);
    assert_eq!(due().await.unwrap(), 0);
}

#[tokio::test]
async fn an_object_the_store_will_not_delete_holds_up_only_its_own_file() {
    let app = spawn_app_with(&[("deleted-file-retention-days", "0"), ("sweep-interval-secs", "0")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let stuck = app.upload(&alice, channel, None, "stuck.txt", "text/plain", b"stuck").await;
    let other = app.upload(&alice, channel, None, "other.txt", "text/plain", b"other").await;
    for file in [&stuck, &other] {
        assert_eq!(app.delete(&alice, &format!("/files/{}", file["id"])).await.status(), StatusCode::NO_CONTENT);
    }
    // The embedded store keeps an object as a file: a folder in its place
    // makes its deletion fail.
    let row = file_upload::Entity::find_by_id(stuck["id"].as_i64().unwrap() as i32).one(&app.deps.db).await.unwrap();
    let path = app.data_dir().join("s3").join(app.deps.storage.bucket()).join(&row.unwrap().s3_key);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir_all(path.join("in-the-way")).unwrap();

    let report = app.sweep_once().await.expect("the sweep goes on past the stuck object");
    assert_eq!(report.deleted_files_purged, 1, "{report:?}");
    let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"cgf_ignored_failures_total{what="delete_object"} 1"#), "{metrics}");
    let still_there = |id: &Value| file_upload::Entity::find_by_id(id.as_i64().unwrap() as i32).one(&app.deps.db);
    assert!(still_there(&stuck["id"]).await.unwrap().is_some(), "kept for the next sweep");
    assert!(still_there(&other["id"]).await.unwrap().is_none(), "purged");
}
