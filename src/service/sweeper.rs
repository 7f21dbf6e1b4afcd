//! Background cleanup, also run once by `chatgenius-files sweep`: purges
//! objects of files deleted longer than the retention, expires uploads not
//! confirmed in time (claiming each row before touching its object), forgets
//! closed uploads, aborts stale multipart uploads, and deletes objects under
//! `uploads/` that neither a pending upload nor a file owns; trims events
//! past their retention.
//! On PostgreSQL only one instance sweeps at a time (advisory lock).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    Statement, TransactionTrait,
};
use uuid::Uuid;

use super::{ServiceError, deps::Deps, lifecycle, now, previews, privacy};
use crate::{
    config::Config,
    entity::{
        file_upload,
        pending_upload::{self, UploadState},
    },
    outbox,
    storage::StorageError,
};

/// Arbitrary key of the sweeper's PostgreSQL advisory lock.
pub const LOCK_KEY: i64 = 0x6367_665f_7377;
/// An object no row knows is deleted once it is this much older than the
/// longest upload URL lifetime (clocks of broker and store may differ a little).
const ORPHAN_MARGIN_SECS: i64 = 60;
/// Pages of 1,000 objects one background sweep reads looking for orphans; the
/// next sweep goes on from there, so a big bucket is read a slice at a time.
const ORPHAN_PAGES_PER_SWEEP: usize = 10;
/// Aborted, rejected and expired uploads are remembered this long after
/// their expiry (a late confirm gets 409 or 410 instead of 404).
const CLOSED_UPLOAD_RETENTION_DAYS: i64 = 1;
/// Uploads expired per batch.
const EXPIRE_BATCH: u64 = 1000;

/// The sweeper's own settings (upload lifetimes come from [`Deps::policy`]).
#[derive(Debug, Clone, Copy)]
pub struct SweepPolicy {
    /// Seconds between background sweeps (0: none).
    pub interval_secs: u64,
    /// Days a deleted file's object is kept before it is purged.
    pub deleted_file_retention_days: u64,
    /// Seconds events are kept for resuming sockets.
    pub events_retention_secs: u64,
}

impl SweepPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            interval_secs: config.sweep_interval_secs,
            deleted_file_retention_days: config.deleted_file_retention_days,
            events_retention_secs: config.events_retention_secs,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Another instance holds the sweep lock; nothing was done.
    pub skipped: bool,
    /// Objects of deleted files purged (their rows removed).
    pub deleted_files_purged: u64,
    /// Uploads not confirmed in time: expired, their objects deleted.
    pub expired_uploads_removed: u64,
    /// Rows of closed uploads forgotten.
    pub closed_uploads_forgotten: u64,
    /// Events older than EVENTS_RETENTION_SECS deleted.
    pub events_trimmed: u64,
    /// Incomplete multipart uploads aborted.
    pub multipart_aborted: u64,
    /// Whether the store lists multipart uploads at all.
    pub multipart_supported: bool,
    /// Objects under `uploads/` that no pending upload or file owns.
    pub orphans_found: u64,
    /// Of those, deleted (those of closed uploads at once, others once old enough).
    pub orphans_deleted: u64,
}

impl SweepReport {
    /// The report as a two-column table.
    pub fn table(&self) -> String {
        let rows = [
            ("skipped (another instance sweeping)", self.skipped.to_string()),
            ("deleted files purged", self.deleted_files_purged.to_string()),
            ("expired uploads removed", self.expired_uploads_removed.to_string()),
            ("closed uploads forgotten", self.closed_uploads_forgotten.to_string()),
            ("events trimmed", self.events_trimmed.to_string()),
            (
                "stale multipart uploads aborted",
                if self.multipart_supported {
                    self.multipart_aborted.to_string()
                } else {
                    "not supported by this store".into()
                },
            ),
            ("orphan objects found", self.orphans_found.to_string()),
            ("orphan objects deleted", self.orphans_deleted.to_string()),
        ];
        let mut out = String::from("| step | count |\n|---|---:|\n");
        for (step, count) in rows {
            out.push_str(&format!("| {step} | {count} |\n"));
        }
        out
    }
}

