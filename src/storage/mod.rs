//! The S3 facade: an aws-sdk-s3 client for the broker's own calls and a
//! [`Presigner`] for the endpoint browsers reach. Works with AWS S3, SeaweedFS,
//! Garage, Ceph RGW and the embedded endpoint.

pub mod credentials;
pub mod presign;
pub mod settings;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
        retry::RetryConfig, timeout::TimeoutConfig,
    },
    error::ProvideErrorMetadata,
};

use aws_sdk_s3::{
    primitives::ByteStream,
    types::{ChecksumMode, CompletedMultipartUpload, CompletedPart},
};
use bytes::Bytes;
use sha2::{Digest, Sha256};

pub use credentials::CredentialSource;
pub use presign::{PresignedRequest, Presigner};
pub use settings::{StorageError, StorageSettings, Timeouts};

use crate::config::Origin;

/// What HeadObject tells about an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: u64,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub part_number: u32,
    /// Without quotes; absent when the store does not report it.
    pub etag: Option<String>,
    pub size: u64,
}

/// Up to `len` bytes of a response body announced as `expected` bytes long,
/// into one buffer of that size (no second copy of a large object).
async fn read_body(mut body: ByteStream, expected: u64, len: u64) -> Result<Bytes, StorageError> {
    let mut bytes = bytes::BytesMut::with_capacity(expected.min(len) as usize);
    while (bytes.len() as u64) < len {
        let Some(chunk) = body.try_next().await.map_err(|e| StorageError::Unavailable(e.to_string()))? else {
            break;
        };
        bytes.extend_from_slice(&chunk);
    }
    bytes.truncate(len as usize);
    Ok(bytes.freeze())
}

/// Handle on the bucket holding every uploaded object.
#[derive(Clone, Debug)]
pub struct Storage {
    client: Client,
    presigner: Presigner,
    bucket: String,
    timeouts: Timeouts,
    /// Whether the store refuses a body whose signed SHA-256 does not match
    /// and reports the SHA-256 of what it keeps ([`Storage::probe_checksums`]).
    verifies_checksums: Arc<AtomicBool>,
    /// Bodies the broker sends go unsigned (`UNSIGNED-PAYLOAD`) when TLS
    /// protects them (AWS, an `https://` endpoint): hashing every byte for
    /// the signature was a fifth of the CPU of an upload through the broker.
    unsigned_payload: bool,
}

impl Storage {
    /// Builds the clients; no network traffic happens here.
    pub fn new(settings: &StorageSettings) -> Self {
        let client = build_client(settings, settings.endpoint.as_ref());
        let public = settings.public_endpoint.as_ref().or(settings.endpoint.as_ref());
        let presigner = Presigner::new(settings, public.map(Origin::as_str));
        Self {
            client,
            presigner,
            bucket: settings.bucket.as_str().to_owned(),
            timeouts: settings.timeouts,
            verifies_checksums: Arc::default(),
            unsigned_payload: settings.endpoint.as_ref().is_none_or(|e| e.as_str().starts_with("https://")),
        }
    }

    /// Signs presigned URLs (no network).
    pub fn presigner(&self) -> &Presigner {
        &self.presigner
    }

