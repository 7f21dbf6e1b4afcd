//! Presigned URLs (SigV4, signature in the query), signed by `aws-sigv4`
//! without a network call and without the SDK's request pipeline, with the
//! current credentials (a role's session token included). Integration tests
//! have every URL shape accepted by the embedded store and SeaweedFS.
//!
//! Presigned PUTs sign `content-type`, `content-length` and, when the client
//! declared one, `x-amz-checksum-sha256`, so the store itself refuses any other
//! body. No flexible-checksum parameters are ever added: browsers could not
//! satisfy them.

use std::{
    borrow::Cow,
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use aws_sigv4::{
    http_request::{
        self, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
        UriPathNormalizationMode,
    },
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{
    credentials::CredentialSource,
    settings::{StorageError, StorageSettings},
};

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
#[derive(Clone)]
pub struct Presigner {
    /// `scheme://host[:port]` of the endpoint (no default port), with the
    /// bucket as host prefix for virtual-hosted addressing.
    origin: String,
    /// `/{bucket}` for path-style addressing, empty otherwise.
    bucket_path: String,
    credentials: CredentialSource,
    region: String,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner").field("origin", &self.origin).field("region", &self.region).finish_non_exhaustive()
    }
}

impl Presigner {
    pub fn new(settings: &StorageSettings, endpoint: Option<&str>) -> Self {
        let bucket = settings.bucket.as_str();
        let default_endpoint = format!("https://s3.{}.amazonaws.com", settings.region);
        let endpoint = endpoint.unwrap_or(&default_endpoint).trim_end_matches('/');
        let (scheme, authority) = endpoint.split_once("://").unwrap_or(("https", endpoint));
        let (authority, bucket_path) = if settings.force_path_style {
            (authority.to_owned(), format!("/{bucket}"))
        } else {
            (format!("{bucket}.{authority}"), String::new())
        };
        let default_port = if scheme == "http" { ":80" } else { ":443" };
        Self {
            origin: format!("{scheme}://{}", authority.strip_suffix(default_port).unwrap_or(&authority)),
            bucket_path,
            credentials: settings.credentials.clone(),
            region: settings.region.clone(),
        }
    }

    /// A PUT of exactly `content_length` bytes of `content_type` (and, when
    /// given, of the base64 SHA-256 `checksum_sha256`) that only creates:
    /// `If-None-Match: *` is signed, so once an object is stored the same URL
    /// cannot replace it.
    pub fn put_object(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        checksum_sha256: Option<&str>,
        ttl: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let mut headers = vec![
            ("content-length", content_length.to_string()),
            ("content-type", content_type.to_owned()),
            ("if-none-match", "*".to_owned()),
        ];
        if let Some(checksum) = checksum_sha256 {
            headers.push(("x-amz-checksum-sha256", checksum.to_owned()));
        }
        let url = self.sign("PUT", key, &[], &headers, ttl, SystemTime::now())?;
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
        let url =
            self.sign("PUT", key, &[("partNumber", &part), ("uploadId", upload_id)], &headers, ttl, SystemTime::now())?;
        Ok(PresignedRequest { method: "PUT", url, headers })
    }

    /// A GET whose response carries the service's headers, whatever the
    /// uploader sent with the object: the given `Content-Type` and
    /// `Content-Disposition`, `Cache-Control: private` for the link's
    /// lifetime, `Expires` at its end, and no content encoding.
    pub fn get_object(
        &self,
        key: &str,
        response_content_type: &str,
        response_content_disposition: &str,
        ttl: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let now = SystemTime::now();
        let cache_control = format!("private, max-age={}", ttl.as_secs());
        let expires = DateTime::<Utc>::from(now + ttl).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let query = [
            ("response-cache-control", cache_control.as_str()),
            ("response-content-disposition", response_content_disposition),
            ("response-content-encoding", "identity"),
            ("response-content-type", response_content_type),
            ("response-expires", expires.as_str()),
        ];
        let url = self.sign("GET", key, &query, &[], ttl, now)?;
        Ok(PresignedRequest { method: "GET", url, headers: Vec::new() })
    }

    /// The URL of `method` on `key` with `query`, signing `headers` (lowercase
    /// names) and `host` with the current credentials (their session token
    /// included), valid for `ttl` from `now` (whole seconds). `aws-sigv4`
    /// builds the canonical request and the signature.
    fn sign(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, String)],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, StorageError> {
        let mut url = format!("{}{}/{}", self.origin, self.bucket_path, utf8_percent_encode(key, KEY_PATH));
        for (i, (name, value)) in query.iter().enumerate() {
            let _ = write!(url, "{}{}={}", if i == 0 { '?' } else { '&' }, encode(name), encode(value));
        }
        let identity: Identity = self.credentials.current().into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl);
        // S3 signs the path as sent: encoded once, `//` and `.` kept.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(signing_failed)?
            .into();
        let headers = headers.iter().map(|(name, value)| (*name, value.as_str()));
        let request =
            SignableRequest::new(method, &url, headers, SignableBody::UnsignedPayload).map_err(signing_failed)?;
        let (instructions, _) = http_request::sign(request, &params).map_err(signing_failed)?.into_parts();
        for (name, value) in instructions.params() {
            let _ = write!(url, "{}{name}={}", if url.contains('?') { '&' } else { '?' }, encode(value));
        }
        Ok(url)
    }
}

