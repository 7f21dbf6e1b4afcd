//! Background cleanup, also run once by `chatgenius-files sweep`:
//! purges objects of files deleted longer than the retention, removes expired
//! unconfirmed uploads (objects and rows), aborts stale multipart uploads, and
//! reports (optionally deletes) objects under `uploads/` that no row knows.
//! On PostgreSQL only one instance sweeps at a time (advisory lock).

use std::collections::HashSet;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    Statement, TransactionTrait,
};

use crate::{
    entity::{file_upload, pending_upload},
    service::{ServiceError, now},
    startup::AppState,
    storage::StorageError,
};

/// Arbitrary key of the sweeper's PostgreSQL advisory lock.
pub const LOCK_KEY: i64 = 0x6367_665f_7377;
/// Objects younger than this are never called orphans (a proxy upload stores
/// its object a moment before its row).
const ORPHAN_MIN_AGE_SECS: i64 = 3600;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Another instance holds the sweep lock; nothing was done.
    pub skipped: bool,
    /// Objects of deleted files purged (their rows removed).
    pub deleted_files_purged: u64,
    /// Expired unconfirmed uploads removed.
    pub expired_uploads_removed: u64,
    /// Incomplete multipart uploads aborted.
    pub multipart_aborted: u64,
    /// Whether the store lists multipart uploads at all.
    pub multipart_supported: bool,
    /// Objects under `uploads/` no row knows.
    pub orphans_found: u64,
    /// Of those, deleted.
    pub orphans_deleted: u64,
}

impl SweepReport {
    /// The report as a two-column table.
    pub fn table(&self) -> String {
        let rows = [
            ("skipped (another instance sweeping)", self.skipped.to_string()),
            ("deleted files purged", self.deleted_files_purged.to_string()),
            ("expired uploads removed", self.expired_uploads_removed.to_string()),
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

/// Sweeps every SWEEP_INTERVAL_SECS until shutdown starts (never mid-sweep).
pub async fn run_periodically(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(state.config.sweep_interval_secs));
    tick.tick().await;
    let mut closing = state.closing.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.changed() => return,
        }
        match sweep_once(&state, false).await {
            Ok(report)
                if report != SweepReport { multipart_supported: report.multipart_supported, ..Default::default() } =>
            {
                tracing::info!(?report, "sweep done");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "sweep failed"),
        }
    }
}

/// One sweep over everything.
pub async fn sweep_once(state: &AppState, delete_orphans: bool) -> Result<SweepReport, ServiceError> {
    let lock = match take_lock(state).await? {
        Lock::Held(txn) => Some(txn),
        Lock::NotNeeded => None,
        Lock::Busy => return Ok(SweepReport { skipped: true, ..Default::default() }),
    };
    let mut report = SweepReport {
        deleted_files_purged: purge_deleted(state).await?,
        expired_uploads_removed: remove_expired_uploads(state).await?,
        ..Default::default()
    };
    match abort_stale_multipart(state).await {
        Ok(count) => (report.multipart_supported, report.multipart_aborted) = (true, count),
        Err(ServiceError::Storage(StorageError::Service { code, .. })) if code == "NotImplemented" => {}
        Err(err) => return Err(err),
    }
    (report.orphans_found, report.orphans_deleted) = sweep_orphans(state, delete_orphans).await?;
    state.metrics.swept(&[
        ("deleted_files_purged", report.deleted_files_purged),
        ("expired_uploads_removed", report.expired_uploads_removed),
        ("multipart_aborted", report.multipart_aborted),
        ("orphans_found", report.orphans_found),
        ("orphans_deleted", report.orphans_deleted),
    ]);
    if let Some(txn) = lock {
        // Relayed events are read within moments; an hour is plenty.
        txn.execute_unprepared("DELETE FROM event_relay WHERE created_at < now() - interval '1 hour'").await?;
        txn.commit().await?;
    }
    Ok(report)
}

enum Lock {
    Held(DatabaseTransaction),
    NotNeeded,
    Busy,
}

