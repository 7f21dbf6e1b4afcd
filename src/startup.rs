//! Builds the application from its configuration: database, object store
//! (embedded or external), routes; then serves until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use migration::{Migrator, MigratorTrait};
use poem::{EndpointExt, Route, Server, http::Method, middleware::Cors};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::{
    access_log, api,
    auth::{self, Authenticator, TokenKeys},
    config::{Config, Origin, StorageMode},
    embedded_s3::EmbeddedS3,
    error::render_poem_error,
    guard,
    net::NoDelayAcceptor,
    outbox,
    ratelimit::{Quotas, RateLimits},
    service::{
        deps::Deps,
        previews::{self, PreviewPolicy},
        sweeper::{self, SweepPolicy},
    },
    state::AppState,
    storage::{CredentialSource, Storage, StorageSettings, Timeouts},
    ws::AllowedOrigins,
};

/// A built, not yet serving, application.
pub struct Application {
    addr: SocketAddr,
    acceptor: NoDelayAcceptor,
    state: AppState,
    cors_origins: Vec<Origin>,
    embedded_s3: Option<EmbeddedS3>,
    closing: tokio::sync::watch::Sender<bool>,
}

impl Application {
    /// Validates the configuration, binds the listeners, migrates the database
    /// and prepares the bucket.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.bind_addr)
            .await
            .map_err(|e| anyhow::anyhow!("BIND_ADDR: cannot listen on {}: {e}", config.bind_addr))?;
        let (acceptor, addr) = NoDelayAcceptor::new(listener)?;
        let mut cors_origins = config.cors_allowed_origins.clone();
        cors_origins.push(config.public_origin(addr));

        let (settings, embedded_s3) = storage_settings(&config, &cors_origins).await?;
        let storage = Storage::new(&settings);
        match (&embedded_s3, storage.ensure_bucket().await) {
            (_, Ok(())) => report_checksums(verifies_checksums(&storage, embedded_s3.is_some()).await),
            (Some(_), Err(err)) => anyhow::bail!("embedded S3: cannot create bucket: {err}"),
            (None, Err(err)) => {
                tracing::warn!(error = %err, "object store not ready at boot; /ready reports 503 until it is")
            }
        }

        let db = connect_database(&config, None).await?;
        with_migration_lock(&db, || Migrator::up(&db, None)).await?;

        let secret = auth::resolve_secret(config.jwt_secret.as_ref(), &config.data_dir)?;
        let tokens = Arc::new(TokenKeys::new(&secret, Duration::from_secs(config.token_ttl_secs)));
        tracing::info!(
            %addr,
            dev_login = config.dev_login_enabled(),
            database = if config.database_url().starts_with("postgres") { "postgresql" } else { "sqlite" },
            "chatgenius-files ready"
        );
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let deps = Deps::new(&config, db.clone(), storage, Arc::new(rate_limits(&config)));
        let listen_url = (db.get_database_backend() == DatabaseBackend::Postgres).then(|| config.database_url());
        let state = AppState {
            auth: Authenticator::new(tokens, db),
            deps,
            config: Arc::new(config),
            sockets: Arc::default(),
            readiness: Arc::default(),
            closing: closing_rx,
        };
        outbox::start(state.deps.db.clone(), state.deps.events.clone(), listen_url, state.deps.metrics.clone())
            .await
            .map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot read or LISTEN for events: {e}"))?;
        Ok(Self { addr, acceptor, state, cors_origins, embedded_s3, closing })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (for tests and tools).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The embedded S3 endpoint, in embedded mode.
    pub fn embedded_s3(&self) -> Option<&EmbeddedS3> {
        self.embedded_s3.as_ref()
    }

