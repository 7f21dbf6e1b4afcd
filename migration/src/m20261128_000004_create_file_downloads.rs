//! `file_downloads`: one row per download handed out, for statistics.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_create_chat_tables::Users;
use crate::m20261128_000002_create_file_uploads::FileUploads;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FileDownloads::Table)
                    .col(pk_auto(FileDownloads::Id))
                    .col(integer(FileDownloads::FileId))
                    .col(integer(FileDownloads::UserId))
                    .col(timestamp_default_now(FileDownloads::DownloadedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_file_downloads_file_id")
                            .from(FileDownloads::Table, FileDownloads::FileId)
                            .to(FileUploads::Table, FileUploads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_file_downloads_user_id")
                            .from(FileDownloads::Table, FileDownloads::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_file_downloads_file_id")
                    .table(FileDownloads::Table)
                    .col(FileDownloads::FileId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(FileDownloads::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum FileDownloads {
    Table,
    Id,
    FileId,
    UserId,
    DownloadedAt,
}
