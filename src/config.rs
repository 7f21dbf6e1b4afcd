//! Every setting of the service, read once at boot from the environment (and
//! `.env`), with the product spec's variable names; a bad value stops boot.

use std::{fmt, net::SocketAddr, num::NonZeroU32, path::PathBuf, str::FromStr};

use clap::Args;

/// The service configuration. Each field is an environment variable of the same
/// name (upper case); `--help` lists them with their defaults.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Object store: `embedded` (in-process S3 under DATA_DIR) or `s3` (AWS S3
    /// or an S3-compatible store). Default: `s3` when keys are set, `embedded`
    /// when no S3 setting is; S3 settings without keys need it said.
    #[arg(long, env = "STORAGE", value_name = "STORAGE")]
    pub storage: Option<StorageKind>,

    /// S3 access key id. Unset with STORAGE=s3: AWS's credential chain
    /// (profile, web identity, ECS, EC2 instance role); unset with
    /// STORAGE=embedded: the embedded endpoint generates its own.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", value_name = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<String>,

    /// S3 secret access key (never logged).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", value_name = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<Secret>,

    /// Bucket holding every uploaded object. Default: chatgenius-files.
    #[arg(long, env = "AWS_S3_BUCKET_NAME", value_name = "AWS_S3_BUCKET_NAME")]
    pub aws_s3_bucket_name: Option<BucketName>,

    /// S3 region used for signing. Default: us-east-1.
    #[arg(long, env = "AWS_S3_REGION", value_name = "AWS_S3_REGION")]
    pub aws_s3_region: Option<String>,

    /// Seconds to open a connection to the object store.
    #[arg(long, env = "S3_CONNECT_TIMEOUT_SECS", value_name = "S3_CONNECT_TIMEOUT_SECS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub s3_connect_timeout_secs: u64,

    /// Seconds one attempt of an object store call may take (completing a
    /// multipart upload gets 600: the store assembles the object meanwhile).
    #[arg(long, env = "S3_ATTEMPT_TIMEOUT_SECS", value_name = "S3_ATTEMPT_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub s3_attempt_timeout_secs: u64,

    /// Seconds an object store call may take with its retries; past it the
    /// request answers 503 `storage_unavailable`.
    #[arg(long, env = "S3_TOTAL_TIMEOUT_SECS", value_name = "S3_TOTAL_TIMEOUT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub s3_total_timeout_secs: u64,

    /// Attempts per object store call (1 = no retry).
    #[arg(long, env = "S3_MAX_ATTEMPTS", value_name = "S3_MAX_ATTEMPTS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub s3_max_attempts: u32,

    /// Largest accepted file, in MiB (1 to 5,000,000).
    #[arg(long, env = "MAX_FILE_SIZE_MB", value_name = "MAX_FILE_SIZE_MB", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=5_000_000))]
    pub max_file_size_mb: u64,

    /// Storage one user may hold, in MiB: their live files plus their uploads
    /// in progress (0: unlimited).
    #[arg(long, env = "QUOTA_USER_MB", value_name = "QUOTA_USER_MB", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub quota_user_mb: u64,

    /// Storage one channel may hold, in MiB, counted like QUOTA_USER_MB (0: unlimited).
    #[arg(long, env = "QUOTA_CHANNEL_MB", value_name = "QUOTA_CHANNEL_MB", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub quota_channel_mb: u64,

    /// Preview jobs this instance runs at once (0: it makes no previews; others may).
    #[arg(long, env = "PREVIEW_WORKERS", value_name = "PREVIEW_WORKERS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=16))]
    pub preview_workers: u32,

    /// Largest image a preview is made of, in MiB; larger ones get none.
    #[arg(long, env = "PREVIEW_MAX_SOURCE_MB", value_name = "PREVIEW_MAX_SOURCE_MB", default_value_t = 40,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub preview_max_source_mb: u64,

    /// Most pixels of an image a preview is made of, in millions (decompression
    /// bombs stop here); larger ones get none.
    #[arg(long, env = "PREVIEW_MAX_MEGAPIXELS", value_name = "PREVIEW_MAX_MEGAPIXELS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub preview_max_megapixels: u64,

    /// Parts of an upload through the broker (`POST /files/upload`, 8 MiB
    /// each) sent to the store at once, while the next is read from the client.
    #[arg(long, env = "PROXY_PARTS_IN_FLIGHT", value_name = "PROXY_PARTS_IN_FLIGHT", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub proxy_parts_in_flight: u32,

    /// Uploads through the broker one user may have in progress at once (each
    /// holds up to PROXY_PARTS_IN_FLIGHT + 1 parts in memory); more get 429.
    #[arg(long, env = "PROXY_UPLOADS_PER_USER", value_name = "PROXY_UPLOADS_PER_USER", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub proxy_uploads_per_user: u32,

    /// Seconds an upload through the broker may receive no byte before it is
    /// abandoned (400 `upload_interrupted`, its slot and memory given back).
    #[arg(long, env = "PROXY_IDLE_TIMEOUT_SECS", value_name = "PROXY_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub proxy_idle_timeout_secs: u64,

    /// Remove location and other metadata (EXIF, XMP, IPTC, comments) from
    /// JPEG, PNG and WebP originals before they are recorded; pixels are untouched.
    #[arg(long, env = "STRIP_PHOTO_METADATA", value_name = "STRIP_PHOTO_METADATA", default_value_t = true, action = clap::ArgAction::Set)]
    pub strip_photo_metadata: bool,

    /// Largest image whose metadata is removed, in MiB (the broker holds it in
    /// memory meanwhile); larger ones are stored as uploaded.
    #[arg(long, env = "STRIP_PHOTO_METADATA_MAX_MB", value_name = "STRIP_PHOTO_METADATA_MAX_MB", default_value_t = 40,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub strip_photo_metadata_max_mb: u64,

    /// Comma-separated MIME types clients may upload; `image/*` and `*/*` wildcards allowed.
    #[arg(long, env = "ALLOWED_FILE_TYPES", value_name = "ALLOWED_FILE_TYPES", default_value = DEFAULT_ALLOWED_TYPES)]
    pub allowed_file_types: AllowedTypes,

    /// Database URL (`sqlite://…` or `postgres://…`). Default: a SQLite file under DATA_DIR.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for the default SQLite database, the embedded S3 store and the dev JWT secret.
    #[arg(long, env = "DATA_DIR", value_name = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address the HTTP API listens on.
    #[arg(long, env = "BIND_ADDR", value_name = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// The broker's origin as browsers see it (for CORS). Default: `http://` + BIND_ADDR.
    #[arg(long, env = "PUBLIC_URL", value_name = "PUBLIC_URL")]
    pub public_url: Option<Origin>,

    /// S3 endpoint URL (SeaweedFS, Garage, Ceph…). Unset: AWS S3, or the embedded
    /// endpoint when no credentials are set either.
    #[arg(long, env = "AWS_S3_ENDPOINT", value_name = "AWS_S3_ENDPOINT")]
    pub aws_s3_endpoint: Option<Origin>,

    /// Endpoint put into presigned URLs when browsers reach S3 by another address
    /// than the broker does. Default: AWS_S3_ENDPOINT.
    #[arg(long, env = "AWS_S3_PUBLIC_ENDPOINT", value_name = "AWS_S3_PUBLIC_ENDPOINT")]
    pub aws_s3_public_endpoint: Option<Origin>,

    /// Path-style bucket addressing. Default: true with a custom endpoint, false for AWS.
    #[arg(long, env = "AWS_S3_FORCE_PATH_STYLE", value_name = "AWS_S3_FORCE_PATH_STYLE")]
    pub aws_s3_force_path_style: Option<bool>,

    /// Address of the embedded S3 endpoint (embedded mode only).
    #[arg(long, env = "EMBEDDED_S3_ADDR", value_name = "EMBEDDED_S3_ADDR", default_value = "127.0.0.1:9000")]
    pub embedded_s3_addr: SocketAddr,

    /// HS256 secret for bearer tokens (at least 32 bytes). Unset: a random secret
    /// kept in DATA_DIR, and dev login on.
    #[arg(long, env = "JWT_SECRET", value_name = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// When set, `/metrics` requires `Authorization: Bearer <METRICS_TOKEN>`.
    #[arg(long, env = "METRICS_TOKEN", value_name = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// Allow `POST /auth/dev-login`. Default: on when JWT_SECRET is unset.
    #[arg(long, env = "DEV_LOGIN", value_name = "DEV_LOGIN")]
    pub dev_login: Option<bool>,

    /// Lifetime of tokens minted by dev login and `token`, in seconds.
    #[arg(long, env = "TOKEN_TTL_SECS", value_name = "TOKEN_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(60..=2_592_000))]
    pub token_ttl_secs: u64,

    /// Comma-separated origins allowed to call the API and the embedded S3 from a
    /// browser; the broker's own origin is always allowed.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        value_name = "CORS_ALLOWED_ORIGINS",
        default_value = "http://localhost:3000",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<Origin>,

    /// Lifetime of presigned upload URLs, in seconds (server cap: 3600).
    #[arg(long, env = "UPLOAD_URL_TTL_SECS", value_name = "UPLOAD_URL_TTL_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_url_ttl_secs: u64,

    /// How long after its upload URL expires an upload may still be confirmed,
    /// in seconds (a PUT that started in time may finish late). After that the
    /// sweeper expires it and confirm answers 410 `upload_expired`.
    #[arg(long, env = "UPLOAD_CONFIRM_GRACE_SECS", value_name = "UPLOAD_CONFIRM_GRACE_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub upload_confirm_grace_secs: u64,

    /// Lifetime of presigned download URLs, in seconds (at most 300).
    #[arg(long, env = "DOWNLOAD_URL_TTL_SECS", value_name = "DOWNLOAD_URL_TTL_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub download_url_ttl_secs: u64,

    /// Presigns plus uploads through the broker, per user per minute.
    #[arg(long, env = "PRESIGN_RATE_PER_MIN", value_name = "PRESIGN_RATE_PER_MIN", default_value = "60")]
    pub presign_rate_per_min: NonZeroU32,

    /// Confirms per user per minute.
    #[arg(long, env = "CONFIRM_RATE_PER_MIN", value_name = "CONFIRM_RATE_PER_MIN", default_value = "60")]
    pub confirm_rate_per_min: NonZeroU32,

    /// Download links per user per minute.
    #[arg(long, env = "DOWNLOAD_RATE_PER_MIN", value_name = "DOWNLOAD_RATE_PER_MIN", default_value = "300")]
    pub download_rate_per_min: NonZeroU32,

    /// Multipart part listings (`POST /files/uploads/{id}/parts`) per user per minute.
    #[arg(long, env = "PARTS_RATE_PER_MIN", value_name = "PARTS_RATE_PER_MIN", default_value = "120")]
    pub parts_rate_per_min: NonZeroU32,

    /// Dev logins per client address per minute (each may create a user).
    #[arg(long, env = "DEV_LOGIN_RATE_PER_MIN", value_name = "DEV_LOGIN_RATE_PER_MIN", default_value = "30")]
    pub dev_login_rate_per_min: NonZeroU32,

    /// How often rate limiters forget users whose budget has fully recovered, in seconds.
    #[arg(long, env = "LIMITER_CLEANUP_SECS", value_name = "LIMITER_CLEANUP_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub limiter_cleanup_secs: u64,

    /// A WebSocket client that cannot take an event within this many
    /// milliseconds is disconnected.
    #[arg(long, env = "WS_SEND_TIMEOUT_MS", value_name = "WS_SEND_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub ws_send_timeout_ms: u64,

    /// Seconds between WebSocket pings; a client silent for two intervals
    /// (no pong, no frame) is disconnected.
    #[arg(long, env = "WS_PING_INTERVAL_SECS", value_name = "WS_PING_INTERVAL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_ping_interval_secs: u64,

    /// Seconds events are kept for clients resuming with `GET /ws?after=`;
    /// older ones are trimmed by the sweeper (a resume from before them gets
    /// `resync_required`).
    #[arg(long, env = "EVENTS_RETENTION_SECS", value_name = "EVENTS_RETENTION_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(60..=2_592_000))]
    pub events_retention_secs: u64,

    /// Most events replayed to one resuming WebSocket; a resume with more to
    /// catch up on gets `resync_required` instead.
    #[arg(long, env = "EVENTS_REPLAY_MAX", value_name = "EVENTS_REPLAY_MAX", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub events_replay_max: u64,

    /// Most event sockets one user may have open on one instance (tabs,
    /// devices); one more is refused with 429 `too_many_connections`.
    #[arg(long, env = "WS_MAX_PER_USER", value_name = "WS_MAX_PER_USER", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ws_max_per_user: u64,

    /// Log lines as human-readable `text` or one JSON object per line (`json`).
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Days a deleted file's object is kept before the sweeper purges it (0: next sweep).
    #[arg(long, env = "DELETED_FILE_RETENTION_DAYS", value_name = "DELETED_FILE_RETENTION_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u64).range(0..=3650))]
    pub deleted_file_retention_days: u64,

    /// Seconds between background sweeps; 0 turns the background sweeper off.
    #[arg(long, env = "SWEEP_INTERVAL_SECS", value_name = "SWEEP_INTERVAL_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub sweep_interval_secs: u64,

    /// Age after which the sweeper aborts incomplete multipart uploads, in seconds.
    #[arg(long, env = "MULTIPART_UPLOAD_TTL_SECS", value_name = "MULTIPART_UPLOAD_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    pub multipart_upload_ttl_secs: u64,

    /// Part size of multipart direct uploads, in MiB (S3's minimum is 5); raised
    /// for files that would otherwise need more than 10,000 parts.
    #[arg(long, env = "MULTIPART_PART_SIZE_MB", value_name = "MULTIPART_PART_SIZE_MB", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(5..=5120))]
    pub multipart_part_size_mb: u64,

    /// Files larger than this many MiB are uploaded by the browser client in
    /// parts (`POST /files/multipart`); advertised by `GET /config`.
    #[arg(long, env = "MULTIPART_THRESHOLD_MB", value_name = "MULTIPART_THRESHOLD_MB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub multipart_threshold_mb: u64,

    /// `bucket-setup` turns on bucket versioning.
    #[arg(long, env = "AWS_S3_VERSIONING", value_name = "AWS_S3_VERSIONING", default_value_t = false, action = clap::ArgAction::Set)]
    pub aws_s3_versioning: bool,

    /// `bucket-setup`'s lifecycle rule aborts incomplete multipart uploads this
    /// many days after they started (a backstop behind the sweeper).
    #[arg(long, env = "MULTIPART_ABORT_AFTER_DAYS", value_name = "MULTIPART_ABORT_AFTER_DAYS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=365))]
    pub multipart_abort_after_days: u32,
}