/// Where the orphan search goes on from, and how far it may go in one sweep.
#[derive(Debug, Default, Clone)]
pub struct OrphanCursor {
    /// The last key looked at (`None`: the start of `uploads/`).
    start_after: Option<String>,
    /// Pages per sweep (`None`: the whole bucket).
    pages: Option<usize>,
}

/// Sweeps every SWEEP_INTERVAL_SECS until shutdown starts (never mid-sweep).
pub async fn run_periodically(deps: Deps, policy: SweepPolicy, mut closing: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(policy.interval_secs));
    tick.tick().await;
    let mut orphans = OrphanCursor { start_after: None, pages: Some(ORPHAN_PAGES_PER_SWEEP) };
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.changed() => return,
        }
        match sweep(&deps, &policy, &mut orphans).await {
            Ok(report)
                if report != SweepReport { multipart_supported: report.multipart_supported, ..Default::default() } =>
            {
                tracing::info!(?report, "sweep done");
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "sweep failed; the next one retries");
                deps.metrics.ignored_failure("sweep");
            }
        }
    }
}

/// One sweep over everything, the whole bucket included.
pub async fn sweep_once(deps: &Deps, policy: &SweepPolicy) -> Result<SweepReport, ServiceError> {
    sweep(deps, policy, &mut OrphanCursor::default()).await
}

/// One sweep, reading the bucket for orphans as far as `orphans` allows.
async fn sweep(deps: &Deps, policy: &SweepPolicy, orphans: &mut OrphanCursor) -> Result<SweepReport, ServiceError> {
    let fence = match take_lock(deps).await? {
        Lock::Held(txn) => Fence(Some(txn)),
        Lock::NotNeeded => Fence(None),
        Lock::Busy => return Ok(SweepReport { skipped: true, ..Default::default() }),
    };
    let report = steps(deps, policy, &fence, orphans).await?;
    if let Some(txn) = fence.0 {
        txn.commit().await?;
    }
    Ok(report)
}

/// The steps of a sweep. Each claim commits at once (no row stays locked
/// while the store deletes); the fence is checked before each claim and each
/// store deletion.
async fn steps(
    deps: &Deps,
    policy: &SweepPolicy,
    fence: &Fence,
    orphans: &mut OrphanCursor,
) -> Result<SweepReport, ServiceError> {
    let mut report = SweepReport {
        deleted_files_purged: purge_deleted(deps, policy, fence).await?,
        expired_uploads_removed: expire_uploads(deps, fence).await?,
        closed_uploads_forgotten: forget_closed_uploads(deps, fence).await?,
        events_trimmed: outbox::trim(&deps.db, Duration::from_secs(policy.events_retention_secs)).await?,
        ..Default::default()
    };
    fence.check().await?;
    match abort_stale_multipart(deps).await {
        Ok(count) => (report.multipart_supported, report.multipart_aborted) = (true, count),
        Err(ServiceError::Storage(StorageError::Service { code, .. })) if code == "NotImplemented" => {}
        Err(err) => return Err(err),
    }
    (report.orphans_found, report.orphans_deleted) = sweep_orphans(deps, fence, orphans).await?;
    deps.metrics.swept(&[
        ("deleted_files_purged", report.deleted_files_purged),
        ("expired_uploads_removed", report.expired_uploads_removed),
        ("closed_uploads_forgotten", report.closed_uploads_forgotten),
        ("events_trimmed", report.events_trimmed),
        ("multipart_aborted", report.multipart_aborted),
        ("orphans_found", report.orphans_found),
        ("orphans_deleted", report.orphans_deleted),
    ]);
    Ok(report)
}

enum Lock {
    Held(DatabaseTransaction),
    NotNeeded,
    Busy,
}

