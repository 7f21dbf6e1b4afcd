//! Multipart direct uploads: start, part URLs, complete. Abort is the single
//! upload's `DELETE /files/uploads/{upload_id}`.

use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use uuid::Uuid;

use super::{
    common::{ApiTags, JsonString, Success, ok},
    files::{Confirmed, PresignRequest},
};
use crate::{
    auth::BearerAuth,
    error::ApiError,
    service::{
        ServiceError,
        multipart::{self, PartUrl},
    },
    state::AppState,
    storage::StoredPart,
};

/// Multipart upload operations.
pub struct MultipartApi;

/// A presigned PUT of one part.
#[derive(Object)]
pub struct PartUpload {
    /// Part number, from 1.
    pub part_number: u32,
    /// HTTP method to use (`PUT`).
    pub method: String,
    /// Presigned URL of the object store for this part.
    pub url: String,
    /// Headers to send exactly as given (they are signed); browsers set
    /// `content-length` themselves. The response's `ETag` header is the part's
    /// ETag for `complete`.
    pub headers: BTreeMap<String, String>,
}

impl From<PartUrl> for PartUpload {
    fn from(part: PartUrl) -> Self {
        Self {
            part_number: part.part_number,
            method: part.request.method.to_owned(),
            url: part.request.url,
            headers: part.request.headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }
}

/// A multipart upload was started.
#[derive(Object)]
pub struct MultipartStart {
    /// Id of the upload; ask for part URLs, complete or abort with it.
    pub upload_id: Uuid,
    /// Object key the file is stored under.
    pub key: String,
    /// Bytes per part; every part but the last has exactly this size.
    pub part_size: u64,
    /// Number of parts.
    pub part_count: u32,
    /// URLs of the first parts (up to 20); ask for the rest with `parts`.
    pub parts: Vec<PartUpload>,
    /// When these part URLs stop working (fresh ones can be asked for).
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// When the upload itself is abandoned and swept unless completed.
    pub upload_expires_at: chrono::DateTime<chrono::Utc>,
}

/// The answer to a start.
#[derive(ApiResponse)]
pub enum MultipartStarted {
    /// PUT each part to its URL, then complete with the parts' ETags.
    #[oai(status = 201)]
    Created(Json<MultipartStart>),
}

/// Which part URLs to sign.
#[derive(Object)]
pub struct PartsRequest {
    /// Part numbers (1 to `part_count`, at most 100); empty, null or left out
    /// to only list the uploaded parts.
    #[oai(nullable)]
    pub part_numbers: Option<Vec<u32>>,
}

/// A part the object store already holds.
#[derive(Object)]
pub struct UploadedPart {
    /// Part number.
    pub part_number: u32,
    /// Its ETag, when the store reports one.
    #[oai(nullable)]
    pub etag: Option<String>,
    /// Its size in bytes.
    pub size: u64,
}

impl From<StoredPart> for UploadedPart {
    fn from(part: StoredPart) -> Self {
        Self { part_number: part.part_number, etag: part.etag, size: part.size }
    }
}

/// Part URLs and the upload's progress in the store.
#[derive(Object)]
pub struct PartsResponse {
    /// Bytes per part.
    pub part_size: u64,
    /// Number of parts.
    pub part_count: u32,
    /// URLs of the parts asked for.
    pub parts: Vec<PartUpload>,
    /// Parts already uploaded (resume from here after a reload).
    pub uploaded: Vec<UploadedPart>,
    /// When these part URLs stop working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// One uploaded part, as the store acknowledged it.
#[derive(Object)]
pub struct CompletedPartRef {
    /// Part number.
    pub part_number: u32,
    /// The `ETag` header of the part's PUT response (quotes optional).
    pub etag: JsonString,
}

/// The parts that make up the file.
#[derive(Object)]
pub struct CompleteRequest {
    /// Every part from 1 to `part_count`, once each.
    pub parts: Vec<CompletedPartRef>,
}

#[OpenApi(tag = "ApiTags::Files")]
impl MultipartApi {
    /// Start a multipart direct upload.
    ///
    /// For big files. Validated like `presign`; starts a multipart upload in the
    /// object store and returns its part layout with presigned URLs for the
    /// first parts. Each part URL signs the part's exact length.
    #[oai(path = "/files/multipart", method = "post", operation_id = "start_multipart_upload")]
    async fn start(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<PresignRequest>,
    ) -> Result<MultipartStarted, ApiError> {
        let started = multipart::start(&state.deps, auth.0.id, body.0.parse()?).await?;
        Ok(MultipartStarted::Created(Json(MultipartStart {
            upload_id: started.upload.id,
            key: started.upload.s3_key,
            part_size: started.layout.part_size,
            part_count: started.layout.part_count,
            parts: started.parts.into_iter().map(Into::into).collect(),
            expires_at: started.urls_expire_at.and_utc(),
            upload_expires_at: started.upload.expires_at.and_utc(),
        })))
    }

    /// Get part URLs and the parts already uploaded.
    ///
    /// Signs URLs for the given part numbers (again, when earlier ones
    /// expired) and lists the parts the store holds, so a client can resume
    /// after losing its state. Only the uploader; the upload must be pending.
    #[oai(path = "/files/uploads/:upload_id/parts", method = "post", operation_id = "get_multipart_parts")]
    async fn parts(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        upload_id: Path<Uuid>,
        body: Json<PartsRequest>,
    ) -> Result<Success<PartsResponse>, ApiError> {
        let listing =
            multipart::parts(&state.deps, auth.0.id, upload_id.0, body.0.part_numbers.as_deref().unwrap_or_default())
                .await?;
        Ok(ok(PartsResponse {
            part_size: listing.layout.part_size,
            part_count: listing.layout.part_count,
            parts: listing.parts.into_iter().map(Into::into).collect(),
            uploaded: listing.uploaded.into_iter().map(Into::into).collect(),
            expires_at: listing.urls_expire_at.and_utc(),
        }))
    }

    /// Complete a multipart upload.
    ///
    /// Checks the part list against the store (every part present, ETags and
    /// sizes as signed; 422 `part_missing`, `part_mismatch`, `size_mismatch`),
    /// completes it, then verifies, records and announces the file exactly like
    /// `confirm`. Idempotent.
    #[oai(path = "/files/uploads/:upload_id/complete", method = "post", operation_id = "complete_multipart_upload")]
    async fn complete(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        upload_id: Path<Uuid>,
        body: Json<CompleteRequest>,
    ) -> Result<Confirmed, ApiError> {
        if body.0.parts.len() > 10_000 {
            return Err(ServiceError::invalid("invalid_part_list", "an upload has at most 10,000 parts").into());
        }
        let parts: Vec<(u32, String)> = body.0.parts.into_iter().map(|p| (p.part_number, p.etag.0)).collect();
        Ok(multipart::complete(&state.deps, auth.0.id, upload_id.0, &parts).await?.into())
    }
}