const DEFAULT_ALLOWED_TYPES: &str = "image/*,video/*,audio/*,text/plain,text/csv,text/markdown,\
application/pdf,application/zip,application/json,\
application/msword,application/vnd.openxmlformats-officedocument.wordprocessingml.document,\
application/vnd.ms-excel,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,\
application/vnd.ms-powerpoint,application/vnd.openxmlformats-officedocument.presentationml.presentation";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A configuration error, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Longest bucket name the embedded store can hold every object key in.
const MAX_EMBEDDED_BUCKET_LEN: usize = 21;

/// The STORAGE setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    /// The in-process S3 endpoint, objects under DATA_DIR/s3.
    Embedded,
    /// AWS S3 or an S3-compatible store (AWS_S3_ENDPOINT).
    S3,
}

/// Where objects are stored.
#[derive(Debug, Clone)]
pub enum StorageMode {
    /// The in-process S3 endpoint, with credentials generated at boot.
    Embedded,
    /// An external S3-compatible store (AWS when `endpoint` is `None`), with
    /// fixed keys or, without them, AWS's standard credential chain.
    External { endpoint: Option<Origin>, keys: Option<(String, Secret)> },
}

/// Parses a [`Config`] alone, for tools and tests.
#[derive(clap::Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Parses a configuration from arguments (and the environment for the rest),
    /// then applies [`Config::validate`].
    pub fn parse_from<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let config = ConfigOnly::try_parse_from(args).map_err(|e| e.to_string())?.config;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Cross-field checks clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |var, problem: &str| Err(ConfigError { var, problem: problem.to_owned() });
        match (&self.aws_access_key_id, &self.aws_secret_access_key) {
            (Some(_), None) => return err("AWS_SECRET_ACCESS_KEY", "required when AWS_ACCESS_KEY_ID is set"),
            (None, Some(_)) => return err("AWS_ACCESS_KEY_ID", "required when AWS_SECRET_ACCESS_KEY is set"),
            _ => {}
        }
        if self.storage_kind()? == StorageKind::Embedded && self.bucket().as_str().len() > MAX_EMBEDDED_BUCKET_LEN {
            // s3s-fs names metadata files after bucket and key (see MAX_KEY_NAME_BYTES).
            return err("AWS_S3_BUCKET_NAME", "at most 21 characters with the embedded store");
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < 32
        {
            return err("JWT_SECRET", "must be at least 32 bytes long");
        }
        if self.aws_s3_region.as_deref().is_some_and(str::is_empty) {
            return err("AWS_S3_REGION", "must not be empty");
        }
        Ok(())
    }

    /// The object store to use: as STORAGE says, or implied by the keys; never
    /// the local disk when any S3 setting was given.
    fn storage_kind(&self) -> Result<StorageKind, ConfigError> {
        let keys = self.aws_access_key_id.is_some();
        let s3_setting = [
            ("AWS_S3_ENDPOINT", self.aws_s3_endpoint.is_some()),
            ("AWS_S3_BUCKET_NAME", self.aws_s3_bucket_name.is_some()),
            ("AWS_S3_REGION", self.aws_s3_region.is_some()),
            ("AWS_S3_PUBLIC_ENDPOINT", self.aws_s3_public_endpoint.is_some()),
            ("AWS_S3_FORCE_PATH_STYLE", self.aws_s3_force_path_style.is_some()),
            ("AWS_S3_VERSIONING", self.aws_s3_versioning),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name));
        let problem = |problem: String| ConfigError { var: "STORAGE", problem };
        match (self.storage, keys, s3_setting) {
            (Some(StorageKind::Embedded), true, _) => {
                Err(problem("is embedded, but AWS_ACCESS_KEY_ID is set; say STORAGE=s3 or drop the keys".into()))
            }
            (Some(StorageKind::Embedded), false, Some(setting @ ("AWS_S3_ENDPOINT" | "AWS_S3_PUBLIC_ENDPOINT"))) => {
                Err(problem(format!("is embedded, but {setting} is set; say STORAGE=s3 or drop it")))
            }
            (Some(kind), _, _) => Ok(kind),
            (None, true, _) => Ok(StorageKind::S3),
            (None, false, Some(setting)) => Err(problem(format!(
                "not set, and {setting} is set without keys: say STORAGE=s3 (AWS credential chain) or \
                 STORAGE=embedded, so files never land on the local disk by mistake"
            ))),
            (None, false, None) => Ok(StorageKind::Embedded),
        }
    }

    /// Which object store to use (after [`Config::validate`]).
    pub fn storage_mode(&self) -> StorageMode {
        match self.storage_kind() {
            Ok(StorageKind::S3) => StorageMode::External {
                endpoint: self.aws_s3_endpoint.clone(),
                keys: self.aws_access_key_id.clone().zip(self.aws_secret_access_key.clone()),
            },
            _ => StorageMode::Embedded,
        }
    }

    /// The bucket (AWS_S3_BUCKET_NAME or `chatgenius-files`).
    pub fn bucket(&self) -> BucketName {
        self.aws_s3_bucket_name.clone().unwrap_or_else(|| BucketName("chatgenius-files".into()))
    }

    /// The signing region (AWS_S3_REGION or `us-east-1`).
    pub fn region(&self) -> String {
        self.aws_s3_region.clone().unwrap_or_else(|| "us-east-1".into())
    }

    /// The database URL, defaulting to a SQLite file in DATA_DIR.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("chatgenius.db").display()))
    }

    /// Largest accepted file in bytes.
    pub fn max_file_size_bytes(&self) -> u64 {
        self.max_file_size_mb * 1024 * 1024
    }

    /// Whether `POST /auth/dev-login` is served.
    pub fn dev_login_enabled(&self) -> bool {
        self.dev_login.unwrap_or(self.jwt_secret.is_none())
    }

    /// The broker's own origin.
    pub fn public_origin(&self, bound: SocketAddr) -> Origin {
        self.public_url.clone().unwrap_or_else(|| Origin(format!("http://{bound}")))
    }
}

