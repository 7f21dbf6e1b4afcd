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
    /// Pixel size of an image file (after its EXIF orientation), once known.
    pub image_width: Option<i32>,
    pub image_height: Option<i32>,
    /// `pending` (a preview job), `ready` or `none`; `NULL` for files that
    /// get no preview (not an image).
    pub preview_state: Option<String>,
    /// The thumbnail's object key (under `previews/`), its type and size.
    pub preview_key: Option<String>,
    pub preview_content_type: Option<String>,
    pub preview_width: Option<i32>,
    pub preview_height: Option<i32>,
    /// Until when the instance that claimed the job has it.
    pub preview_lease_until: Option<DateTime>,
    /// How many times the job was claimed.
    pub preview_attempts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
