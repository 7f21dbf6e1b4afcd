//! The S3 facade: one aws-sdk-s3 client for the broker's own calls and one that
//! signs presigned URLs for the endpoint browsers reach. Works with AWS S3,
//! SeaweedFS, Garage, Ceph RGW and the embedded endpoint.

use std::time::Duration;

use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
        timeout::TimeoutConfig,
    },
    error::{ProvideErrorMetadata, SdkError},
};

use crate::config::{BucketName, Origin, Secret};

/// How to reach the object store.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Endpoint the broker calls; `None` means AWS.
    pub endpoint: Option<Origin>,
    /// Endpoint written into presigned URLs; `None` means `endpoint`.
    pub public_endpoint: Option<Origin>,
    pub region: String,
    pub bucket: BucketName,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub force_path_style: bool,
}

/// A storage failure, split by what the client should be told.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store could not be reached (connection refused, timeout).
    #[error("object store unreachable: {0}")]
    Unavailable(String),
    /// The store answered with an error.
    #[error("object store error {code}: {message}")]
    Service { code: String, message: String },
}

impl StorageError {
    fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                Self::Unavailable(aws_smithy_types::error::display::DisplayErrorContext(&err).to_string())
            }
            _ => Self::Service {
                code: err.code().unwrap_or("Unknown").to_owned(),
                message: err.message().unwrap_or("no message").to_owned(),
            },
        }
    }
}

/// Handle on the bucket holding every uploaded object.
#[derive(Clone, Debug)]
pub struct Storage {
    client: Client,
    presigner: Client,
    bucket: String,
}

impl Storage {
    /// Builds the clients; no network traffic happens here.
    pub fn new(settings: &StorageSettings) -> Self {
        let client = build_client(settings, settings.endpoint.as_ref());
        let presigner = match &settings.public_endpoint {
            Some(public) if Some(public) != settings.endpoint.as_ref() => build_client(settings, Some(public)),
            _ => client.clone(),
        };
        Self { client, presigner, bucket: settings.bucket.as_str().to_owned() }
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

    /// The client used for presigning (exposed for tests and benchmarks).
    pub fn presigner(&self) -> &Client {
        &self.presigner
    }
}

fn build_client(settings: &StorageSettings, endpoint: Option<&Origin>) -> Client {
    let credentials = Credentials::new(
        &settings.access_key_id,
        settings.secret_access_key.expose(),
        None,
        None,
        "chatgenius-files",
    );
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(settings.force_path_style)
        // Browsers cannot compute the SDK's flexible checksums: never ask for them.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint.as_str());
    }
    Client::from_conf(builder.build())
}