/// A string that must never be printed: `Debug` shows `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() { Err("must not be empty".into()) } else { Ok(Self(s.to_owned())) }
    }
}

/// An S3 bucket name (3–63 characters of `a-z 0-9 . -`, starting and ending alphanumeric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketName(String);

impl BucketName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BucketName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_chars = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let ok_ends = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
        if (3..=63).contains(&s.len()) && ok_chars && ok_ends && !s.contains("..") {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("'{s}' is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')"))
        }
    }
}

/// An HTTP(S) origin such as `http://localhost:3000` (scheme, host, optional port; no path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// An origin built by the service itself (not parsed from input).
    pub(crate) fn from_raw(origin: String) -> Self {
        Self(origin)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().trim_end_matches('/');
        let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@']) => Ok(Self(s.to_owned())),
            _ => Err(format!("'{s}' is not an origin like http://host:port")),
        }
    }
}

/// The MIME patterns clients may upload, e.g. `image/*,application/pdf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTypes(Vec<String>);

const TOP_LEVEL_TYPES: &[&str] =
    &["application", "audio", "font", "image", "message", "model", "multipart", "text", "video", "*"];

impl AllowedTypes {
    /// Whether a (lower-case, parameter-free) MIME type matches one of the patterns.
    pub fn allows(&self, mime: &str) -> bool {
        let Some((top, _)) = mime.split_once('/') else { return false };
        self.0.iter().any(|pattern| match pattern.strip_suffix("/*") {
            Some("*") => true,
            Some(prefix) => prefix == top,
            None => pattern == mime,
        })
    }

