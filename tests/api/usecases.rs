//! Use cases called directly, without HTTP: [`Deps`] over a real database
//! (SQLite, or PostgreSQL under TEST_POSTGRES_URL) and the embedded store, as
//! `startup::open_deps` builds them for the `sweep` command.

use chatgenius_files::{
    config::Config,
    domain::{ChannelName, ContentType, FileName, Username},
    embedded_s3::EmbeddedS3,
    entity::{file_upload, pending_upload},
    events::{Event, MemberJoined},
    outbox,
    service::{
        ServiceError, channels,
        deps::Deps,
        files,
        uploads::{self, Confirmation, Target, UploadRequest},
        users,
    },
    startup,
};
use std::sync::{Arc, Mutex};

use sea_orm::{EntityTrait, PaginatorTrait};

use crate::helpers::{PNG, fresh_database_url};

struct UseCases {
    deps: Deps,
    database_url: String,
    _s3: Option<EmbeddedS3>,
    _dir: tempfile::TempDir,
}

async fn use_cases(extra: &[&str]) -> UseCases {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let mut args = vec![
        "test".to_owned(),
        format!("--data-dir={}", dir.path().display()),
        "--embedded-s3-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={database_url}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let config = Config::parse_from(args).expect("valid test config");
    let (deps, _, s3) = startup::open_deps(&config).await.unwrap();
    UseCases { deps, database_url, _s3: s3, _dir: dir }
}

async fn user(deps: &Deps, name: &str) -> i32 {
    users::find_or_create(&deps.db, &Username::parse(name).unwrap()).await.unwrap().id
}

async fn channel(deps: &Deps, creator: i32) -> i32 {
    channels::create(deps, creator, &ChannelName::parse("general").unwrap()).await.unwrap().id
}

fn png_request(channel_id: i32) -> UploadRequest {
    UploadRequest {
        target: Target { channel_id: Some(channel_id), message_id: None },
        file_name: FileName::parse("pixel.png").unwrap(),
        content_type: ContentType::parse("image/png").unwrap(),
        size: PNG.len() as u64,
        sha256: None,
    }
}

/// Presigns, sends the bytes to the presigned URL as a client would, and returns the upload id.
async fn presign_and_put(deps: &Deps, user: i32, channel_id: i32) -> uuid::Uuid {
    let presigned = uploads::presign(deps, user, png_request(channel_id)).await.unwrap();
    let mut put = reqwest::Client::new().put(&presigned.request.url).body(PNG.to_vec());
    for (name, value) in &presigned.request.headers {
        if *name != "content-length" {
            put = put.header(*name, value);
        }
    }
    assert!(put.send().await.unwrap().status().is_success());
    presigned.upload.id
}

#[tokio::test]
async fn a_confirm_records_the_file_once_and_its_retry_returns_the_same_file() {
    let UseCases { deps, .. } = &use_cases(&[]).await;
    let alice = user(deps, "alice").await;
    let channel_id = channel(deps, alice).await;
    let upload = presign_and_put(deps, alice, channel_id).await;
    let before = outbox::newest(&deps.db).await.unwrap();

    let Confirmation::Created(file) = uploads::confirm(deps, alice, upload).await.unwrap() else {
        panic!("the first confirm creates the file")
    };
    let Confirmation::AlreadyConfirmed(again) = uploads::confirm(deps, alice, upload).await.unwrap() else {
        panic!("a retried confirm finds the file")
    };
    assert_eq!((again.id, again.file_size), (file.id, Some(PNG.len() as i64)));
    let events = outbox::read(&deps.db, before, 100).await.unwrap();
    assert_eq!(events.len(), 1, "one file_upload_complete, none for the retry");
    assert_eq!(file_upload::Entity::find().count(&deps.db).await.unwrap(), 1);
}

#[tokio::test]
async fn removing_a_member_aborts_their_open_upload_and_a_late_confirm_records_nothing() {
    let UseCases { deps, .. } = &use_cases(&[]).await;
    let (alice, bob) = (user(deps, "alice").await, user(deps, "bob").await);
    let channel_id = channel(deps, alice).await;
    channels::add_member(deps, channel_id, alice, &Username::parse("bob").unwrap()).await.unwrap();
    let upload = presign_and_put(deps, bob, channel_id).await;

    channels::remove_member(deps, channel_id, alice, bob).await.unwrap();
    assert!(uploads::confirm(deps, bob, upload).await.is_err());
    let row = pending_upload::Entity::find_by_id(upload).one(&deps.db).await.unwrap().unwrap();
    assert_eq!(row.state, pending_upload::UploadState::Aborted);
    assert_eq!(file_upload::Entity::find().count(&deps.db).await.unwrap(), 0);
    assert!(deps.storage.head(&row.s3_key).await.unwrap().is_none(), "the aborted upload's object is gone");
}

#[tokio::test]
async fn only_the_uploader_deletes_a_file_and_then_nobody_sees_it() {
    let UseCases { deps, .. } = &use_cases(&[]).await;
    let (alice, bob) = (user(deps, "alice").await, user(deps, "bob").await);
    let channel_id = channel(deps, alice).await;
    channels::add_member(deps, channel_id, alice, &Username::parse("bob").unwrap()).await.unwrap();
    let upload = presign_and_put(deps, alice, channel_id).await;
    let Confirmation::Created(file) = uploads::confirm(deps, alice, upload).await.unwrap() else { panic!() };

    assert!(matches!(files::delete(deps, bob, file.id).await, Err(ServiceError::Forbidden(_))));
    files::delete(deps, alice, file.id).await.unwrap();
    for caller in [alice, bob] {
        assert!(matches!(files::visible_file(&deps.db, caller, file.id).await, Err(ServiceError::NotFound(_))));
    }
    assert!(matches!(files::delete(deps, alice, file.id).await, Err(ServiceError::NotFound(_))));
}

#[tokio::test]
async fn downloads_are_counted_off_the_request_path_and_written_by_a_flush() {
    let UseCases { deps, .. } = &use_cases(&[]).await;
    let alice = user(deps, "alice").await;
    let channel_id = channel(deps, alice).await;
    let upload = presign_and_put(deps, alice, channel_id).await;
    let Confirmation::Created(file) = uploads::confirm(deps, alice, upload).await.unwrap() else { panic!() };

    for _ in 0..3 {
        files::download(deps, alice, file.id, false).await.unwrap();
    }
    deps.downloads.flush().await;
    let counted = file_upload::Entity::find_by_id(file.id).one(&deps.db).await.unwrap().unwrap();
    assert_eq!(counted.download_count, 3);
    assert!(counted.last_downloaded_at.is_some());
}

#[tokio::test]
async fn a_presign_breaking_the_rules_is_refused_before_anything_is_recorded() {
    let UseCases { deps, .. } = &use_cases(&["--max-file-size-mb=1", "--allowed-file-types=image/*"]).await;
    let (alice, mallory) = (user(deps, "alice").await, user(deps, "mallory").await);
    let channel_id = channel(deps, alice).await;

    let too_large = UploadRequest { size: 1024 * 1024 + 1, ..png_request(channel_id) };
    assert!(matches!(uploads::presign(deps, alice, too_large).await, Err(ServiceError::TooLarge(_))));
    let text = UploadRequest {
        file_name: FileName::parse("notes.txt").unwrap(),
        content_type: ContentType::parse("text/plain").unwrap(),
        ..png_request(channel_id)
    };
    assert!(matches!(uploads::presign(deps, alice, text).await, Err(ServiceError::TypeNotAllowed(_))));
    let mismatched = UploadRequest { file_name: FileName::parse("pixel.jpg").unwrap(), ..png_request(channel_id) };
    assert!(matches!(
        uploads::presign(deps, alice, mismatched).await,
        Err(ServiceError::Invalid { code: "extension_mismatch", .. })
    ));
    assert!(matches!(
        uploads::presign(deps, mallory, png_request(channel_id)).await,
        Err(ServiceError::NotFound("channel"))
    ));
    assert_eq!(pending_upload::Entity::find().count(&deps.db).await.unwrap(), 0);
}

#[tokio::test]
async fn a_presign_costs_one_statement_and_a_confirm_one_read_and_three_writes() {
    let UseCases { deps, .. } = &use_cases(&[]).await;
    let alice = user(deps, "alice").await;
    let channel_id = channel(deps, alice).await;
    let statements = Arc::new(Mutex::new(Vec::new()));
    let mut counted = deps.clone();
    let log = statements.clone();
    counted.db.set_metric_callback(move |info| log.lock().unwrap().push(info.statement.sql.clone()));
    let taken = || std::mem::take(&mut *statements.lock().unwrap());

    let upload = presign_and_put(&counted, alice, channel_id).await;
    let presign = taken();
    assert_eq!(presign.len(), 1, "the insert checks the membership: {presign:#?}");
    assert!(matches!(uploads::confirm(&counted, alice, upload).await.unwrap(), Confirmation::Created(_)));
    let confirm = taken();
    // The upload; then, in one transaction, the file, the claim of the
    // upload and the event (the outbox makes the event part of the commit).
    let verbs: Vec<&str> = confirm.iter().map(|sql| sql.split_whitespace().next().unwrap()).collect();
    assert_eq!(verbs.len(), 4, "{confirm:#?}");
    assert_eq!(verbs[..3], ["SELECT", "INSERT", "UPDATE"], "{confirm:#?}");
    assert!(confirm[3].contains("INSERT INTO events"), "the event: {}", confirm[3]);
}

/// The instance that commits an event is woken twice for it (by its own
/// commit and, on PostgreSQL, by the NOTIFY) and reads it from the outbox once.
#[tokio::test]
async fn an_event_committed_here_is_read_from_the_outbox_once() {
    let UseCases { deps, database_url, .. } = &use_cases(&[]).await;
    let alice = user(deps, "alice").await;
    let reads = Arc::new(Mutex::new(0));
    let mut reader_db = deps.db.clone();
    let counted = reads.clone();
    reader_db.set_metric_callback(move |info| {
        if info.statement.sql.contains(r#"WHERE "events"."id" >"#) {
            *counted.lock().unwrap() += 1;
        }
    });
    let listen_url = database_url.starts_with("postgres").then(|| database_url.clone());
    let started = std::time::Instant::now();
    outbox::start(reader_db, deps.events.clone(), listen_url, deps.metrics.clone()).await.unwrap();
    let mut delivered = deps.events.subscribe();

    let events = 10;
    for i in 0..events {
        channels::create(deps, alice, &ChannelName::parse(&format!("room-{i}")).unwrap()).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), delivered.recv()).await.unwrap().unwrap();
    }
    // The notifications of those commits arrive, and are not read again.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let reads = *reads.lock().unwrap();
    // On a slow machine the reader's periodic read may also have come.
    let periodic = started.elapsed().as_secs() / outbox::READ_AT_LEAST_EVERY.as_secs();
    assert!((events..=events + periodic).contains(&reads), "one read per event: {reads} for {events}");
}

/// An event whose wake-up never came (another instance's, behind a LISTEN
/// connection that went silent) is still delivered, by the periodic read.
#[tokio::test]
async fn an_event_nobody_announced_is_delivered_by_the_periodic_read() {
    let UseCases { deps, .. } = &use_cases(&[]).await;
    let alice = user(deps, "alice").await;
    outbox::start(deps.db.clone(), deps.events.clone(), None, deps.metrics.clone()).await.unwrap();
    let mut delivered = deps.events.subscribe();
    let event = Event::MemberJoined(MemberJoined { channel_id: 1, user_id: alice });
    let id = outbox::append(&deps.db, &event).await.unwrap();
    let wait = outbox::READ_AT_LEAST_EVERY + std::time::Duration::from_secs(2);
    let got = tokio::time::timeout(wait, delivered.recv()).await.expect("delivered without a wake-up").unwrap();
    assert_eq!(got.id, id);
}
