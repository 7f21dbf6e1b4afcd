//! The chat tables the file service relies on: users, channels, memberships, messages.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_auto(Users::Id))
                    .col(string_len_uniq(Users::Username, 64))
                    .col(timestamp_default_now(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Channels::Table)
                    .col(pk_auto(Channels::Id))
                    .col(string_len(Channels::Name, 80))
                    .col(integer(Channels::CreatedBy))
                    .col(timestamp_default_now(Channels::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_channels_created_by")
                            .from(Channels::Table, Channels::CreatedBy)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChannelMembers::Table)
                    .col(integer(ChannelMembers::ChannelId))
                    .col(integer(ChannelMembers::UserId))
                    .col(timestamp_default_now(ChannelMembers::JoinedAt))
                    .primary_key(Index::create().col(ChannelMembers::ChannelId).col(ChannelMembers::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_channel_members_channel_id")
                            .from(ChannelMembers::Table, ChannelMembers::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_channel_members_user_id")
                            .from(ChannelMembers::Table, ChannelMembers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_channel_members_user_id")
                    .table(ChannelMembers::Table)
                    .col(ChannelMembers::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(pk_auto(Messages::Id))
                    .col(integer(Messages::ChannelId))
                    .col(integer(Messages::UserId))
                    .col(text(Messages::Content))
                    .col(timestamp_default_now(Messages::CreatedAt))
                    .col(timestamp_default_now(Messages::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_channel_id")
                            .from(Messages::Table, Messages::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_user_id")
                            .from(Messages::Table, Messages::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_channel_id_id")
                    .table(Messages::Table)
                    .col(Messages::ChannelId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Messages::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ChannelMembers::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Channels::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    Username,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Channels {
    Table,
    Id,
    Name,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChannelMembers {
    Table,
    ChannelId,
    UserId,
    JoinedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Messages {
    Table,
    Id,
    ChannelId,
    UserId,
    Content,
    CreatedAt,
    UpdatedAt,
}
