//! Storage quotas per user and per channel (`QUOTA_USER_MB`,
//! `QUOTA_CHANNEL_MB`; 0 = unlimited). Usage is the size of the live files
//! plus the declared size of the uploads still in progress, so an upload
//! reserves its size when its row is written, and a deleted file stops
//! counting at once. With a quota set, the check and the insert of the row
//! run in one transaction that first takes the user's, then the channel's
//! lock (PostgreSQL advisory locks; on SQLite the database's one writer lock),
//! so concurrent uploads cannot together overshoot.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, IntoActiveModel, Iterable, Statement,
    TransactionTrait,
    sea_query::{Expr, Query},
};

use super::{ServiceError, deps::Deps, membership};
use crate::entity::{channel_member, pending_upload};

/// First key of the advisory locks serialising one user's reservations.
const USER_LOCK_CLASS: i32 = 0x6367_7175;
/// First key of the advisory locks serialising one channel's reservations.
const CHANNEL_LOCK_CLASS: i32 = 0x6367_7163;
const MIB: u64 = 1024 * 1024;

/// Bytes held and, when limited, allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used_bytes: u64,
    /// `None`: unlimited.
    pub limit_bytes: Option<u64>,
}

/// Whose storage is counted.
#[derive(Debug, Clone, Copy)]
enum Scope {
    User(i32),
    Channel(i32),
}

fn limit(mb: u64) -> Option<u64> {
    (mb > 0).then(|| mb.saturating_mul(MIB))
}

/// The caller's usage and limit.
pub async fn user_usage(deps: &Deps, user: i32) -> Result<Usage, ServiceError> {
    let used_bytes = used(&deps.db, Scope::User(user)).await?;
    Ok(Usage { used_bytes, limit_bytes: limit(deps.policy.quota_user_mb) })
}

/// A channel's usage and limit, for its members.
pub async fn channel_usage(deps: &Deps, channel_id: i32, caller: i32) -> Result<Usage, ServiceError> {
    membership::require_member(&deps.db, channel_id, caller).await?;
    let used_bytes = used(&deps.db, Scope::Channel(channel_id)).await?;
    Ok(Usage { used_bytes, limit_bytes: limit(deps.policy.quota_channel_mb) })
}

/// Writes a new upload's row, reserving its `file_size` within the quotas
/// (413 `quota_exceeded` when it does not fit, and nothing is written).
pub async fn insert_within_quota(deps: &Deps, upload: &pending_upload::Model) -> Result<(), ServiceError> {
    let (user_limit, channel_limit) = (limit(deps.policy.quota_user_mb), limit(deps.policy.quota_channel_mb));
    if user_limit.is_none() && channel_limit.is_none() {
        return insert(&deps.db, upload).await;
    }
    let txn = deps.db.begin().await?;
    lock(&txn, user_limit.map(|_| upload.user_id), channel_limit.map(|_| upload.channel_id)).await?;
    let size = upload.file_size.max(0) as u64;
    for (allowed, scope) in
        [(user_limit, Scope::User(upload.user_id)), (channel_limit, Scope::Channel(upload.channel_id))]
    {
        if let Some(allowed) = allowed {
            let used = used(&txn, scope).await?;
            if used.saturating_add(size) > allowed {
                return Err(exceeded(scope, used, allowed, size));
            }
        }
    }
    insert(&txn, upload).await?;
    txn.commit().await?;
    Ok(())
}

/// Inserts the row only while its uploader is a member of its channel, in
/// one statement (`INSERT … SELECT … WHERE EXISTS (membership)`): the
/// membership check costs no round trip of its own. A non-member is told the
/// channel is not found.
async fn insert(db: &impl ConnectionTrait, upload: &pending_upload::Model) -> Result<(), ServiceError> {
    let row = upload.clone().into_active_model();
    let (columns, values): (Vec<_>, Vec<_>) = pending_upload::Column::iter()
        .filter_map(|column| row.get(column).into_value().map(|value| (column, Expr::val(value))))
        .unzip();
    let member = Query::select()
        .expr(Expr::val(1))
        .from(channel_member::Entity)
        .and_where(channel_member::Column::ChannelId.eq(upload.channel_id))
        .and_where(channel_member::Column::UserId.eq(upload.user_id))
        .to_owned();
    let values = Query::select().exprs(values).and_where(Expr::exists(member)).to_owned();
    let insert = Query::insert()
        .into_table(pending_upload::Entity)
        .columns(columns)
        .select_from(values)
        .map_err(|e| DbErr::Custom(format!("pending upload insert: {e}")))?
        .to_owned();
    if db.execute(&insert).await?.rows_affected() == 0 {
        return Err(ServiceError::NotFound("channel"));
    }
    Ok(())
}

/// Takes the user's lock, then the channel's, until the transaction ends. On
/// SQLite, an empty write takes the database's write lock (waiting up to the
/// busy timeout), so the reads that follow see every committed reservation.
async fn lock(txn: &impl ConnectionTrait, user: Option<i32>, channel: Option<i32>) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    if backend != DatabaseBackend::Postgres {
        txn.execute_unprepared("UPDATE pending_uploads SET state = state WHERE 1 = 0").await?;
        return Ok(());
    }
    for (class, key) in [(USER_LOCK_CLASS, user), (CHANNEL_LOCK_CLASS, channel)] {
        if let Some(key) = key {
            let sql = "SELECT pg_advisory_xact_lock($1, $2)";
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, [class.into(), key.into()])).await?;
        }
    }
    Ok(())
}

/// Bytes of the live files and the open uploads of `scope`.
async fn used(db: &impl ConnectionTrait, scope: Scope) -> Result<u64, DbErr> {
    let (file_column, upload_column, id) = match scope {
        Scope::User(id) => ("uploaded_by", "user_id", id),
        Scope::Channel(id) => ("channel_id", "channel_id", id),
    };
    let backend = db.get_database_backend();
    let [a, b, c] = if backend == DatabaseBackend::Postgres { ["$1", "$2", "$3"] } else { ["?", "?", "?"] };
    let sql = format!(
        "SELECT CAST(\
           COALESCE((SELECT SUM(file_size) FROM file_uploads WHERE {file_column} = {a} AND is_deleted = {b}), 0) + \
           COALESCE((SELECT SUM(file_size) FROM pending_uploads WHERE {upload_column} = {c} AND state = 'pending'), 0) \
         AS BIGINT) AS used"
    );
    let row =
        db.query_one_raw(Statement::from_sql_and_values(backend, sql, [id.into(), false.into(), id.into()])).await?;
    let used: i64 = row.map(|row| row.try_get("", "used")).transpose()?.unwrap_or(0);
    Ok(used.max(0) as u64)
}

fn exceeded(scope: Scope, used: u64, allowed: u64, size: u64) -> ServiceError {
    let (used, allowed, size) = (mib(used), mib(allowed), mib(size));
    ServiceError::QuotaExceeded(match scope {
        Scope::User(_) => format!("storage quota exceeded: you store {used} of your {allowed}; this file needs {size}"),
        Scope::Channel(_) => {
            format!(
                "channel storage quota exceeded: the channel stores {used} of its {allowed}; this file needs {size}"
            )
        }
    })
}

/// Bytes in MiB with one decimal (the unit of the quota settings).
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_the_settings_unit() {
        assert_eq!(mib(10 * MIB), "10.0 MiB");
        assert_eq!(mib(MIB + MIB / 2), "1.5 MiB");
        assert_eq!(limit(0), None);
        assert_eq!(limit(3), Some(3 * MIB));
    }
}
