//! `pending_uploads`: one row per presigned upload, from presign to confirm, abort or expiry.

use sea_orm::entity::prelude::*;

/// Serializable for the presign journal (see `service::pending`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "pending_uploads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: i32,
    pub channel_id: i32,
    pub message_id: Option<i32>,
    pub file_name: String,
    #[sea_orm(unique)]
    pub s3_key: String,
    pub content_type: String,
    pub file_size: i64,
    pub sha256: Option<String>,
    /// `pending`, `confirmed` or `aborted`.
    pub state: String,
    pub file_id: Option<i32>,
    /// The store's id of a multipart direct upload.
    pub multipart_upload_id: Option<String>,
    pub created_at: DateTime,
    pub expires_at: DateTime,
    /// Bytes per part of a multipart direct upload (the last part may be shorter).
    pub part_size: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
