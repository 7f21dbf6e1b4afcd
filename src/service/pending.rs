//! Group commit of presigned uploads. Presign is the hot path and its one write
//! is the `pending_uploads` row: every presign hands its row to a single writer
//! task, which checks channel membership and inserts everything that queued up
//! meanwhile in two statements. Under load that turns many contended writes
//! (SQLite has one writer) into a few batched ones.

use std::collections::HashSet;

use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, ExprTrait, IntoActiveModel, QueryFilter, QuerySelect};
use tokio::sync::{mpsc, oneshot};

use super::ServiceError;
use crate::entity::{channel_member, pending_upload};

/// Rows written per batch at most.
const MAX_BATCH: usize = 256;

struct Job {
    row: pending_upload::Model,
    reply: oneshot::Sender<Result<bool, DbErr>>,
}

/// Handle on the writer task.
#[derive(Clone)]
pub struct PendingWriter {
    tx: mpsc::Sender<Job>,
}

impl PendingWriter {
    /// Starts the writer; it stops when every handle is dropped.
    pub fn spawn(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(db, rx));
        Self { tx }
    }

    /// Records `row` if its user is a member of its channel. Returns whether it
    /// was recorded (false: not a member).
    pub async fn record(&self, row: pending_upload::Model) -> Result<bool, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let closed = || ServiceError::Database(DbErr::Custom("pending upload writer stopped".into()));
        self.tx.send(Job { row, reply }).await.map_err(|_| closed())?;
        Ok(answer.await.map_err(|_| closed())??)
    }
}

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        match write_batch(&db, &jobs).await {
            Ok(recorded) => {
                for (job, ok) in jobs.drain(..).zip(recorded) {
                    let _ = job.reply.send(Ok(ok));
                }
            }
            Err(err) => {
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// One membership query and one multi-row insert for the whole batch.
async fn write_batch(db: &DatabaseConnection, jobs: &[Job]) -> Result<Vec<bool>, DbErr> {
    let wanted: HashSet<(i32, i32)> = jobs.iter().map(|j| (j.row.channel_id, j.row.user_id)).collect();
    let condition = wanted.iter().fold(Condition::any(), |any, (channel, user)| {
        any.add(channel_member::Column::ChannelId.eq(*channel).and(channel_member::Column::UserId.eq(*user)))
    });
    let members: HashSet<(i32, i32)> = channel_member::Entity::find()
        .select_only()
        .columns([channel_member::Column::ChannelId, channel_member::Column::UserId])
        .filter(condition)
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let recorded: Vec<bool> = jobs.iter().map(|j| members.contains(&(j.row.channel_id, j.row.user_id))).collect();
    let rows: Vec<_> = jobs
        .iter()
        .zip(&recorded)
        .filter(|(_, ok)| **ok)
        .map(|(j, _)| j.row.clone().into_active_model())
        .collect();
    if !rows.is_empty() {
        pending_upload::Entity::insert_many(rows).exec_without_returning(db).await?;
    }
    Ok(recorded)
}
