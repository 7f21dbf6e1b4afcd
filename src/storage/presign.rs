//! Presigned URLs, signed with `aws-sigv4` directly: no network, about a sixth
//! of the cost of the SDK's `presigned()` (see the README's benchmarks).
//!
//! Presigned PUTs sign `content-type`, `content-length` and, when the client
//! declared one, `x-amz-checksum-sha256`, so the store itself refuses any other
//! body. No flexible-checksum parameters are ever added: browsers could not
//! satisfy them.

use std::{borrow::Cow, time::{Duration, SystemTime}};

use aws_sigv4::{
    http_request::{PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode, sign},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{StorageError, StorageSettings};

/// RFC 3986 unreserved characters stay as they are; everything else is encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Like [`QUERY_VALUE`], keeping `/` for object keys in paths.
const KEY_PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// A request a client can send without credentials.
#[derive(Debug, Clone)]
pub struct PresignedRequest {
    /// HTTP method.
    pub method: &'static str,
    /// Full URL, signature included.
    pub url: String,
    /// Headers the client must send exactly as given (they are signed).
    pub headers: Vec<(&'static str, String)>,
}

/// Signs presigned S3 URLs for the endpoint clients reach.
#[derive(Debug, Clone)]
pub struct Presigner {
    /// `scheme://host[:port]` of the endpoint, with the bucket as host prefix for
    /// virtual-hosted addressing.
    origin: String,
    /// `/{bucket}` for path-style addressing, empty otherwise.
    bucket_path: String,
    identity: Identity,
    region: String,
}

impl Presigner {
    pub fn new(settings: &StorageSettings, endpoint: Option<&str>) -> Self {
        let bucket = settings.bucket.as_str();
        let default_endpoint = format!("https://s3.{}.amazonaws.com", settings.region);
        let endpoint = endpoint.unwrap_or(&default_endpoint).trim_end_matches('/');
        let (origin, bucket_path) = if settings.force_path_style {
            (endpoint.to_owned(), format!("/{bucket}"))
        } else {
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            (format!("{scheme}://{bucket}.{host}"), String::new())
        };
        Self { origin, bucket_path, identity: settings.credentials().into(), region: settings.region.clone() }
    }

    /// A PUT of exactly `content_length` bytes of `content_type` (and, when
    /// given, of the base64 SHA-256 `checksum_sha256`).
    pub fn put_object(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        checksum_sha256: Option<&str>,
        ttl: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let mut headers = vec![("content-length", content_length.to_string()), ("content-type", content_type.to_owned())];
        if let Some(checksum) = checksum_sha256 {
            headers.push(("x-amz-checksum-sha256", checksum.to_owned()));
        }
        let url = self.sign("PUT", key, &[], &headers, ttl)?;
        Ok(PresignedRequest { method: "PUT", url, headers })
    }

    /// A PUT of part `part_number` of multipart upload `upload_id`, exactly
    /// `content_length` bytes.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_length: u64,
        ttl: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let headers = vec![("content-length", content_length.to_string())];
        let part = part_number.to_string();
        let url = self.sign("PUT", key, &[("partNumber", &part), ("uploadId", upload_id)], &headers, ttl)?;
        Ok(PresignedRequest { method: "PUT", url, headers })
    }

    /// A GET whose response carries the given `Content-Type` and `Content-Disposition`.
    pub fn get_object(
        &self,
        key: &str,
        response_content_type: &str,
        response_content_disposition: &str,
        ttl: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let query = [
            ("response-content-disposition", response_content_disposition),
            ("response-content-type", response_content_type),
        ];
        let url = self.sign("GET", key, &query, &[], ttl)?;
        Ok(PresignedRequest { method: "GET", url, headers: Vec::new() })
    }

    fn sign(
        &self,
        method: &'static str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, String)],
        ttl: Duration,
    ) -> Result<String, StorageError> {
        let mut url = format!("{}{}/{}", self.origin, self.bucket_path, utf8_percent_encode(key, KEY_PATH));
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY_VALUE));
        }
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| StorageError::Signing(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method,
            Cow::Borrowed(url.as_str()),
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| StorageError::Signing(e.to_string()))?;
        let (instructions, _signature) =
            sign(request, &params).map_err(|e| StorageError::Signing(e.to_string()))?.into_parts();
        let (_, signing_params) = instructions.into_parts();
        for (name, value) in signing_params {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(&value, QUERY_VALUE));
        }
        Ok(url)
    }
}

/// The URL with its signature replaced, safe to log.
pub fn redact(url: &str) -> Cow<'_, str> {
    match url.find("X-Amz-Signature=") {
        Some(at) => {
            let end = url[at..].find('&').map_or(url.len(), |i| at + i);
            Cow::Owned(format!("{}X-Amz-Signature=REDACTED{}", &url[..at], &url[end..]))
        }
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn presigner(path_style: bool) -> Presigner {
        let settings = StorageSettings {
            endpoint: None,
            public_endpoint: None,
            region: "us-east-1".into(),
            bucket: "files".parse().unwrap(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("secret"),
            force_path_style: path_style,
        };
        Presigner::new(&settings, Some("http://127.0.0.1:9000"))
    }

    #[test]
    fn presigned_put_signs_type_length_and_checksum_only() {
        let req = presigner(true)
            .put_object("uploads/1/x/a b.png", "image/png", 42, Some("abc="), Duration::from_secs(60))
            .unwrap();
        assert!(req.url.starts_with("http://127.0.0.1:9000/files/uploads/1/x/a%20b.png?"), "{}", req.url);
        assert!(req.url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bx-amz-checksum-sha256"));
        assert!(!req.url.contains("x-amz-sdk-checksum-algorithm"));
        assert!(!req.url.to_ascii_lowercase().contains("x-amz-checksum-crc"));
        assert_eq!(req.headers.len(), 3);
    }

    #[test]
    fn virtual_hosted_addressing_puts_the_bucket_in_the_host() {
        let req = presigner(false).get_object("k", "text/plain", "attachment", Duration::from_secs(60)).unwrap();
        assert!(req.url.starts_with("http://files.127.0.0.1:9000/k?response-content-disposition=attachment&"));
    }

    #[test]
    fn redact_hides_the_signature() {
        let url = "http://h/k?X-Amz-Date=1&X-Amz-Signature=deadbeef&x=1";
        assert_eq!(redact(url), "http://h/k?X-Amz-Date=1&X-Amz-Signature=REDACTED&x=1");
    }
}
