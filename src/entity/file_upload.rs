//! `file_uploads`: confirmed files, with the spec's columns and the service's additions.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "file_uploads")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub message_id: Option<i32>,
    pub file_name: String,
    #[sea_orm(unique)]
    pub s3_key: String,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub uploaded_at: Option<DateTime>,
    pub uploaded_by: Option<i32>,
    pub is_deleted: Option<bool>,
    pub channel_id: i32,
    pub sha256: Option<String>,
    pub deleted_at: Option<DateTime>,
    pub download_count: i64,
    pub last_downloaded_at: Option<DateTime>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
