//! `spawn_app()` and the small HTTP client helpers every test uses.

use std::{net::SocketAddr, sync::Arc};

use chatgenius_files::{
    auth::TokenKeys,
    config::Config,
    embedded_s3::EmbeddedS3,
    service::{
        ServiceError,
        deps::Deps,
        sweeper::{self, SweepPolicy, SweepReport},
    },
    startup::Application,
};
use reqwest::{Response, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The smallest valid PNG (a 1×1 pixel).
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

/// Runs the broker's sweeper as `chatgenius-files sweep` would (whole bucket).
#[derive(Clone)]
pub struct Sweeper {
    deps: Deps,
    policy: SweepPolicy,
}

impl Sweeper {
    pub async fn once(&self) -> Result<SweepReport, ServiceError> {
        sweeper::sweep_once(&self.deps, &self.policy).await
    }
}

/// A running broker with its own database and bucket.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The use cases' handles (database, store, hub, limits) of the broker.
    pub deps: Deps,
    pub tokens: Arc<TokenKeys>,
    pub sweeper: Sweeper,
    pub s3_endpoint: String,
    /// Stops the embedded S3 endpoint (`None` on an external store).
    pub s3_stopper: Option<Arc<Notify>>,
    /// The database this instance uses.
    pub database_url: String,
    /// Kept alive for the test's duration (database file, embedded objects).
    _data_dir: tempfile::TempDir,
    shutdown: Arc<Notify>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.notify_one();
        if let Some(stop) = &self.s3_stopper {
            stop.notify_one();
        }
    }
}

/// A fresh database URL: a SQLite file in `dir`, or a new PostgreSQL database
/// when TEST_POSTGRES_URL (server URL without database) is set.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(server) => {
            let server = server.trim_end_matches('/');
            let name = format!("cgf_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(format!("{server}/postgres")).await.expect("connect to PostgreSQL");
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            admin.close().await.ok();
            format!("{server}/{name}")
        }
        Err(_) => format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
    }
}

/// The object store a test runs against.
#[derive(Debug, Clone)]
pub enum Store {
    /// The broker's in-process S3 endpoint.
    Embedded,
    /// SeaweedFS started by tests/run.sh (TEST_S3_ENDPOINT, TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY).
    SeaweedFs { endpoint: String, access_key: String, secret_key: String },
}

impl Store {
    /// SeaweedFS when tests/run.sh started one, else `None` — except under CI
    /// (`CI` set), where a missing SeaweedFS fails the test instead of
    /// letting its variant pass without running.
    pub fn seaweedfs() -> Option<Self> {
        let var = |name| std::env::var(name).ok();
        let store = (|| {
            Some(Self::SeaweedFs {
                endpoint: var("TEST_S3_ENDPOINT")?,
                access_key: var("TEST_S3_ACCESS_KEY")?,
                secret_key: var("TEST_S3_SECRET_KEY")?,
            })
        })();
        if store.is_none() && std::env::var_os("CI").is_some() {
            panic!("CI is set but SeaweedFS is not configured (TEST_S3_ENDPOINT, …): run the suite with tests/run.sh");
        }
        store
    }
}

/// Starts the broker on `store` with the given arguments on top of the defaults.
pub async fn spawn_app_on(store: &Store, overrides: &[(&str, &str)]) -> TestApp {
    match store {
        Store::Embedded => spawn_app_with(overrides).await,
        Store::SeaweedFs { endpoint, access_key, secret_key } => {
            let mut all = vec![
                ("aws-s3-endpoint", endpoint.as_str()),
                ("aws-access-key-id", access_key.as_str()),
                ("aws-secret-access-key", secret_key.as_str()),
            ];
            all.extend_from_slice(overrides);
            spawn_app_with(&all).await
        }
    }
}

