//! Multipart direct uploads remember the part size they were started with, so
//! later part URLs match even if the setting changes meanwhile.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PendingUploads::Table)
                    .add_column(big_integer_null(PendingUploads::PartSize))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(PendingUploads::Table).drop_column(PendingUploads::PartSize).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PendingUploads {
    Table,
    PartSize,
}