/// A transaction-scoped advisory lock on PostgreSQL; SQLite serves one instance.
async fn take_lock(state: &AppState) -> Result<Lock, ServiceError> {
    if state.db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Lock::NotNeeded);
    }
    let txn = state.db.begin().await?;
    let row = txn
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT pg_try_advisory_xact_lock({LOCK_KEY}) AS locked"),
        ))
        .await?;
    let locked = row.map(|r| r.try_get::<bool>("", "locked")).transpose()?.unwrap_or(false);
    Ok(if locked { Lock::Held(txn) } else { Lock::Busy })
}

async fn purge_deleted(state: &AppState) -> Result<u64, ServiceError> {
    let cutoff = now() - chrono::Duration::days(state.config.deleted_file_retention_days as i64);
    let due = file_upload::Entity::find()
        .filter(file_upload::Column::IsDeleted.eq(true))
        .filter(file_upload::Column::DeletedAt.lte(cutoff))
        .limit(1000)
        .all(&state.db)
        .await?;
    for file in &due {
        state.storage.delete(&file.s3_key).await?;
        file_upload::Entity::delete_by_id(file.id).exec(&state.db).await?;
    }
    Ok(due.len() as u64)
}

async fn remove_expired_uploads(state: &AppState) -> Result<u64, ServiceError> {
    let expired = pending_upload::Entity::find()
        .filter(pending_upload::Column::ExpiresAt.lt(now()))
        .limit(1000)
        .all(&state.db)
        .await?;
    let mut removed = 0;
    for upload in &expired {
        if upload.state == "pending" {
            if let Some(multipart) = &upload.multipart_upload_id {
                state.storage.abort_multipart(&upload.s3_key, multipart).await.ok();
            }
            state.storage.delete(&upload.s3_key).await?;
            removed += 1;
        }
        pending_upload::Entity::delete_by_id(upload.id).exec(&state.db).await?;
    }
    Ok(removed)
}

async fn abort_stale_multipart(state: &AppState) -> Result<u64, ServiceError> {
    let cutoff = chrono::Utc::now().timestamp() - state.config.multipart_upload_ttl_secs as i64;
    let mut aborted = 0;
    for (key, upload_id, initiated) in state.storage.list_multipart("uploads/").await? {
        if initiated.is_some_and(|t| t <= cutoff) {
            state.storage.abort_multipart(&key, &upload_id).await?;
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// Objects under `uploads/` that neither a file nor a live upload knows.
async fn sweep_orphans(state: &AppState, delete: bool) -> Result<(u64, u64), ServiceError> {
    let old_enough = chrono::Utc::now().timestamp() - ORPHAN_MIN_AGE_SECS.min(state.config.upload_url_ttl_secs as i64);
    let (mut found, mut deleted) = (0, 0);
    let mut start_after: Option<String> = None;
    loop {
        let page = state.storage.list_page("uploads/", start_after.as_deref()).await?;
        let Some((last, _)) = page.last() else { break };
        start_after = Some(last.clone());
        let keys: Vec<String> = page.iter().map(|(k, _)| k.clone()).collect();
        let mut known: HashSet<String> = file_upload::Entity::find()
            .select_only()
            .column(file_upload::Column::S3Key)
            .filter(file_upload::Column::S3Key.is_in(keys.clone()))
            .into_tuple::<String>()
            .all(&state.db)
            .await?
            .into_iter()
            .collect();
        known.extend(
            pending_upload::Entity::find()
                .select_only()
                .column(pending_upload::Column::S3Key)
                .filter(pending_upload::Column::S3Key.is_in(keys))
                .into_tuple::<String>()
                .all(&state.db)
                .await?,
        );
        for (key, modified) in page.iter().filter(|(k, _)| !known.contains(k)) {
            found += 1;
            if delete && modified.is_some_and(|t| t <= old_enough) {
                state.storage.delete(key).await?;
                deleted += 1;
            }
        }
    }
    Ok((found, deleted))
}