/// What proves this sweep still holds its lock. On PostgreSQL: the
/// transaction that took the advisory lock; a statement on it fails once its
/// connection is gone, and the lock is gone with it, so the sweep stops before
/// its next claim or deletion, never running on beside the next lock holder's.
/// On SQLite (one instance) there is nothing to prove.
struct Fence(Option<DatabaseTransaction>);

impl Fence {
    async fn check(&self) -> Result<(), ServiceError> {
        if let Some(txn) = &self.0 {
            txn.execute_unprepared("SELECT 1").await?;
        }
        Ok(())
    }
}

/// A transaction-scoped advisory lock on PostgreSQL; SQLite serves one instance.
async fn take_lock(deps: &Deps) -> Result<Lock, ServiceError> {
    if deps.db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Lock::NotNeeded);
    }
    let txn = deps.db.begin().await?;
    let row = txn
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT pg_try_advisory_xact_lock({LOCK_KEY}) AS locked"),
        ))
        .await?;
    let locked = row.map(|r| r.try_get::<bool>("", "locked")).transpose()?.unwrap_or(false);
    Ok(if locked { Lock::Held(txn) } else { Lock::Busy })
}

async fn purge_deleted(deps: &Deps, policy: &SweepPolicy, fence: &Fence) -> Result<u64, ServiceError> {
    let cutoff = now() - chrono::Duration::days(policy.deleted_file_retention_days as i64);
    let due = file_upload::Entity::find()
        .filter(file_upload::Column::IsDeleted.eq(true))
        .filter(file_upload::Column::DeletedAt.lte(cutoff))
        .limit(1000)
        .all(&deps.db)
        .await?;
    let mut purged = 0;
    for file in &due {
        fence.check().await?;
        // Every key a preview job may have written for it, recorded or not
        // (a job that crashed between its write and its record).
        let previews = if file.preview_state.is_some() {
            previews::possible_keys(file.channel_id, file.id).to_vec()
        } else {
            vec![]
        };
        let mut failed = false;
        for key in previews.iter().chain([&file.s3_key]) {
            if let Err(err) = deps.storage.delete(key).await {
                // This file waits for the next sweep; the others go on.
                tracing::warn!(file_id = file.id, error = %err, "sweeper: cannot delete a deleted file's object");
                deps.metrics.ignored_failure("delete_object");
                failed = true;
                break;
            }
        }
        if !failed {
            file_upload::Entity::delete_by_id(file.id).exec(&deps.db).await?;
            purged += 1;
        }
    }
    Ok(purged)
}

/// Expires every pending upload past its time (the conditional claim first,
/// then its object and parts).
async fn expire_uploads(deps: &Deps, fence: &Fence) -> Result<u64, ServiceError> {
    let mut expired = 0;
    loop {
        fence.check().await?;
        let claimed = lifecycle::expire_due(&deps.db, EXPIRE_BATCH).await?;
        // Claimed and committed: a sweep stopped here leaves these objects to
        // the orphan step (objects of closed uploads go at once).
        fence.check().await?;
        lifecycle::discard_objects(&deps.storage, &deps.metrics, &claimed).await;
        expired += claimed.len() as u64;
        if (claimed.len() as u64) < EXPIRE_BATCH {
            return Ok(expired);
        }
    }
}

/// Forgets the rows of closed uploads once they are of no more use: confirmed
/// ones past their expiry (the file row stays), the others a retention later.
async fn forget_closed_uploads(deps: &Deps, fence: &Fence) -> Result<u64, ServiceError> {
    fence.check().await?;
    use sea_orm::sea_query::Condition;
    let closed_before = now() - chrono::Duration::days(CLOSED_UPLOAD_RETENTION_DAYS);
    let forgotten = pending_upload::Entity::delete_many()
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(pending_upload::Column::State.eq(UploadState::Confirmed))
                        .add(pending_upload::Column::ExpiresAt.lt(now())),
                )
                .add(
                    Condition::all()
                        .add(pending_upload::Column::State.is_in([
                            UploadState::Aborted,
                            UploadState::Rejected,
                            UploadState::Expired,
                        ]))
                        .add(pending_upload::Column::ExpiresAt.lt(closed_before)),
                ),
        )
        .exec(&deps.db)
        .await?;
    Ok(forgotten.rows_affected)
}

