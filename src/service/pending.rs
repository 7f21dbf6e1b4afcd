//! Presign's one write, the `pending_uploads` row, goes through a group-commit
//! writer: one multi-row insert per batch.

use sea_orm::{DatabaseConnection, DbErr, EntityTrait, IntoActiveModel};

use super::{ServiceError, batch::Batcher};
use crate::entity::pending_upload;

/// Rows written per batch at most.
const MAX_BATCH: usize = 256;

/// Records pending uploads.
#[derive(Clone)]
pub struct PendingWriter(Batcher<pending_upload::Model, ()>);

impl PendingWriter {
    pub fn spawn(db: DatabaseConnection) -> Self {
        Self(Batcher::spawn(db, MAX_BATCH, std::time::Duration::ZERO, |db, rows| async move { write_batch(&db, rows).await }))
    }

    /// Records `row` with the next batch.
    pub async fn record(&self, row: pending_upload::Model) -> Result<(), ServiceError> {
        Ok(self.0.submit(row).await?)
    }
}

async fn write_batch(db: &DatabaseConnection, rows: Vec<pending_upload::Model>) -> Result<Vec<()>, DbErr> {
    let count = rows.len();
    pending_upload::Entity::insert_many(rows.into_iter().map(IntoActiveModel::into_active_model))
        .exec_without_returning(db)
        .await?;
    Ok(vec![(); count])
}