fn signing_failed(err: impl std::fmt::Display) -> StorageError {
    StorageError::Service { code: "SigningFailed".into(), message: err.to_string() }
}

fn encode(value: &str) -> Cow<'_, str> {
    utf8_percent_encode(value, QUERY_VALUE).into()
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
    use std::collections::BTreeMap;

    use aws_credential_types::Credentials;

    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn settings(path_style: bool) -> StorageSettings {
        StorageSettings {
            endpoint: None,
            public_endpoint: None,
            region: "eu-central-1".into(),
            bucket: "files".parse().unwrap(),
            credentials: CredentialSource::fixed("AKIDEXAMPLE", SECRET),
            force_path_style: path_style,
            timeouts: Default::default(),
        }
    }

    /// Settings with temporary credentials (a role's): key, secret and token.
    async fn settings_with_token(path_style: bool, token: &str) -> StorageSettings {
        let credentials = Credentials::new(
            "ASIAEXAMPLE",
            SECRET,
            Some(token.to_owned()),
            Some(SystemTime::now() + Duration::from_secs(3600)),
            "test",
        );
        let provider = aws_credential_types::provider::SharedCredentialsProvider::new(credentials);
        StorageSettings {
            credentials: CredentialSource::from_provider(provider).await.unwrap(),
            ..settings(path_style)
        }
    }

    fn presigner(path_style: bool) -> Presigner {
        Presigner::new(&settings(path_style), Some("http://127.0.0.1:9000"))
    }

    /// The query of `url` as a map of decoded names to decoded values.
    fn query_of(url: &str) -> BTreeMap<String, String> {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned();
                (decode(k), decode(v))
            })
            .collect()
    }

    /// What `aws-sigv4`'s complete signer returns for the same request.
    fn reference_signature(
        settings: &StorageSettings,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        ttl: Duration,
        now: SystemTime,
    ) -> String {
        let unsigned = {
            let (base, query) = url.split_once('?').unwrap();
            let rest: Vec<&str> = query.split('&').filter(|p| !p.starts_with("X-Amz-")).collect();
            if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) }
        };
        let mut signing = SigningSettings::default();
        signing.signature_location = SignatureLocation::QueryParams;
        signing.expires_in = Some(ttl);
        signing.percent_encoding_mode = PercentEncodingMode::Single;
        signing.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity: Identity = settings.credentials.current().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&settings.region)
            .name("s3")
            .time(now)
            .settings(signing)
            .build()
            .unwrap()
            .into();
        let request =
            SignableRequest::new(method, unsigned.as_str(), headers.iter().copied(), SignableBody::UnsignedPayload)
                .unwrap();
        aws_sigv4::http_request::sign(request, &params).unwrap().into_parts().1
    }

    /// The URL as sent carries the signature of its own query and headers
    /// (the query is rebuilt by hand around `aws-sigv4`'s parameters), with
    /// the session token when the credentials have one.
    #[tokio::test]
    async fn every_url_shape_carries_the_signature_of_what_it_sends_with_and_without_a_session_token() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let ttl = Duration::from_secs(900);
        for (path_style, endpoint, token) in [
            (true, "http://127.0.0.1:9000", None),
            (false, "https://s3.eu-central-1.amazonaws.com", None),
            (true, "http://localhost:80", None),
            (true, "http://127.0.0.1:9000", Some("IQoJb3JpZ2luX2VjE/+token=with~odd%chars")),
            (false, "https://s3.eu-central-1.amazonaws.com", Some("FwoGZXIvYXdzEBYaDH")),
        ] {
            let settings = match token {
                Some(token) => settings_with_token(path_style, token).await,
                None => settings(path_style),
            };
            let signer = Presigner::new(&settings, Some(endpoint));
            let key = "uploads/7/0190a1b2c3d4/résumé (final) ~v2+.png";
            type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(&'static str, String)>);
            let cases: Vec<Case> = vec![
                (
                    "PUT",
                    vec![],
                    vec![
                        ("content-length", "42".into()),
                        ("content-type", "image/png".into()),
                        ("if-none-match", "*".into()),
                    ],
                ),
                (
                    "PUT",
                    vec![],
                    vec![
                        ("content-length", "42".into()),
                        ("content-type", "text/plain;  charset=utf-8".into()),
                        ("x-amz-checksum-sha256", "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=".into()),
                    ],
                ),
                ("PUT", vec![("partNumber", "3"), ("uploadId", "a/b+c=d")], vec![("content-length", "8388608".into())]),
                (
                    "GET",
                    vec![
                        (
                            "response-content-disposition",
                            "attachment; filename=\"r sum .png\"; filename*=UTF-8''r%C3%A9sum%C3%A9.png",
                        ),
                        ("response-cache-control", "private, max-age=300"),
                        ("response-content-encoding", "identity"),
                        ("response-content-type", "image/png"),
                        ("response-expires", "Wed, 02 Dec 2026 19:00:00 GMT"),
                    ],
                    vec![],
                ),
            ];
            for (method, query, headers) in cases {
                let url = signer.sign(method, key, &query, &headers, ttl, now).unwrap();
                let params = query_of(&url);
                let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let expected = reference_signature(&settings, method, &url, &header_refs, ttl, now);
                assert_eq!(params["X-Amz-Signature"], expected, "{method} {endpoint} {query:?}");
                assert_eq!(params["X-Amz-Date"], "20261118T110640Z");
                assert_eq!(params["X-Amz-Expires"], "900");
                assert_eq!(params.get("X-Amz-Security-Token").map(String::as_str), token);
                for (k, v) in &query {
                    assert_eq!(&params[*k], v);
                }
            }
        }
    }

    #[test]
    fn presigned_put_signs_type_length_create_only_and_checksum() {
        let req = presigner(true)
            .put_object("uploads/1/x/a b.png", "image/png", 42, Some("abc="), Duration::from_secs(60))
            .unwrap();
        assert!(req.url.starts_with("http://127.0.0.1:9000/files/uploads/1/x/a%20b.png?"), "{}", req.url);
        assert!(
            req.url.contains(
                "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-checksum-sha256"
            ),
            "{}",
            req.url
        );
        assert!(req.headers.contains(&("if-none-match", "*".to_owned())));
        assert!(!req.url.contains("x-amz-sdk-checksum-algorithm"));
        assert!(!req.url.to_ascii_lowercase().contains("x-amz-checksum-crc"));
        assert_eq!(req.headers.len(), 4);
    }

    #[test]
    fn virtual_hosted_addressing_puts_the_bucket_in_the_host() {
        let req = presigner(false).get_object("k", "text/plain", "attachment", Duration::from_secs(60)).unwrap();
        assert!(req.url.starts_with("http://files.127.0.0.1:9000/k?"), "{}", req.url);
        assert!(req.url.contains("response-content-disposition=attachment&"), "{}", req.url);
        assert!(req.url.contains("response-cache-control=private%2C%20max-age%3D60&"), "{}", req.url);
        assert!(req.url.contains("response-content-encoding=identity&"), "{}", req.url);
    }

    #[test]
    fn redact_hides_the_signature() {
        let url = "http://h/k?X-Amz-Date=1&X-Amz-Signature=deadbeef&x=1";
        assert_eq!(redact(url), "http://h/k?X-Amz-Date=1&X-Amz-Signature=REDACTED&x=1");
    }
}
