//! Files: presign, confirm, abort, metadata, and upload through the broker.

use std::collections::BTreeMap;

use poem::{
    Request, RequestBody,
    web::{Data, Multipart},
};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
    param::{Path, Query},
    payload::{Json, ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry},
};
use uuid::Uuid;

use super::{
    common::{ApiTags, JsonString, Success, ok},
    serde_json_body::SerdeJson,
};
use crate::{
    auth::BearerAuth,
    domain::{ContentType, FileName, Sha256Hex},
    error::ApiError,
    service::{
        ServiceError, files, quota,
        uploads::{self, Confirmation, StreamedFile, Target, UploadRequest},
    },
    state::AppState,
    wire::FileInfo,
};

/// File operations.
pub struct FilesApi;

/// A file the client is about to upload.
#[derive(Object)]
pub struct PresignRequest {
    /// Channel the file goes to; the caller must be a member.
    pub channel_id: i32,
    /// Attach to this message, which must be the caller's own in that channel.
    #[oai(nullable)]
    pub message_id: Option<i32>,
    /// Display name (trimmed; refused when empty, over 255 bytes, or containing
    /// path separators, `..`, control, bidi-override or zero-width characters).
    pub file_name: JsonString,
    /// MIME type; must be allowed (ALLOWED_FILE_TYPES) and agree with the extension.
    pub content_type: JsonString,
    /// Exact size in bytes, 1 to MAX_FILE_SIZE_MB MiB.
    pub size: i64,
    /// Optional SHA-256 of the content, 64 hex digits; signed into the URL and verified on confirm.
    #[oai(nullable)]
    pub sha256: Option<JsonString>,
}

impl PresignRequest {
    /// The use case's input, every field parsed.
    pub(super) fn parse(self) -> Result<UploadRequest, ApiError> {
        let size = u64::try_from(self.size)
            .map_err(|_| ServiceError::invalid("invalid_size", "size must be at least 1 byte"))?;
        Ok(UploadRequest {
            target: Target { channel_id: Some(self.channel_id), message_id: self.message_id },
            file_name: FileName::parse(&self.file_name)?,
            content_type: ContentType::parse(&self.content_type)?,
            size,
            sha256: self.sha256.as_deref().map(|s| Sha256Hex::parse(s)).transpose()?,
        })
    }
}

/// Where and how to upload the bytes.
#[derive(Object, serde::Serialize)]
pub struct PresignResponse {
    /// Id of the upload in progress; confirm or abort it with this id.
    pub upload_id: Uuid,
    /// HTTP method to use (`PUT`).
    pub method: String,
    /// Presigned URL of the object store.
    pub url: String,
    /// Headers to send exactly as given (they are signed). Browsers set
    /// `content-length` themselves.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working.
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Object key the file is stored under.
    pub key: String,
}

/// A time as poem-openapi writes it (`+00:00`, not serde's `Z`).
fn rfc3339<S: serde::Serializer>(at: &chrono::DateTime<chrono::Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339())
}

/// An upload was presigned.
#[derive(ApiResponse)]
pub enum Presigned {
    /// PUT the bytes to `url` with `headers`, then confirm.
    #[oai(status = 201)]
    Created(SerdeJson<PresignResponse>),
}

/// The outcome of a confirm.
#[derive(ApiResponse)]
pub enum Confirmed {
    /// The file was verified and recorded now.
    #[oai(status = 201)]
    Created(Json<FileInfo>),
    /// The upload had been confirmed before; the same file.
    #[oai(status = 200)]
    AlreadyConfirmed(Json<FileInfo>),
}

impl From<Confirmation> for Confirmed {
    fn from(confirmation: Confirmation) -> Self {
        match confirmation {
            Confirmation::Created(file) => Self::Created(Json(file.into())),
            Confirmation::AlreadyConfirmed(file) => Self::AlreadyConfirmed(Json(file.into())),
        }
    }
}

/// An upload was aborted.
#[derive(ApiResponse)]
pub enum Aborted {
    /// Aborted; any uploaded bytes were deleted.
    #[oai(status = 204)]
    NoContent,
}

/// A file was deleted.
#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted; it no longer lists or downloads.
    #[oai(status = 204)]
    NoContent,
}