    /// The SDK client (tests and tools use it to inspect the bucket).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Size of an object; `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectInfo { size: out.content_length().unwrap_or(0).max(0) as u64 })),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(StorageError::from_sdk(err)),
        }
    }

    /// The first `len` bytes of an object (fewer when it is shorter).
    pub async fn read_prefix(&self, key: &str, len: u64) -> Result<Bytes, StorageError> {
        // The SDK's total timeout ends with the response head; the body is
        // read within what is left of the same budget.
        tokio::time::timeout(self.timeouts.total, self.read_prefix_untimed(key, len))
            .await
            .map_err(|_| StorageError::Unavailable(format!("no answer within {:?}", self.timeouts.total)))?
    }

    async fn read_prefix_untimed(&self, key: &str, len: u64) -> Result<Bytes, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        let expected = out.content_length().unwrap_or(0).max(0) as u64;
        read_body(out.body, expected, len).await
    }

    /// The first `len` bytes of an object and its whole size, in one ranged
    /// GET (the size from `Content-Range`); `None` when there is no object.
    pub async fn read_head(&self, key: &str, len: u64) -> Result<Option<(Bytes, u64)>, StorageError> {
        tokio::time::timeout(self.timeouts.total, self.read_head_untimed(key, len))
            .await
            .map_err(|_| StorageError::Unavailable(format!("no answer within {:?}", self.timeouts.total)))?
    }

    async fn read_head_untimed(&self, key: &str, len: u64) -> Result<Option<(Bytes, u64)>, StorageError> {
        let request = self.client.get_object().bucket(&self.bucket).key(key).range(format!("bytes=0-{}", len - 1));
        let out = match request.send().await {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(err) => return Err(StorageError::from_sdk(err)),
        };
        // `bytes 0-1023/5000`: the total follows the slash. A store that
        // answers 200 with the whole object sends no Content-Range.
        let total = match out.content_range() {
            Some(range) => range.rsplit('/').next().and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| {
                StorageError::Service { code: "BadContentRange".into(), message: format!("Content-Range: {range}") }
            })?,
            None => out.content_length().unwrap_or(0).max(0) as u64,
        };
        let expected = out.content_length().unwrap_or(0).max(0) as u64;
        Ok(Some((read_body(out.body, expected, len).await?, total)))
    }

    /// SHA-256 (hex) of a whole object, streamed.
    pub async fn sha256_hex(&self, key: &str) -> Result<String, StorageError> {
        let out =
            self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(StorageError::from_sdk)?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| StorageError::Unavailable(e.to_string()))? {
            hasher.update(&chunk);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// The SHA-256 (hex) the store checked the object's bytes against when
    /// they were written, when it keeps one for the whole object and was
    /// found to verify them ([`probe_checksums`](Self::probe_checksums)):
    /// one HeadObject with checksum mode, whatever the object's size.
    pub async fn verified_sha256(&self, key: &str) -> Result<Option<String>, StorageError> {
        if !self.verifies_checksums.load(Ordering::Relaxed) {
            return Ok(None);
        }
        self.stored_sha256(key).await
    }

    async fn stored_sha256(&self, key: &str) -> Result<Option<String>, StorageError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        // A multipart object's checksum is of its parts (`…-N`): not this.
        use base64::Engine as _;
        let digest = out.checksum_sha256().and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
        Ok(digest.filter(|d| d.len() == 32).map(hex::encode))
    }

    /// Finds out, once at boot, whether the store verifies SHA-256 checksums:
    /// a PUT whose signed `x-amz-checksum-sha256` does not match its body
    /// must be refused and leave no object, and one that matches must be
    /// kept with its checksum reported back. AWS S3 and SeaweedFS do; the
    /// embedded store keeps a refused body. Confirms with a declared SHA-256
    /// then read the store's checksum instead of the whole object. Any
    /// failure of the probe answers no. The probe's key is under `uploads/`,
    /// where the sweeper removes anything it leaves.
    pub async fn probe_checksums(&self) -> bool {
        let key = format!("uploads/checksum-probe/{}/probe", uuid::Uuid::new_v4().simple());
        let verifies = self.checksum_probe(&key).await.unwrap_or(false);
        let _ = self.delete(&key).await;
        self.verifies_checksums.store(verifies, Ordering::Relaxed);
        verifies
    }

    /// Takes the store's checksums as verified without probing: the
    /// embedded store, whose bridge checks the digest of every presigned PUT
    /// before s3s-fs stores anything (the probe would make s3s log an error).
    pub fn trust_checksums(&self) {
        self.verifies_checksums.store(true, Ordering::Relaxed);
    }

    async fn checksum_probe(&self, key: &str) -> Result<bool, StorageError> {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes));
        let body = Bytes::from_static(b"chatgenius-files checksum probe");
        let put = |checksum: String| {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_sha256(checksum)
                .body(ByteStream::from(body.clone()))
                .send()
        };
        if put(b64(b"another body")).await.is_ok() || self.head(key).await?.is_some() {
            return Ok(false);
        }
        put(b64(&body)).await.map_err(StorageError::from_sdk)?;
        Ok(self.stored_sha256(key).await? == Some(hex::encode(Sha256::digest(&body))))
    }

    /// Deletes an object; deleting a missing one succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(StorageError::from_sdk)
    }

    /// Stores a small object in one request, unless one is there already
    /// (keys are never reused: a stored file is never replaced).
    pub async fn put(&self, key: &str, content_type: &str, body: Bytes) -> Result<(), StorageError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .body(ByteStream::from(body));
        let sent = if self.unsigned_payload {
            request.customize().disable_payload_signing().send().await
        } else {
            request.send().await
        };
        sent.map(|_| ()).map_err(StorageError::from_sdk)
    }

    /// Objects under `prefix` with their last-modified time, one page of up to
    /// 1000 after `start_after`.
    pub async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<(String, Option<i64>)>, StorageError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_owned))
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| Some((o.key()?.to_owned(), o.last_modified().map(|t| t.secs()))))
            .collect())
    }

    /// Incomplete multipart uploads under `prefix`: key, upload id, start time.
    pub async fn list_multipart(&self, prefix: &str) -> Result<Vec<(String, String, Option<i64>)>, StorageError> {
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(StorageError::from_sdk)?;
            for upload in out.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    found.push((key.to_owned(), id.to_owned(), upload.initiated().map(|t| t.secs())));
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
        }
    }

    /// Starts a multipart upload and returns its id.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        out.upload_id().map(str::to_owned).ok_or_else(|| StorageError::Service {
            code: "NoUploadId".into(),
            message: "CreateMultipartUpload returned no upload id".into(),
        })
    }

    /// Uploads one part; returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StorageError> {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body));
        let sent = if self.unsigned_payload {
            request.customize().disable_payload_signing().send().await
        } else {
            request.send().await
        };
        let out = sent.map_err(StorageError::from_sdk)?;
        Ok(CompletedPart::builder().part_number(part_number).set_e_tag(out.e_tag().map(str::to_owned)).build())
    }

    /// Completes a multipart upload from its parts, unless an object is there
    /// already (a stored file is never replaced). The store may take a
    /// while to assemble a big object (AWS sends whitespace meanwhile): this
    /// call gets [`COMPLETE_TIMEOUT`], and no stalled-stream check, whose
    /// 100 ms throughput timer would otherwise wake the broker all along.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StorageError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .customize()
            .config_override(
                aws_sdk_s3::Config::builder()
                    .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(COMPLETE_TIMEOUT)
                            .operation_timeout(COMPLETE_TIMEOUT)
                            .build(),
                    ),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(StorageError::from_sdk)
    }

    /// The parts the store holds of a multipart upload, by part number.
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<StoredPart>, StorageError> {
        let mut found = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(StorageError::from_sdk)?;
            for part in out.parts() {
                if let Some(number) = part.part_number().and_then(|n| u32::try_from(n).ok()) {
                    let etag = part.e_tag().map(|e| e.trim_matches('"').to_owned()).filter(|e| !e.is_empty());
                    found.push(StoredPart { part_number: number, etag, size: part.size().unwrap_or(0).max(0) as u64 });
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            marker = out.next_part_number_marker().map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        found.sort_by_key(|p| p.part_number);
        found.dedup_by_key(|p| p.part_number);
        Ok(found)
    }

    /// Abandons a multipart upload, dropping its parts.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(StorageError::from_sdk)
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket when it does not exist yet.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                match self.client.create_bucket().bucket(&self.bucket).send().await {
                    Ok(_) => Ok(()),
                    Err(err) if err.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
                    Err(err) => Err(StorageError::from_sdk(err)),
                }
            }
            Err(err) => Err(StorageError::from_sdk(err)),
        }
    }

    /// Checks that the bucket answers (for `/ready`).
    pub async fn check(&self) -> Result<(), StorageError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map(|_| ()).map_err(StorageError::from_sdk)
    }
}

/// How long the store may take to assemble a completed multipart upload.
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(600);

fn build_client(settings: &StorageSettings, endpoint: Option<&Origin>) -> Client {
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .credentials_provider(settings.credentials.provider())
        .force_path_style(settings.force_path_style)
        // Browsers cannot compute the SDK's flexible checksums: never ask for them.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.timeouts.connect)
                .operation_attempt_timeout(settings.timeouts.attempt)
                .operation_timeout(settings.timeouts.total)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(settings.timeouts.max_attempts));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint.as_str());
    }
    Client::from_conf(builder.build())
}
