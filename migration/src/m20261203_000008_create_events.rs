//! `events`: the outbox. Every event is written in the transaction of the
//! change it announces; brokers deliver from this table (in id order) and
//! replay it to clients that resume. It replaces `event_relay`, which parked
//! only the events too large for a NOTIFY payload.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Id))
                    .col(integer(Events::ChannelId))
                    .col(integer_null(Events::UserId))
                    .col(string_len(Events::Kind, 32))
                    .col(text(Events::Payload))
                    .col(timestamp(Events::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // A replay reads the events of the resuming client's channels, by id.
        manager
            .create_index(
                Index::create()
                    .name("idx_events_channel_id")
                    .table(Events::Table)
                    .col(Events::ChannelId)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await?;
        // A resuming client's own joins and removals, newest last.
        manager
            .create_index(
                Index::create()
                    .name("idx_events_user_id")
                    .table(Events::Table)
                    .col(Events::UserId)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await?;
        manager.drop_table(Table::drop().table(EventRelay::Table).if_exists().to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventRelay::Table)
                    .col(big_pk_auto(EventRelay::Id))
                    .col(text(EventRelay::Payload))
                    .col(timestamp_default_now(EventRelay::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager.drop_table(Table::drop().table(Events::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    ChannelId,
    UserId,
    Kind,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EventRelay {
    Table,
    Id,
    Payload,
    CreatedAt,
}
