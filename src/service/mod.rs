//! Use cases: the rules of the file service, free of HTTP types. Each takes
//! [`deps::Deps`] (or just the database handle it needs) and returns
//! [`ServiceError`]. Modules lower in this list never import higher ones.

/// Channels: create, list, members, add and remove (aborting the removed
/// member's uploads).
pub mod channels;
/// Files: metadata, downloads (presigned GETs, counted), deletes.
pub mod files;
/// Messages: post with files, list pages with live files and download URLs.
pub mod messages;
/// Multipart uploads: start, presign parts, list parts, complete.
pub mod multipart;
/// The event stream of one socket: membership spans, replay, live filter.
pub mod stream;
/// Background cleanup: deleted files, expired uploads, orphans, old events.
pub mod sweeper;
/// Uploads: presign, confirm, abort, and uploads streamed through the broker.
pub mod uploads;
/// Users: dev login's find-or-create and name lookups.
pub mod users;

/// What the use cases work with: database, store, hub, limits, rules.
pub mod deps;
/// Download statistics, written off the request path.
pub mod download_log;
/// The upload state machine's conditional writes.
pub mod lifecycle;
/// Membership checks shared by every use case.
pub mod membership;
/// Image previews: the job, the thumbnail, the limits.
pub mod previews;
/// Photo privacy: image metadata removed before a file is recorded.
pub mod privacy;
/// Storage quotas: usage, and reserving an upload's size.
pub mod quota;

use sea_orm::{DbErr, SqlErr};

use crate::storage::StorageError;

/// A failed use case. Its variants carry stable codes the API turns into statuses.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Missing, or not visible to the caller (both look the same from outside).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Visible, but the caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The input breaks a rule.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The request conflicts with current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The thing asked about ran out of time (an upload past its expiry).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// The file is larger than MAX_FILE_SIZE_MB.
    #[error("{0}")]
    TooLarge(String),
    /// The upload does not fit in the user's or the channel's storage quota.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The content type is not in ALLOWED_FILE_TYPES.
    #[error("{0}")]
    TypeNotAllowed(String),
    /// The uploaded object failed verification.
    #[error("{message}")]
    Unverified { code: &'static str, message: String },
    /// Too many requests of this kind.
    #[error("rate limited; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ServiceError {
    /// The uploaded object failed a check (422).
    pub fn unverified(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unverified { code, message: message.into() }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    /// No object was uploaded for an upload (yet).
    pub fn object_missing() -> Self {
        Self::unverified("object_missing", "no object was uploaded for this upload yet")
    }

    /// A failed read of an upload's object: gone while it was read (an abort
    /// or the sweeper deleted it) is a missing object, not a store failure.
    pub fn vanished(err: StorageError) -> Self {
        if err.is_missing() { Self::object_missing() } else { err.into() }
    }
}

/// Turns a unique-constraint violation into a conflict, in one place.
pub trait OnConflict<T> {
    fn on_unique_violation(self, code: &'static str, message: &str) -> Result<T, ServiceError>;
}

impl<T> OnConflict<T> for Result<T, DbErr> {
    fn on_unique_violation(self, code: &'static str, message: &str) -> Result<T, ServiceError> {
        self.map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => ServiceError::conflict(code, message),
            _ => ServiceError::Database(err),
        })
    }
}

/// Whether a database error means the database cannot be reached or is going
/// away (connection lost, pool exhausted, server shutting down or refusing
/// connections): the client may retry, unlike a failed statement.
pub fn database_unavailable(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match sqlx_err.as_ref() {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (admin or
        // crash shutdown, cannot connect now), 53300 (too many connections).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The current time as stored in `TIMESTAMP` columns (UTC, no zone).
pub fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}