    /// The patterns, as configured.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }
}

impl FromStr for AllowedTypes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let is_token =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
        let mut patterns = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let pattern = raw.to_ascii_lowercase();
            let valid = match pattern.split_once('/') {
                Some(("*", "*")) => true,
                Some((top, sub)) => TOP_LEVEL_TYPES.contains(&top) && top != "*" && (sub == "*" || is_token(sub)),
                None => false,
            };
            if !valid {
                return Err(format!("unknown MIME pattern '{raw}' (expected type/subtype or type/*)"));
            }
            patterns.push(pattern);
        }
        if patterns.is_empty() {
            return Err("must list at least one MIME type".into());
        }
        Ok(Self(patterns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_types_match_exact_and_wildcards() {
        let types: AllowedTypes = "image/*, application/PDF".parse().unwrap();
        assert!(types.allows("image/png"));
        assert!(types.allows("application/pdf"));
        assert!(!types.allows("application/zip"));
        assert!(!types.allows("imagex/png"));
        assert!("*/*".parse::<AllowedTypes>().unwrap().allows("text/html"));
    }

    #[test]
    fn allowed_types_reject_unknown_patterns() {
        for bad in ["imag/png", "image", "image/", "*/png", "", "image/p n g"] {
            assert!(bad.parse::<AllowedTypes>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn origins_and_buckets_are_checked() {
        assert_eq!("http://localhost:3000/".parse::<Origin>().unwrap().as_str(), "http://localhost:3000");
        assert!("localhost:3000".parse::<Origin>().is_err());
        assert!("http://a/b".parse::<Origin>().is_err());
        assert!("chatgenius-files".parse::<BucketName>().is_ok());
        assert!("Bad_Bucket".parse::<BucketName>().is_err());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
    }
}
