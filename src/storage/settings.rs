//! How to reach the object store, and how its failures are told apart.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::credentials::CredentialSource;
use crate::config::{BucketName, Origin};

/// How to reach the object store.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Endpoint the broker calls; `None` means AWS.
    pub endpoint: Option<Origin>,
    /// Endpoint written into presigned URLs; `None` means `endpoint`.
    pub public_endpoint: Option<Origin>,
    pub region: String,
    pub bucket: BucketName,
    /// What the broker signs with (its own calls and presigned URLs).
    pub credentials: CredentialSource,
    pub force_path_style: bool,
    /// How long calls may take before the store counts as unavailable.
    pub timeouts: Timeouts,
}

/// Time limits of the broker's own S3 calls.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// One attempt.
    pub attempt: Duration,
    /// A call with its retries.
    pub total: Duration,
    /// Attempts per call (1 = no retry).
    pub max_attempts: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            attempt: Duration::from_secs(5),
            total: Duration::from_secs(15),
            max_attempts: 2,
        }
    }
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
    /// The store says what was asked about does not exist (`NoSuchKey`, `NoSuchUpload`).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Service { code, .. } if matches!(code.as_str(), "NoSuchKey" | "NoSuchUpload" | "NotFound"))
    }

    pub(super) fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
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
