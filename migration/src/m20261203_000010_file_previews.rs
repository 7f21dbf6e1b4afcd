//! Image previews: each image file's dimensions and its thumbnail, made off
//! the request path by a job that is the file row itself (`preview_state =
//! 'pending'`, claimed with a lease so a crashed instance's job is taken over).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let columns = [
            ColumnDef::new(FileUploads::ImageWidth).integer().null().to_owned(),
            ColumnDef::new(FileUploads::ImageHeight).integer().null().to_owned(),
            ColumnDef::new(FileUploads::PreviewState).string_len(16).null().to_owned(),
            ColumnDef::new(FileUploads::PreviewKey).string_len(1024).null().to_owned(),
            ColumnDef::new(FileUploads::PreviewContentType).string_len(64).null().to_owned(),
            ColumnDef::new(FileUploads::PreviewWidth).integer().null().to_owned(),
            ColumnDef::new(FileUploads::PreviewHeight).integer().null().to_owned(),
            ColumnDef::new(FileUploads::PreviewLeaseUntil).timestamp().null().to_owned(),
            ColumnDef::new(FileUploads::PreviewAttempts).integer().not_null().default(0).to_owned(),
        ];
        for mut column in columns {
            manager.alter_table(Table::alter().table(FileUploads::Table).add_column(&mut column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_file_uploads_preview_state")
                    .table(FileUploads::Table)
                    .col(FileUploads::PreviewState)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("idx_file_uploads_preview_state").table(FileUploads::Table).to_owned())
            .await?;
        for column in [
            FileUploads::PreviewAttempts,
            FileUploads::PreviewLeaseUntil,
            FileUploads::PreviewHeight,
            FileUploads::PreviewWidth,
            FileUploads::PreviewContentType,
            FileUploads::PreviewKey,
            FileUploads::PreviewState,
            FileUploads::ImageHeight,
            FileUploads::ImageWidth,
        ] {
            manager.alter_table(Table::alter().table(FileUploads::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum FileUploads {
    Table,
    ImageWidth,
    ImageHeight,
    PreviewState,
    PreviewKey,
    PreviewContentType,
    PreviewWidth,
    PreviewHeight,
    PreviewLeaseUntil,
    PreviewAttempts,
}