    /// Serves until `shutdown` completes. Then: WebSocket clients get a close
    /// frame (1001), in-flight requests finish (up to 10 s), the sweeper
    /// stops between sweeps, and the last download counts are written.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let (timers, sweeper) = self.spawn_background();
        let downloads = self.state.deps.downloads.clone();
        // Connections silent this long are closed (headers never finished,
        // bodies that stopped): longer than two WebSocket pings, which keep
        // idle sockets active.
        let idle = Duration::from_secs((2 * self.state.config.ws_ping_interval_secs + 10).max(60));
        let closing = self.closing;
        let shutdown = async move {
            shutdown.await;
            let _ = closing.send(true);
        };
        let api = api::service();
        let app = Route::new()
            .nest("/docs", api.swagger_ui())
            .at("/openapi.json", poem::get(spec_endpoint))
            .at("/metrics", poem::get(metrics_endpoint))
            .nest("/ui", crate::ui::assets())
            .nest("/", api.around(crate::ui::page_at_root))
            .with(api_cors(&self.cors_origins))
            .around(guard::guard)
            .around(access_log::log_request)
            .data(AllowedOrigins(Arc::new(self.cors_origins.clone())))
            .data(self.state.auth.clone())
            .data(self.state.deps.metrics.clone())
            .data(self.state)
            .catch_all_error(render_poem_error);
        let _keep_s3_alive = self.embedded_s3;
        let served = Server::new_with_acceptor(self.acceptor)
            .idle_timeout(idle)
            .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(10)))
            .await;
        timers.abort();
        if let Some(sweeper) = sweeper {
            // A sweep under way finishes; the loop then ends on its own.
            let _ = tokio::time::timeout(Duration::from_secs(30), sweeper).await;
        }
        // Download counts are written behind: the last ones reach the database.
        downloads.flush().await;
        served
    }

    /// Timers: limiter cleanup and, unless switched off, the sweeper.
    fn spawn_background(&self) -> (tokio::task::JoinHandle<()>, Option<tokio::task::JoinHandle<()>>) {
        let limits = self.state.deps.limits.clone();
        let every = Duration::from_secs(self.state.config.limiter_cleanup_secs);
        let timers = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                limits.retain_recent();
            }
        });
        let previews = PreviewPolicy::from_config(&self.state.config);
        if previews.workers > 0 {
            tokio::spawn(previews::run(self.state.deps.clone(), previews, self.state.closing.clone()));
        }
        let policy = SweepPolicy::from_config(&self.state.config);
        let sweeper = (policy.interval_secs > 0).then(|| {
            tokio::spawn(sweeper::run_periodically(self.state.deps.clone(), policy, self.state.closing.clone()))
        });
        (timers, sweeper)
    }

    /// Starts shutdown as `run_until`'s future would (for tests and tools).
    pub fn closer(&self) -> tokio::sync::watch::Sender<bool> {
        self.closing.clone()
    }
}

/// The spec with its links ([`api::spec_json`]).
#[poem::handler]
fn spec_endpoint() -> poem::Response {
    poem::Response::builder().content_type("application/json; charset=utf-8").body(api::spec())
}

/// Prometheus text exposition of this instance's metrics (behind
/// METRICS_TOKEN when it is set).
#[poem::handler]
fn metrics_endpoint(req: &poem::Request, state: poem::web::Data<&AppState>) -> poem::Response {
    use poem::IntoResponse;
    if let Some(expected) = &state.config.metrics_token {
        let given = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default();
        let matches: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.expose().as_bytes()).into();
        if !matches {
            return crate::error::ApiError::unauthorized("/metrics needs the METRICS_TOKEN bearer token")
                .into_response();
        }
    }
    let text = state.deps.metrics.render(state.deps.limits.len());
    poem::Response::builder().content_type("text/plain; version=0.0.4").body(text)
}

fn rate_limits(config: &Config) -> RateLimits {
    RateLimits::new(Quotas {
        upload: config.presign_rate_per_min,
        confirm: config.confirm_rate_per_min,
        download: config.download_rate_per_min,
        parts: config.parts_rate_per_min,
        dev_login: config.dev_login_rate_per_min,
    })
}