async fn abort_stale_multipart(deps: &Deps) -> Result<u64, ServiceError> {
    let cutoff = chrono::Utc::now().timestamp() - deps.policy.multipart_upload_ttl_secs as i64;
    let mut aborted = 0;
    for (key, upload_id, initiated) in deps.storage.list_multipart("uploads/").await? {
        if initiated.is_some_and(|t| t <= cutoff) {
            deps.storage.abort_multipart(&key, &upload_id).await?;
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// Deletes objects under `uploads/` that no pending upload or file owns: those
/// of closed or confirmed uploads that no file serves (re-PUT with a still
/// valid URL after an abort or a rejection, the original of a cleaned photo,
/// the copy of a confirm that lost its race) at once, those no row knows once older than the longest URL
/// lifetime plus a margin. Returns (found, deleted).
async fn sweep_orphans(deps: &Deps, fence: &Fence, cursor: &mut OrphanCursor) -> Result<(u64, u64), ServiceError> {
    let old_enough = chrono::Utc::now().timestamp() - deps.policy.upload_url_ttl_secs as i64 - ORPHAN_MARGIN_SECS;
    let (mut found, mut deleted, mut pages) = (0, 0, 0);
    loop {
        if cursor.pages.is_some_and(|max| pages >= max) {
            return Ok((found, deleted));
        }
        let page = deps.storage.list_page("uploads/", cursor.start_after.as_deref()).await?;
        let Some((last, _)) = page.last() else {
            cursor.start_after = None;
            return Ok((found, deleted));
        };
        cursor.start_after = Some(last.clone());
        pages += 1;
        let keys: Vec<String> = page.iter().map(|(k, _)| k.clone()).collect();
        // An upload owns every key under its prefix: its object and the
        // cleaned copies of a confirm (see `privacy`).
        let ids: HashSet<Uuid> = keys.iter().filter_map(|k| privacy::upload_of_key(k)).collect();
        // Uploads first, files second: an upload confirmed in between is then
        // seen as a file, never as a confirmed upload without one.
        let uploads: HashMap<Uuid, UploadState> = pending_upload::Entity::find()
            .select_only()
            .column(pending_upload::Column::Id)
            .column(pending_upload::Column::State)
            .filter(pending_upload::Column::Id.is_in(ids))
            .into_tuple::<(Uuid, UploadState)>()
            .all(&deps.db)
            .await?
            .into_iter()
            .collect();
        let files: HashSet<String> = file_upload::Entity::find()
            .select_only()
            .column(file_upload::Column::S3Key)
            .filter(file_upload::Column::S3Key.is_in(keys))
            .into_tuple::<String>()
            .all(&deps.db)
            .await?
            .into_iter()
            .collect();
        for (key, modified) in &page {
            let upload = privacy::upload_of_key(key).and_then(|id| uploads.get(&id));
            let owned = files.contains(key) || upload == Some(&UploadState::Pending);
            if owned {
                continue;
            }
            found += 1;
            // A closed upload never becomes a file, and a confirmed one's file
            // has its key; an object with no row at all is left alone until no
            // URL could still be writing it.
            let garbage = upload.is_some() || modified.is_some_and(|t| t <= old_enough);
            if garbage {
                fence.check().await?;
                match deps.storage.delete(key).await {
                    Ok(()) => deleted += 1,
                    Err(err) => {
                        tracing::warn!(key, error = %err, "sweeper: cannot delete an orphan object; the next sweep retries");
                        deps.metrics.ignored_failure("delete_object");
                    }
                }
            }
        }
    }
}