/// A short-lived download link.
#[derive(Object)]
pub struct DownloadLinkBody {
    /// Presigned GET of the object store.
    pub url: String,
    /// When the link stops working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Where to download a file.
#[derive(ApiResponse)]
pub enum Download {
    /// Redirect to the presigned GET.
    #[oai(status = 302)]
    Redirect(#[oai(header = "Location")] String, #[oai(header = "Cache-Control")] String),
    /// The link itself (`redirect=false`).
    #[oai(status = 200)]
    Link(Json<DownloadLinkBody>, #[oai(header = "Cache-Control")] String),
}

/// Storage held and allowed.
#[derive(Object)]
pub struct UsageBody {
    /// Bytes of live files plus the declared sizes of uploads in progress.
    pub used_bytes: u64,
    /// The quota in bytes; `null` when unlimited.
    #[oai(nullable)]
    pub limit_bytes: Option<u64>,
}

/// The caller's storage, and a channel's when asked for.
#[derive(Object)]
pub struct StorageUsage {
    /// The caller's files and uploads in progress, in every channel (QUOTA_USER_MB).
    pub user: UsageBody,
    /// The channel's files and uploads in progress, by every member
    /// (QUOTA_CHANNEL_MB); `null` without `channel_id`.
    #[oai(nullable)]
    pub channel: Option<UsageBody>,
}

impl From<quota::Usage> for UsageBody {
    fn from(usage: quota::Usage) -> Self {
        Self { used_bytes: usage.used_bytes, limit_bytes: usage.limit_bytes }
    }
}

/// A file was uploaded through the broker.
#[derive(ApiResponse)]
pub enum Uploaded {
    /// The file was stored, verified and recorded.
    #[oai(status = 201)]
    Created(Json<FileInfo>),
}

#[OpenApi(tag = "ApiTags::Files")]
impl FilesApi {
    /// Presign a direct upload.
    ///
    /// Validates the file and returns a presigned PUT for the object store.
    /// Content-Type and Content-Length (and the SHA-256 when given) are signed,
    /// so the store refuses any other body.
    #[oai(path = "/files/presign", method = "post", operation_id = "presign_upload")]
    async fn presign(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<PresignRequest>,
    ) -> Result<Presigned, ApiError> {
        let request = body.0.parse()?;
        let presigned = uploads::presign(&state.deps, auth.0.id, request).await?;
        Ok(Presigned::Created(SerdeJson(PresignResponse {
            upload_id: presigned.upload.id,
            method: presigned.request.method.to_owned(),
            url: presigned.request.url,
            headers: presigned.request.headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            expires_at: presigned.url_expires_at.and_utc(),
            key: presigned.upload.s3_key,
        })))
    }

    /// Confirm an upload.
    ///
    /// Only the presigner may confirm. Checks the object's size, the SHA-256
    /// when one was declared and the magic bytes of its first KiB; a failing
    /// object is deleted (422). On success records the file and announces
    /// `file_upload_complete`. Idempotent.
    #[oai(path = "/files/uploads/:upload_id/confirm", method = "post", operation_id = "confirm_upload")]
    async fn confirm(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        upload_id: Path<Uuid>,
    ) -> Result<Confirmed, ApiError> {
        Ok(uploads::confirm(&state.deps, auth.0.id, upload_id.0).await?.into())
    }

    /// Abort an unconfirmed upload.
    ///
    /// Deletes any uploaded bytes. 409 `upload_confirmed` once confirmed.
    #[oai(path = "/files/uploads/:upload_id", method = "delete", operation_id = "abort_upload")]
    async fn abort(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        upload_id: Path<Uuid>,
    ) -> Result<Aborted, ApiError> {
        uploads::abort(&state.deps, auth.0.id, upload_id.0).await?;
        Ok(Aborted::NoContent)
    }

    /// Get storage usage and quotas.
    ///
    /// The caller's usage (live files plus uploads in progress) and quota;
    /// with `channel_id`, also that channel's (members only, else 404). An
    /// upload that would go over a quota is refused with 413 `quota_exceeded`.
    #[oai(path = "/files/usage", method = "get", operation_id = "get_storage_usage")]
    async fn usage(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Query<Option<i32>>,
    ) -> Result<Success<StorageUsage>, ApiError> {
        let user = quota::user_usage(&state.deps, auth.0.id).await?.into();
        let channel = match channel_id.0 {
            Some(channel_id) => Some(quota::channel_usage(&state.deps, channel_id, auth.0.id).await?.into()),
            None => None,
        };
        Ok(ok(StorageUsage { user, channel }))
    }

    /// Get a file's metadata.
    ///
    /// Channel members only; 404 for everyone else and for deleted files.
    #[oai(path = "/files/:file_id", method = "get", operation_id = "get_file")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        file_id: Path<i32>,
    ) -> Result<Success<FileInfo>, ApiError> {
        Ok(ok(files::visible_file(&state.deps.db, auth.0.id, file_id.0).await?.into()))
    }

    /// Delete a file (owner only).
    ///
    /// Soft delete: the file leaves listings and downloads at once, `file_deleted`
    /// is announced, and the sweeper purges the object after the retention
    /// period. Other members get 403; everyone else, and a second delete, 404.
    #[oai(path = "/files/:file_id", method = "delete", operation_id = "delete_file")]
    async fn delete(&self, state: Data<&AppState>, auth: BearerAuth, file_id: Path<i32>) -> Result<Deleted, ApiError> {
        files::delete(&state.deps, auth.0.id, file_id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Download a file.
    ///
    /// Channel members only (everyone else, deleted files and unknown ids get
    /// the same 404). Answers 302 to a short-lived presigned GET that forces
    /// `Content-Disposition: attachment` with the file's name and the content
    /// type recorded at upload; `redirect=false` returns the link as JSON
    /// instead. `inline=true` is accepted for images (not SVG), audio, video
    /// and PDF only. Counted in the file's statistics; rate limited per user.
    #[oai(path = "/files/download/:file_id", method = "get", operation_id = "download_file")]
    async fn download(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        file_id: Path<i32>,
        /// `false`: answer 200 with the link instead of redirecting.
        redirect: Query<Option<bool>>,
        /// `true`: let the browser display the file (media and PDF only).
        inline: Query<Option<bool>>,
    ) -> Result<Download, ApiError> {
        let link = files::download(&state.deps, auth.0.id, file_id.0, inline.0.unwrap_or(false)).await?;
        Ok(link_answer(link, redirect.0.unwrap_or(true)))
    }

    /// Get a file's thumbnail.
    ///
    /// Channel members only. Answers 302 to a short-lived presigned GET of the
    /// thumbnail (JPEG, or PNG for images with transparency; longest edge at
    /// most 320 pixels; no metadata), or the link as JSON with
    /// `redirect=false`. 404 `not_found` while the file has none: not an
    /// image, not made yet (`file_updated` announces it), or impossible.
    #[oai(path = "/files/:file_id/preview", method = "get", operation_id = "get_file_preview")]
    async fn preview(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        file_id: Path<i32>,
        /// `false`: answer 200 with the link instead of redirecting.
        redirect: Query<Option<bool>>,
    ) -> Result<Download, ApiError> {
        let link = files::preview(&state.deps, auth.0.id, file_id.0).await?;
        Ok(link_answer(link, redirect.0.unwrap_or(true)))
    }

    /// Upload a file through the broker.
    ///
    /// `multipart/form-data` with `message_id` or `channel_id` first, then
    /// `file`. The body is streamed to the object store (multipart upload for
    /// large files) and never held in memory whole; the size limit is enforced
    /// while streaming (413, nothing kept).
    #[oai(path = "/files/upload", method = "post", operation_id = "upload_file")]
    async fn upload(&self, state: Data<&AppState>, auth: BearerAuth, form: UploadForm) -> Result<Uploaded, ApiError> {
        let max = state.config.max_file_size_bytes();
        if form.content_length.is_some_and(|len| len > max + FORM_OVERHEAD) {
            return Err(
                ServiceError::TooLarge(format!("files may be at most {} MiB", state.config.max_file_size_mb)).into()
            );
        }
        let mut multipart = form.multipart;
        let mut target = Target { channel_id: None, message_id: None };
        while let Some(field) = multipart.next_field().await.map_err(bad_form)? {
            match field.name() {
                Some("channel_id") => target.channel_id = Some(parse_id(small_field(field).await?)?),
                Some("message_id") => target.message_id = Some(parse_id(small_field(field).await?)?),
                Some("file") => {
                    let file_name = FileName::parse(field.file_name().unwrap_or_default())?;
                    let content_type = match field.content_type() {
                        Some(ct) if ct != "application/octet-stream" => ContentType::parse(ct)?,
                        _ => ContentType::parse(
                            mime_guess::from_path(file_name.as_str()).first_raw().unwrap_or("application/octet-stream"),
                        )?,
                    };
                    let body = Box::pin(field.into_async_read());
                    let declared_size = form.content_length;
                    let streamed = StreamedFile { target, file_name, content_type, declared_size, body };
                    // Nothing may follow the file: a late channel_id or
                    // message_id would be ignored, so the file is refused.
                    let end_of_form = async {
                        match multipart.next_field().await {
                            Ok(None) => Ok(()),
                            Ok(Some(_)) => Err(ServiceError::invalid(
                                "invalid_form",
                                "the file must be the last field: send channel_id or message_id before it",
                            )),
                            Err(err) => {
                                Err(ServiceError::invalid("invalid_form", format!("malformed multipart form: {err}")))
                            }
                        }
                    };
                    let file = uploads::upload_stream(&state.deps, auth.0.id, streamed, end_of_form).await?;
                    return Ok(Uploaded::Created(Json(file.into())));
                }
                _ => {}
            }
        }
        Err(ServiceError::invalid("missing_file", "the form has no `file` field").into())
    }
}

/// Multipart framing allowed on top of the file itself.
const FORM_OVERHEAD: u64 = 64 * 1024;

fn bad_form(err: impl std::fmt::Display) -> ApiError {
    ServiceError::invalid("invalid_form", format!("malformed multipart form: {err}")).into()
}

/// Longest id field read (an i32 with sign and spaces fits easily).
const MAX_ID_FIELD_BYTES: u64 = 32;

/// A form field's text, refused once longer than [`MAX_ID_FIELD_BYTES`]
/// (never read further into memory).
async fn small_field(field: poem::web::Field) -> Result<String, ApiError> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    field.into_async_read().take(MAX_ID_FIELD_BYTES + 1).read_to_end(&mut bytes).await.map_err(bad_form)?;
    if bytes.len() as u64 > MAX_ID_FIELD_BYTES {
        return Err(ServiceError::invalid("invalid_request", "ids must be integers").into());
    }
    String::from_utf8(bytes).map_err(|_| ServiceError::invalid("invalid_request", "ids must be integers").into())
}

fn parse_id(text: String) -> Result<i32, ApiError> {
    text.trim().parse().map_err(|_| ServiceError::invalid("invalid_request", "ids must be integers").into())
}

/// `multipart/form-data` read field by field as it arrives.
pub struct UploadForm {
    multipart: Multipart,
    content_length: Option<u64>,
}

impl Payload for UploadForm {
    const CONTENT_TYPE: &'static str = "multipart/form-data";

    fn check_content_type(content_type: &str) -> bool {
        content_type.parse::<mime::Mime>().is_ok_and(|m| m.essence_str() == Self::CONTENT_TYPE)
    }

    fn schema_ref() -> MetaSchemaRef {
        let integer = |description: &'static str| {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                format: Some("int32"),
                description: Some(description),
                ..MetaSchema::new("integer")
            }))
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            required: vec!["file"],
            properties: vec![
                ("message_id", integer("Attach to this message (the caller's own); send before `file`.")),
                ("channel_id", integer("Channel to upload to, when no message_id; send before `file`.")),
                (
                    "file",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        format: Some("binary"),
                        description: Some("The file, with its name and content type."),
                        ..MetaSchema::new("string")
                    })),
                ),
            ],
            ..MetaSchema::new("object")
        }))
    }
}

