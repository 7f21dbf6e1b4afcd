//! Indexes for storage quotas: a user's open uploads by state (their live
//! files already have `idx_file_uploads_uploaded_by`, a channel's uploads
//! `idx_pending_uploads_channel_user_state`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "idx_pending_uploads_user_state";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(PendingUploads::Table)
                    .col(PendingUploads::UserId)
                    .col(PendingUploads::State)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(NAME).table(PendingUploads::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum PendingUploads {
    Table,
    UserId,
    State,
}