/// Starts the broker with the given arguments (`name`, `value`) on top of, or
/// instead of, the test defaults.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let overridden = |name: &str| overrides.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    let database_url = match overridden("database-url") {
        Some(url) => url,
        None => fresh_database_url(data_dir.path()).await,
    };
    let defaults = [
        ("data-dir", data_dir.path().display().to_string()),
        ("database-url", database_url.clone()),
        ("bind-addr", "127.0.0.1:0".to_owned()),
        ("embedded-s3-addr", "127.0.0.1:0".to_owned()),
        ("aws-s3-bucket-name", format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])),
    ];
    let mut args = vec!["chatgenius-files".to_owned()];
    if overridden("aws-s3-endpoint").is_none() {
        args.push("--storage=embedded".to_owned());
    }
    for (name, value) in defaults {
        args.push(format!("--{name}={}", overridden(name).unwrap_or(value)));
    }
    for (name, value) in overrides {
        if !defaults_has(name) {
            args.push(format!("--{name}={value}"));
        }
    }
    let config = Config::parse_from(args).expect("valid test config");
    let app = Application::build(config).await.expect("application builds");
    let addr = app.addr();
    let state = app.state().clone();
    let sweeper = Sweeper { deps: state.deps.clone(), policy: SweepPolicy::from_config(&state.config) };
    let (s3_endpoint, s3_stopper) = match app.embedded_s3() {
        Some(s3) => (s3.endpoint().to_string(), Some(s3.stopper())),
        None => (overridden("aws-s3-endpoint").expect("an external store has an endpoint"), None),
    };
    let shutdown = Arc::new(Notify::new());
    let stop = shutdown.clone();
    tokio::spawn(app.run_until(async move { stop.notified().await }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        deps: state.deps,
        tokens: state.auth.keys,
        sweeper,
        s3_endpoint,
        s3_stopper,
        database_url,
        _data_dir: data_dir,
        shutdown,
    }
}

fn defaults_has(name: &str) -> bool {
    ["data-dir", "database-url", "bind-addr", "embedded-s3-addr", "aws-s3-bucket-name"].contains(&name)
}

/// Starts the broker with the test defaults.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A logged-in user of a test app.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
}

impl TestApp {
    /// One sweep over everything.
    pub async fn sweep_once(&self) -> Result<SweepReport, ServiceError> {
        self.sweeper.once().await
    }

    /// The broker's DATA_DIR (the embedded store keeps objects under `s3/<bucket>/`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    /// Starts a graceful shutdown, as SIGTERM does.
    pub fn shut_down(&self) {
        self.shutdown.notify_one();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Logs in (creating the user) through dev login.
    pub async fn login(&self, username: &str) -> TestUser {
        let resp =
            self.client.post(self.url("/auth/dev-login")).json(&json!({ "username": username })).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "dev login of {username}");
        let body: Value = resp.json().await.unwrap();
        TestUser {
            id: body["user"]["id"].as_i64().unwrap(),
            username: username.to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn get(&self, user: &TestUser, path: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(&user.token).send().await.unwrap()
    }

    pub async fn post(&self, user: &TestUser, path: &str, body: Value) -> Response {
        self.client.post(self.url(path)).bearer_auth(&user.token).json(&body).send().await.unwrap()
    }

    pub async fn delete(&self, user: &TestUser, path: &str) -> Response {
        self.client.delete(self.url(path)).bearer_auth(&user.token).send().await.unwrap()
    }

    /// Creates a channel owned by `user` and returns its id.
    pub async fn create_channel(&self, user: &TestUser, name: &str) -> i64 {
        let resp = self.post(user, "/channels", json!({ "name": name })).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    /// Adds `member` to a channel of `owner`.
    pub async fn add_member(&self, owner: &TestUser, channel: i64, member: &TestUser) {
        let resp =
            self.post(owner, &format!("/channels/{channel}/members"), json!({ "username": member.username })).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
}

impl TestApp {
    /// Presigns an upload of `name` into `channel` and returns the answer
    /// (asserting 201).
    pub async fn presign_file(
        &self,
        user: &TestUser,
        channel: i64,
        name: &str,
        content_type: &str,
        size: usize,
    ) -> Value {
        let body = json!({ "channel_id": channel, "file_name": name, "content_type": content_type, "size": size });
        let resp = self.post(user, "/files/presign", body).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "presign {name}");
        resp.json().await.unwrap()
    }

    /// PUTs `body` to a presign answer's URL with the headers it came with.
    pub async fn put_presigned(&self, presigned: &Value, body: Vec<u8>) -> StatusCode {
        crate::presigned::put(&self.client, presigned, body).send().await.unwrap().status()
    }

    /// Confirms the upload a presign answer started.
    pub async fn confirm(&self, user: &TestUser, presigned: &Value) -> Response {
        self.confirm_id(user, presigned["upload_id"].as_str().unwrap()).await
    }

    pub async fn confirm_id(&self, user: &TestUser, upload_id: &str) -> Response {
        self.post(user, &format!("/files/uploads/{upload_id}/confirm"), json!({})).await
    }

    /// Aborts the upload a presign answer started.
    pub async fn abort(&self, user: &TestUser, presigned: &Value) -> Response {
        self.delete(user, &format!("/files/uploads/{}", presigned["upload_id"].as_str().unwrap())).await
    }

    /// Uploads `body` the direct way (presign, real PUT, confirm) and returns the file.
    pub async fn upload(
        &self,
        user: &TestUser,
        channel: i64,
        message: Option<i64>,
        name: &str,
        content_type: &str,
        body: &[u8],
    ) -> Value {
        let presigned: Value = self
            .post(
                user,
                "/files/presign",
                json!({
                    "channel_id": channel, "message_id": message, "file_name": name,
                    "content_type": content_type, "size": body.len(),
                }),
            )
            .await
            .json()
            .await
            .unwrap();
        let put = self.put_presigned(&presigned, body.to_vec()).await;
        assert!(put.is_success(), "PUT {put}");
        let resp = self.confirm(user, &presigned).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    /// The download of a file as a member's browser gets it: the link, then
    /// the store's response (status, headers, bytes).
    pub async fn download(&self, user: &TestUser, file_id: i64) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let link = self.get(user, &format!("/files/download/{file_id}?redirect=false")).await;
        assert_eq!(link.status(), StatusCode::OK, "download link of file {file_id}");
        let url = link.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
        // Identity only: a stored `Content-Encoding: gzip` must not be undone by the client.
        let resp = self.client.get(url).header("accept-encoding", "identity").send().await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    /// Objects currently under `uploads/` in the test's bucket.
    pub async fn object_count(&self) -> usize {
        let out = self
            .deps
            .storage
            .client()
            .list_objects_v2()
            .bucket(self.deps.storage.bucket())
            .prefix("uploads/")
            .send()
            .await
            .unwrap();
        out.key_count().unwrap_or(0) as usize
    }
}

/// Asserts the status and the error body's code; returns the body.
pub async fn assert_error(resp: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(resp.status(), status, "status");
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "error content type: {content_type}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "error body: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "message in {body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "only the error member: {body}");
    body
}

/// Runs each named test once per store; SeaweedFS runs when tests/run.sh started it.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name(crate::helpers::Store::Embedded).await })*
        }
        mod seaweedfs {
            $(#[tokio::test] async fn $name() {
                match crate::helpers::Store::seaweedfs() {
                    Some(store) => super::$name(store).await,
                    None => eprintln!("SeaweedFS not configured (TEST_S3_ENDPOINT); run tests/run.sh"),
                }
            })*
        }
    };
}
pub(crate) use on_every_store;