/// The use cases' handles without the HTTP layer, for the `sweep` command
/// and use-case tests: the migrated database, the object store (the embedded
/// endpoint started when it is the one, kept alive by the returned handle);
/// no listener, no event reader.
pub async fn open_deps(config: &Config) -> anyhow::Result<(Deps, SweepPolicy, Option<EmbeddedS3>)> {
    config.validate()?;
    let (storage, embedded) = open_storage(config, &config.cors_allowed_origins).await?;
    if embedded.is_some() {
        storage.ensure_bucket().await.map_err(|e| anyhow::anyhow!("embedded S3: cannot create bucket: {e}"))?;
    }
    let db = connect_database(config, Some(2)).await?;
    with_migration_lock(&db, || Migrator::up(&db, None)).await?;
    verifies_checksums(&storage, embedded.is_some()).await;
    let deps = Deps::new(config, db, storage, Arc::new(rate_limits(config)));
    Ok((deps, SweepPolicy::from_config(config), embedded))
}

/// Whether the store verifies SHA-256 checksums: the embedded one does (its
/// bridge), another is probed.
async fn verifies_checksums(storage: &Storage, embedded: bool) -> bool {
    if embedded {
        storage.trust_checksums();
        return true;
    }
    storage.probe_checksums().await
}

/// Says in the log how confirms check a declared SHA-256.
fn report_checksums(store_verifies: bool) {
    if store_verifies {
        tracing::info!("storage: the store verifies SHA-256 checksums; confirms read its checksum back");
    } else {
        tracing::info!(
            "storage: the store does not verify SHA-256 checksums; confirms read the whole object to check one"
        );
    }
}

/// The object store as configured (starting the embedded endpoint when it is
/// the one), without touching the bucket: for tools like `bucket-setup`.
pub async fn open_storage(config: &Config, cors_origins: &[Origin]) -> anyhow::Result<(Storage, Option<EmbeddedS3>)> {
    let (settings, embedded) = storage_settings(config, cors_origins).await?;
    Ok((Storage::new(&settings), embedded))
}

async fn storage_settings(
    config: &Config,
    cors_origins: &[Origin],
) -> anyhow::Result<(StorageSettings, Option<EmbeddedS3>)> {
    let common = |endpoint: Option<Origin>, credentials, path_style| StorageSettings {
        public_endpoint: config.aws_s3_public_endpoint.clone().or_else(|| endpoint.clone()),
        endpoint,
        region: config.region(),
        bucket: config.bucket(),
        credentials,
        force_path_style: config.aws_s3_force_path_style.unwrap_or(path_style),
        timeouts: Timeouts {
            connect: Duration::from_secs(config.s3_connect_timeout_secs),
            attempt: Duration::from_secs(config.s3_attempt_timeout_secs),
            total: Duration::from_secs(config.s3_total_timeout_secs),
            max_attempts: config.s3_max_attempts,
        },
    };
    Ok(match config.storage_mode() {
        StorageMode::Embedded => {
            let s3 = EmbeddedS3::start(&config.data_dir.join("s3"), config.embedded_s3_addr, cors_origins)
                .await
                .map_err(|e| anyhow::anyhow!("EMBEDDED_S3_ADDR: cannot start the embedded S3 endpoint: {e}"))?;
            tracing::info!(endpoint = %s3.endpoint(), bucket = config.bucket().as_str(), "storage: embedded S3 endpoint (SigV4 checked)");
            let credentials = CredentialSource::fixed(&s3.access_key_id, s3.secret_access_key.expose());
            let settings = common(Some(s3.endpoint()), credentials, true);
            (settings, Some(s3))
        }
        StorageMode::External { endpoint, keys } => {
            let path_style = endpoint.is_some();
            let credentials = match keys {
                Some((key, secret)) => CredentialSource::fixed(&key, secret.expose()),
                None => CredentialSource::chain(&config.region()).await.map_err(|e| {
                    let cause = aws_smithy_types::error::display::DisplayErrorContext(e);
                    anyhow::anyhow!(
                        "STORAGE=s3 without AWS_ACCESS_KEY_ID: AWS's credential chain (environment, profile, \
                             web identity, ECS, instance metadata) found no credentials: {cause}"
                    )
                })?,
            };
            tracing::info!(
                endpoint = endpoint.as_ref().map_or("AWS", Origin::as_str),
                bucket = config.bucket().as_str(),
                "storage: external S3"
            );
            (common(endpoint, credentials, path_style), None)
        }
    })
}

