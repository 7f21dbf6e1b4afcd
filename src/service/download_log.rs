//! Download statistics, written off the request path: a download sends one
//! message to a channel; one task writes whatever arrived within 50 ms in a
//! transaction (a log row per download, `download_count` and
//! `last_downloaded_at` per file). A failed write is logged and counted
//! (`cgf_ignored_failures_total{what="download_log"}`); downloads never wait
//! on it.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, ExprTrait, QueryFilter, TransactionTrait,
    sea_query::Expr,
};
use tokio::sync::{mpsc, oneshot};

use super::{database_unavailable, now};
use crate::{
    entity::{file_download, file_upload},
    metrics::Metrics,
};

/// Most downloads written in one transaction.
const MAX_BATCH: usize = 4096;
/// How long the writer waits after the first download for more to join it.
const LINGER: Duration = Duration::from_millis(50);

enum Msg {
    Downloaded { file_id: i32, user_id: i32, at: chrono::NaiveDateTime },
    Flush(oneshot::Sender<()>),
}

/// Handle on the writer task; cloning shares it.
#[derive(Clone)]
pub struct DownloadLog(mpsc::Sender<Msg>);

impl DownloadLog {
    /// Starts the writer; it stops when every handle is dropped.
    pub fn spawn(db: DatabaseConnection, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
                if !queued.iter().any(|m| matches!(m, Msg::Flush(_))) {
                    tokio::time::sleep(LINGER).await;
                    while queued.len() < MAX_BATCH
                        && let Ok(msg) = rx.try_recv()
                    {
                        queued.push(msg);
                    }
                }
                let mut rows = Vec::new();
                let mut flushes = Vec::new();
                for msg in queued.drain(..) {
                    match msg {
                        Msg::Downloaded { file_id, user_id, at } => rows.push((file_id, user_id, at)),
                        Msg::Flush(done) => flushes.push(done),
                    }
                }
                if !rows.is_empty() {
                    write_with_retry(&db, &metrics, &rows).await;
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        Self(tx)
    }

    /// Counts one download of `file_id` by `user_id`, written within about
    /// 50 ms. Waits only when 16k downloads are queued unwritten.
    pub async fn record(&self, file_id: i32, user_id: i32) {
        // The writer lives as long as any handle: a send cannot fail.
        let _ = self.0.send(Msg::Downloaded { file_id, user_id, at: now() }).await;
    }

    /// Returns once every download counted before this call is written (or
    /// its write failed).
    pub async fn flush(&self) {
        let (done, finished) = oneshot::channel();
        if self.0.send(Msg::Flush(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// Writes `rows`, once more after 100 ms when the connection was lost (the
/// pool opens a new one); a second failure is logged and counted.
async fn write_with_retry(db: &DatabaseConnection, metrics: &Metrics, rows: &[(i32, i32, chrono::NaiveDateTime)]) {
    let mut written = write(db, rows).await;
    if let Err(err) = &written
        && database_unavailable(err)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        written = write(db, rows).await;
    }
    if let Err(err) = written {
        tracing::error!(error = %err, downloads = rows.len(), "download statistics not written");
        metrics.ignored_failure("download_log");
    }
}

async fn write(db: &DatabaseConnection, rows: &[(i32, i32, chrono::NaiveDateTime)]) -> Result<(), DbErr> {
    let mut per_file: BTreeMap<i32, (i64, chrono::NaiveDateTime)> = BTreeMap::new();
    for &(file_id, _, at) in rows {
        let entry = per_file.entry(file_id).or_insert((0, at));
        entry.0 += 1;
        entry.1 = Ord::max(entry.1, at);
    }
    let txn = db.begin().await?;
    let logs = rows.iter().map(|&(file_id, user_id, downloaded_at)| file_download::ActiveModel {
        file_id: Set(file_id),
        user_id: Set(user_id),
        downloaded_at: Set(downloaded_at),
        ..Default::default()
    });
    file_download::Entity::insert_many(logs).exec_without_returning(&txn).await?;
    for (file_id, (count, last)) in per_file {
        file_upload::Entity::update_many()
            .col_expr(file_upload::Column::DownloadCount, Expr::col(file_upload::Column::DownloadCount).add(count))
            .col_expr(file_upload::Column::LastDownloadedAt, Expr::value(last))
            .filter(file_upload::Column::Id.eq(file_id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}
