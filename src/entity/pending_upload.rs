//! `pending_uploads`: one row per upload in progress, from presign (or the
//! start of a multipart or streamed upload) until it is confirmed, rejected,
//! aborted or expired.

use sea_orm::entity::prelude::*;

/// Where an upload is in its life. Every change is a conditional write
/// (`UPDATE … WHERE state = 'pending'`): whoever loses a race sees the winner's state.
///
/// ```text
/// pending ──confirm/complete verified──▶ confirmed   (a file row exists)
///    │ ├──verification failed─────────▶ rejected
///    │ └──abort, or member removed────▶ aborted
///    └──expires_at passed (sweeper)───▶ expired
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum UploadState {
    /// Waiting for the bytes and the confirm.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Verified and recorded as a file.
    #[sea_orm(string_value = "confirmed")]
    Confirmed,
    /// The object failed verification.
    #[sea_orm(string_value = "rejected")]
    Rejected,
    /// Given up by its uploader, or by the service when they left the channel.
    #[sea_orm(string_value = "aborted")]
    Aborted,
    /// Not confirmed in time; the sweeper claimed it.
    #[sea_orm(string_value = "expired")]
    Expired,
}

impl UploadState {
    /// The state as stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Aborted => "aborted",
            Self::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
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
    pub state: UploadState,
    pub file_id: Option<i32>,
    /// The store's id of a multipart direct upload.
    pub multipart_upload_id: Option<String>,
    pub created_at: DateTime,
    /// Until when the upload may be confirmed; the sweeper expires it after.
    pub expires_at: DateTime,
    /// Bytes per part of a multipart direct upload (the last part may be shorter).
    pub part_size: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