/// Arbitrary key of the PostgreSQL advisory lock migrations run under.
const MIGRATION_LOCK_KEY: i64 = 0x6367_665f_6d69;

/// Runs `migrate` (applying, reverting or listing migrations) while holding a
/// PostgreSQL advisory lock, so instances booting together on one database
/// take turns: the first applies what is pending, the others find nothing
/// left. Their DDL would otherwise collide (`pg_type_typname_nsp_index`) and
/// all but one would exit. SQLite serves one instance: no lock.
pub async fn with_migration_lock<T, F, Fut>(db: &DatabaseConnection, migrate: F) -> Result<T, DbErr>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, DbErr>>,
{
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return migrate().await;
    }
    // Held by this transaction's connection; the migrations use others.
    let lock = db.begin().await?;
    lock.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")).await?;
    let result = migrate().await;
    lock.commit().await?;
    result
}

/// Drops every table and applies every migration. SQLite: on one
/// connection with foreign keys off (a table dropped before the tables
/// referring to it would make those undroppable); PostgreSQL: SeaORM's
/// `fresh` (DROP … CASCADE).
pub async fn migrate_fresh(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::sqlx::{self, AssertSqlSafe};
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return Migrator::fresh(db).await;
    }
    let failed = |e: sqlx::Error| DbErr::Custom(format!("migrate fresh: {e}"));
    let mut conn = db.get_sqlite_connection_pool().acquire().await.map_err(failed)?;
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *conn).await.map_err(failed)?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .fetch_all(&mut *conn)
            .await
            .map_err(failed)?;
    let mut dropped = Ok(());
    for table in tables {
        let drop = format!("DROP TABLE IF EXISTS \"{}\"", table.replace('"', "\"\""));
        dropped = sqlx::query(AssertSqlSafe(drop)).execute(&mut *conn).await.map(|_| ());
        if dropped.is_err() {
            break;
        }
    }
    // Back on before the connection returns to the pool, whatever happened.
    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await.map_err(failed)?;
    dropped.map_err(failed)?;
    drop(conn);
    Migrator::up(db, None).await
}

/// SQLite checkpoints the WAL (syncing it and the database file) inside the
/// commit that crosses this many pages; presigns waiting on that commit wait
/// for it too. 8000 pages (32 MiB of WAL) instead of SQLite's 1000 makes those
/// stalls eight times rarer: presign p99 at concurrency 16 went 7.4 → 3.9 ms.
const WAL_AUTOCHECKPOINT_PAGES: &str = "8000";

/// Connects to DATABASE_URL (creating the SQLite file's folder when needed),
/// with `connections` or the default pool size.
pub async fn connect_database(config: &Config, connections: Option<u32>) -> anyhow::Result<DatabaseConnection> {
    let url = config.database_url();
    if url.starts_with("sqlite:") && config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("DATA_DIR: cannot create {}: {e}", config.data_dir.display()))?;
    }
    let sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url);
    // No ping before every use: a round trip to PostgreSQL (or to a SQLite
    // connection's worker thread) that doubled the statements of a presign.
    // A connection that died is found by its next statement instead.
    options
        .test_before_acquire(false)
        .max_connections(connections.unwrap_or(if sqlite { 8 } else { 16 }))
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        // WAL lets readers run beside the writer; NORMAL syncs at checkpoints, not every commit.
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        });
    Database::connect(options).await.map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot connect: {e}"))
}

fn api_cors(origins: &[Origin]) -> Cors {
    Cors::new()
        .allow_origins(origins.iter().map(Origin::as_str))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::PATCH])
        .allow_headers(["authorization", "content-type"])
        .max_age(600)
}