/// A presigned link as a 302 (`redirect`) or as JSON, never cached.
fn link_answer(link: files::DownloadLink, redirect: bool) -> Download {
    if redirect {
        Download::Redirect(link.url, "no-store".into())
    } else {
        Download::Link(
            Json(DownloadLinkBody { url: link.url, expires_at: link.expires_at.and_utc() }),
            "no-store".into(),
        )
    }
}

impl ParsePayload for UploadForm {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let content_length = request.header("content-length").and_then(|v| v.parse().ok());
        let multipart = <Multipart as poem::FromRequest>::from_request(request, body).await?;
        Ok(Self { multipart, content_length })
    }
}

impl<'a> ApiExtractor<'a> for UploadForm {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: Self::CONTENT_TYPE, schema: Self::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if Self::check_content_type(ct) => <Self as ParsePayload>::from_request(request, body).await,
            Some(ct) => Err(poem_openapi::error::ContentTypeError::NotSupported { content_type: ct.to_owned() }.into()),
            None => Err(poem_openapi::error::ContentTypeError::ExpectContentType.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;

    #[test]
    fn the_presign_response_is_written_as_its_schema_describes() {
        let response = PresignResponse {
            upload_id: Uuid::now_v7(),
            method: "PUT".into(),
            url: "http://127.0.0.1:9000/b/uploads/1/x/a.png?X-Amz-Signature=00".into(),
            headers: BTreeMap::from([
                ("content-type".into(), "image/png".into()),
                ("content-length".into(), "10".into()),
            ]),
            expires_at: chrono::DateTime::from_timestamp(1_795_000_000, 123_456_000).unwrap(),
            key: "uploads/1/x/a.png".into(),
        };
        assert_eq!(serde_json::to_value(&response).unwrap(), response.to_json().unwrap());
    }
}
