//! What the use cases work with: the database, the object store, the event
//! hub, rate limits, metrics, the download log and the upload rules (a few
//! settings, not the whole configuration). Built once at boot, cloned cheaply.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, Semaphore};

use super::download_log::DownloadLog;
use crate::{
    config::{AllowedTypes, Config},
    events::EventHub,
    metrics::Metrics,
    ratelimit::{RateLimits, UserSlots},
    storage::Storage,
};

/// The handles every use case may reach.
#[derive(Clone)]
pub struct Deps {
    pub db: DatabaseConnection,
    pub storage: Storage,
    /// Woken after each commit that appended events.
    pub events: EventHub,
    pub limits: Arc<RateLimits>,
    pub metrics: Arc<Metrics>,
    pub downloads: DownloadLog,
    pub policy: Arc<UploadPolicy>,
    /// Wakes this instance's preview workers.
    pub previews: PreviewQueue,
    /// Metadata removal from image originals.
    pub privacy: PhotoPrivacy,
    /// Uploads through the broker in progress, per user.
    pub streams: Arc<UserSlots>,
}

/// Wakes the preview workers of this instance (a confirm queued a job).
#[derive(Clone, Default)]
pub struct PreviewQueue(Arc<Notify>);

impl PreviewQueue {
    /// Wakes one waiting worker (or the next to wait); it works until no job is left.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`wake`](Self::wake).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Images cleaned at once per instance: each holds its file twice in memory.
const CLEANING_SLOTS: usize = 2;

/// Whether and up to what size originals are cleaned.
#[derive(Clone)]
pub struct PhotoPrivacy {
    pub strip: bool,
    pub max_bytes: u64,
    /// Limits how many are cleaned at once.
    pub slots: Arc<Semaphore>,
}

impl PhotoPrivacy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            strip: config.strip_photo_metadata,
            max_bytes: config.strip_photo_metadata_max_mb * 1024 * 1024,
            slots: Arc::new(Semaphore::new(CLEANING_SLOTS)),
        }
    }
}

/// The rules of uploads and downloads, from the configuration.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    pub max_file_size_mb: u64,
    pub allowed_file_types: AllowedTypes,
    pub upload_url_ttl_secs: u64,
    pub upload_confirm_grace_secs: u64,
    pub download_url_ttl_secs: u64,
    pub multipart_part_size_mb: u64,
    pub multipart_upload_ttl_secs: u64,
    /// MiB per user (0: unlimited).
    pub quota_user_mb: u64,
    /// MiB per channel (0: unlimited).
    pub quota_channel_mb: u64,
    /// Parts of an upload through the broker sent to the store at once.
    pub proxy_parts_in_flight: usize,
    /// Uploads through the broker one user may have in progress at once.
    pub proxy_uploads_per_user: usize,
    /// How long an upload through the broker may receive nothing.
    pub proxy_idle_timeout_secs: u64,
}

impl UploadPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_file_size_mb: config.max_file_size_mb,
            allowed_file_types: config.allowed_file_types.clone(),
            upload_url_ttl_secs: config.upload_url_ttl_secs,
            upload_confirm_grace_secs: config.upload_confirm_grace_secs,
            download_url_ttl_secs: config.download_url_ttl_secs,
            multipart_part_size_mb: config.multipart_part_size_mb,
            multipart_upload_ttl_secs: config.multipart_upload_ttl_secs,
            quota_user_mb: config.quota_user_mb,
            quota_channel_mb: config.quota_channel_mb,
            proxy_parts_in_flight: config.proxy_parts_in_flight as usize,
            proxy_uploads_per_user: config.proxy_uploads_per_user as usize,
            proxy_idle_timeout_secs: config.proxy_idle_timeout_secs,
        }
    }

    pub fn proxy_idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.proxy_idle_timeout_secs)
    }

    pub fn max_file_size_bytes(&self) -> u64 {
        self.max_file_size_mb * 1024 * 1024
    }
}

impl Deps {
    /// The handles for `db` and `storage` under `config`'s rules, with a
    /// download log writing to `db`.
    pub fn new(config: &Config, db: DatabaseConnection, storage: Storage, limits: Arc<RateLimits>) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            downloads: DownloadLog::spawn(db.clone(), metrics.clone()),
            db,
            storage,
            events: EventHub::default(),
            limits,
            metrics,
            policy: Arc::new(UploadPolicy::from_config(config)),
            previews: PreviewQueue::default(),
            privacy: PhotoPrivacy::from_config(config),
            streams: Arc::default(),
        }
    }
}
