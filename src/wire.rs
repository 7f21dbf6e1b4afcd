//! JSON shapes shared by HTTP responses and WebSocket events.

use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use crate::entity::{file_upload, message};

/// A confirmed file.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FileInfo {
    /// File id.
    pub id: i32,
    /// Message the file is attached to, if any.
    #[oai(nullable)]
    pub message_id: Option<i32>,
    /// Channel the file belongs to.
    pub channel_id: i32,
    /// Original file name, for display.
    pub file_name: String,
    /// MIME type, verified against the file's first bytes.
    #[oai(nullable)]
    pub content_type: Option<String>,
    /// Size in bytes.
    #[oai(nullable)]
    pub file_size: Option<i64>,
    /// When the upload was confirmed.
    #[oai(nullable)]
    pub uploaded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Id of the uploader.
    #[oai(nullable)]
    pub uploaded_by: Option<i32>,
    /// SHA-256 (hex) of the bytes downloads serve: the uploader's declared
    /// one (verified), or that of a photo's copy without metadata.
    #[oai(nullable)]
    pub sha256: Option<String>,
    /// How many download links were handed out for the file.
    pub download_count: i64,
    /// When the last download link was handed out.
    #[oai(nullable)]
    pub last_downloaded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Broker URL that redirects members to a short-lived download link.
    pub download_url: String,
    /// Pixel size of an image file, once its preview job has read it.
    #[oai(nullable)]
    pub image: Option<ImageSize>,
    /// The thumbnail of an image file, once made (`file_updated` announces it).
    #[oai(nullable)]
    pub preview: Option<Preview>,
}

/// Width and height in pixels.
#[derive(Object, Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct ImageSize {
    /// Width in pixels (upright, after the EXIF orientation).
    pub width: i32,
    /// Height in pixels (upright, after the EXIF orientation).
    pub height: i32,
}

/// A thumbnail (longest edge at most 320 pixels, no metadata).
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Preview {
    /// Broker URL that redirects members to a short-lived link to the thumbnail.
    pub url: String,
    /// Thumbnail width in pixels.
    pub width: i32,
    /// Thumbnail height in pixels.
    pub height: i32,
}

impl From<file_upload::Model> for FileInfo {
    fn from(m: file_upload::Model) -> Self {
        let size = |w: Option<i32>, h: Option<i32>| w.zip(h);
        Self {
            image: size(m.image_width, m.image_height).map(|(width, height)| ImageSize { width, height }),
            preview: m
                .preview_key
                .as_ref()
                .and(size(m.preview_width, m.preview_height))
                .map(|(width, height)| Preview { url: format!("/files/{}/preview", m.id), width, height }),
            download_url: format!("/files/download/{}", m.id),
            id: m.id,
            message_id: m.message_id,
            channel_id: m.channel_id,
            file_name: m.file_name,
            content_type: m.content_type,
            file_size: m.file_size,
            uploaded_at: m.uploaded_at.map(|t| t.and_utc()),
            uploaded_by: m.uploaded_by,
            sha256: m.sha256,
            download_count: m.download_count,
            last_downloaded_at: m.last_downloaded_at.map(|t| t.and_utc()),
        }
    }
}

/// A chat message with its live files.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageInfo {
    /// Message id; ids grow with time, so `before` pages backwards.
    pub id: i32,
    /// Channel it was posted in.
    pub channel_id: i32,
    /// Author's user id.
    pub user_id: i32,
    /// Text (may be empty when files are attached).
    pub content: String,
    /// When it was posted.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed (files attached or removed).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Attached files that are not deleted, oldest first.
    pub files: Vec<FileInfo>,
}

impl MessageInfo {
    pub fn new(m: message::Model, files: Vec<file_upload::Model>) -> Self {
        Self {
            id: m.id,
            channel_id: m.channel_id,
            user_id: m.user_id,
            content: m.content,
            created_at: m.created_at.and_utc(),
            updated_at: m.updated_at.and_utc(),
            files: files.into_iter().map(Into::into).collect(),
        }
    }
}
