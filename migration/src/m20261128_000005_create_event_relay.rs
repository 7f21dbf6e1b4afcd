//! `event_relay`: events too large for a PostgreSQL NOTIFY payload (8000 bytes)
//! are parked here and announced by id to the other broker instances.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventRelay::Table)
                    .col(big_pk_auto(EventRelay::Id))
                    .col(text(EventRelay::Payload))
                    .col(timestamp_default_now(EventRelay::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(EventRelay::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum EventRelay {
    Table,
    Id,
    Payload,
    CreatedAt,
}
