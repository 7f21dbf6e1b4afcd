//! The upload state machine in the database: on PostgreSQL a check constraint
//! allows only the states the service knows (SQLite cannot add one to an
//! existing table; the service writes only its enum there), and an index
//! finds a member's open uploads when they leave a channel.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CHECK: &str = "ck_pending_uploads_state";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "ALTER TABLE pending_uploads ADD CONSTRAINT {CHECK} \
                     CHECK (state IN ('pending', 'confirmed', 'rejected', 'aborted', 'expired'))"
                ))
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_pending_uploads_channel_user_state")
                    .table(PendingUploads::Table)
                    .col(PendingUploads::ChannelId)
                    .col(PendingUploads::UserId)
                    .col(PendingUploads::State)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop().name("idx_pending_uploads_channel_user_state").table(PendingUploads::Table).to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(&format!("ALTER TABLE pending_uploads DROP CONSTRAINT {CHECK}"))
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum PendingUploads {
    Table,
    ChannelId,
    UserId,
    State,
}