/// The events committed after a point, as this instance delivers them.
pub struct Events {
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<chatgenius_files::events::Stamped>>,
    after: i64,
}

impl Events {
    /// The next event committed after the point (waits up to 5 s).
    pub async fn next(&mut self) -> std::sync::Arc<chatgenius_files::events::Stamped> {
        loop {
            let event = tokio::time::timeout(std::time::Duration::from_secs(5), self.rx.recv())
                .await
                .expect("an event within 5 s")
                .expect("the hub is open");
            if event.id > self.after {
                return event;
            }
        }
    }
}

impl TestApp {
    /// The events committed from now on (delivery is asynchronous: earlier
    /// ones may still arrive, and are skipped).
    pub async fn events(&self) -> Events {
        let rx = self.deps.events.subscribe();
        let after = chatgenius_files::outbox::newest(&self.deps.db).await.unwrap();
        Events { rx, after }
    }
}

impl TestApp {
    /// `GET /ready` once its last answer (reused for a second) has aged out.
    pub async fn ready_now(&self) -> Response {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        self.client.get(self.url("/ready")).send().await.unwrap()
    }
}

/// An S3 endpoint in the test process, so it outlives the brokers under test.
pub async fn outside_store(dir: &std::path::Path) -> EmbeddedS3 {
    EmbeddedS3::start(dir, "127.0.0.1:0".parse().unwrap(), &[]).await.unwrap()
}

/// Arguments pointing a broker at the S3 endpoint `s3` (reached at `endpoint`).
pub fn store_args(endpoint: &str, s3: &EmbeddedS3) -> Vec<(&'static str, String)> {
    vec![
        ("aws-s3-endpoint", endpoint.to_owned()),
        ("aws-access-key-id", s3.access_key_id.clone()),
        ("aws-secret-access-key", s3.secret_access_key.expose().to_owned()),
        ("aws-s3-bucket-name", "faults".to_owned()),
    ]
}

pub async fn spawn_with(args: &[(&'static str, String)]) -> TestApp {
    let borrowed: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&borrowed).await
}
