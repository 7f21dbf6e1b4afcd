//! `pending_uploads`: one row per presigned upload, from presign until it is
//! confirmed, aborted or swept after expiry.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_create_chat_tables::{Channels, Messages, Users};
use crate::m20261128_000002_create_file_uploads::FileUploads;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PendingUploads::Table)
                    .col(pk_uuid(PendingUploads::Id))
                    .col(integer(PendingUploads::UserId))
                    .col(integer(PendingUploads::ChannelId))
                    .col(integer_null(PendingUploads::MessageId))
                    .col(string_len(PendingUploads::FileName, 255))
                    .col(string_len_uniq(PendingUploads::S3Key, 512))
                    .col(string_len(PendingUploads::ContentType, 100))
                    .col(big_integer(PendingUploads::FileSize))
                    .col(string_len_null(PendingUploads::Sha256, 64))
                    .col(string_len(PendingUploads::State, 16))
                    .col(integer_null(PendingUploads::FileId))
                    .col(string_len_null(PendingUploads::MultipartUploadId, 1024))
                    .col(timestamp_default_now(PendingUploads::CreatedAt))
                    .col(timestamp(PendingUploads::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_pending_uploads_user_id")
                            .from(PendingUploads::Table, PendingUploads::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_pending_uploads_channel_id")
                            .from(PendingUploads::Table, PendingUploads::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_pending_uploads_message_id")
                            .from(PendingUploads::Table, PendingUploads::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_pending_uploads_file_id")
                            .from(PendingUploads::Table, PendingUploads::FileId)
                            .to(FileUploads::Table, FileUploads::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_pending_uploads_state_expires_at")
                    .table(PendingUploads::Table)
                    .col(PendingUploads::State)
                    .col(PendingUploads::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PendingUploads::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum PendingUploads {
    Table,
    Id,
    UserId,
    ChannelId,
    MessageId,
    FileName,
    S3Key,
    ContentType,
    FileSize,
    Sha256,
    State,
    FileId,
    MultipartUploadId,
    CreatedAt,
    ExpiresAt,
}
