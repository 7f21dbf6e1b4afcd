//! `file_uploads`: the product spec's columns and indexes, plus the service's own
//! (channel, checksum, soft-delete time, download statistics).

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_create_chat_tables::{Channels, Messages, Users};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FileUploads::Table)
                    // Spec columns.
                    .col(pk_auto(FileUploads::Id))
                    .col(integer_null(FileUploads::MessageId))
                    .col(string_len(FileUploads::FileName, 255))
                    .col(string_len_uniq(FileUploads::S3Key, 512))
                    .col(string_len_null(FileUploads::ContentType, 100))
                    .col(big_integer_null(FileUploads::FileSize))
                    .col(timestamp_null(FileUploads::UploadedAt).default(Expr::current_timestamp()))
                    .col(integer_null(FileUploads::UploadedBy))
                    .col(boolean_null(FileUploads::IsDeleted).default(false))
                    // Service additions.
                    .col(integer(FileUploads::ChannelId))
                    .col(string_len_null(FileUploads::Sha256, 64))
                    .col(timestamp_null(FileUploads::DeletedAt))
                    .col(big_integer(FileUploads::DownloadCount).default(0))
                    .col(timestamp_null(FileUploads::LastDownloadedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_file_uploads_message_id")
                            .from(FileUploads::Table, FileUploads::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_file_uploads_uploaded_by")
                            .from(FileUploads::Table, FileUploads::UploadedBy)
                            .to(Users::Table, Users::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_file_uploads_channel_id")
                            .from(FileUploads::Table, FileUploads::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_file_uploads_message_id", FileUploads::MessageId),
            ("idx_file_uploads_uploaded_by", FileUploads::UploadedBy),
            ("idx_file_uploads_uploaded_at", FileUploads::UploadedAt),
            ("idx_file_uploads_channel_id", FileUploads::ChannelId),
        ] {
            manager.create_index(Index::create().name(name).table(FileUploads::Table).col(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(FileUploads::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub(crate) enum FileUploads {
    Table,
    Id,
    MessageId,
    FileName,
    S3Key,
    ContentType,
    FileSize,
    UploadedAt,
    UploadedBy,
    IsDeleted,
    ChannelId,
    Sha256,
    DeletedAt,
    DownloadCount,
    LastDownloadedAt,
}
