//! The in-process S3 endpoint of the embedded default: s3s + s3s-fs storing
//! objects under `DATA_DIR/s3`, SigV4 checked with credentials generated at
//! boot, and CORS (which s3s lacks) answered by poem in front of it.
//!
//! In front of s3s the bridge holds the store to what AWS S3 promises and
//! s3s-fs does not: writes of one key run one at a time, so `If-None-Match: *`
//! (checked by s3s-fs when a write starts) cannot let a slow PUT replace what
//! a faster one stored; a body whose `x-amz-checksum-sha256` does not match is
//! never stored (s3s-fs would keep it and answer BadDigest); and a presigned
//! request may not carry unsigned `x-amz-*` headers (refused, as AWS does) or
//! unsigned object metadata (`Cache-Control`, `Content-Encoding`, … dropped).

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use poem::{
    Endpoint, EndpointExt, Request, Response, Server,
    http::{Method, StatusCode},
    middleware::Cors,
};
use rand::{Rng, distr::Alphanumeric};
use s3s::{auth::SimpleAuth, service::S3Service, service::S3ServiceBuilder};
use sha2::{Digest, Sha256};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{
    config::{Origin, Secret},
    net::NoDelayAcceptor,
};

/// A running embedded S3 endpoint.
pub struct EmbeddedS3 {
    /// The address it listens on (the endpoint presigned URLs point at).
    pub addr: SocketAddr,
    /// Generated access key id.
    pub access_key_id: String,
    /// Generated secret key.
    pub secret_access_key: Secret,
    stop: Arc<Notify>,
    task: JoinHandle<io::Result<()>>,
}

impl EmbeddedS3 {
    /// Binds `addr` and serves the objects kept under `root`, accepting only
    /// requests signed with the generated credentials.
    pub async fn start(root: &Path, addr: SocketAddr, cors_origins: &[Origin]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| anyhow::anyhow!("embedded S3 store at {}: {e:?}", root.display()))?;
        let access_key_id = format!("CGF{}", random_string(17).to_uppercase());
        let secret_access_key = Secret::new(random_string(40));

        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key_id.clone(), secret_access_key.expose()));
        let endpoint = S3Endpoint { s3: builder.build(), writes: KeyLocks::default(), root: root.to_owned() }
            .with(s3_cors(cors_origins));

        let (acceptor, addr) = NoDelayAcceptor::new(tokio::net::TcpListener::bind(addr).await?)?;
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            endpoint,
            async move { stopped.notified().await },
            Some(Duration::from_secs(1)),
        ));
        Ok(Self { addr, access_key_id, secret_access_key, stop, task })
    }

    /// The endpoint URL clients use.
    pub fn endpoint(&self) -> Origin {
        Origin::from_raw(format!("http://{}", self.addr))
    }

    /// A handle that stops the endpoint (tests use it to simulate an outage).
    pub fn stopper(&self) -> Arc<Notify> {
        self.stop.clone()
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CORS rules for browsers doing presigned PUT/GET straight to the store.
fn s3_cors(origins: &[Origin]) -> Cors {
    Cors::new()
        .allow_origins(origins.iter().map(Origin::as_str))
        .allow_methods([Method::GET, Method::PUT, Method::HEAD, Method::POST, Method::DELETE])
        .allow_headers([
            "content-type",
            "content-md5",
            "cache-control",
            "if-none-match",
            "x-amz-checksum-sha256",
            "x-amz-content-sha256",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-user-agent",
            "authorization",
        ])
        .expose_headers(["etag", "x-amz-version-id"])
        .max_age(600)
}

/// Bridges poem requests to the s3s service.
struct S3Endpoint {
    s3: S3Service,
    writes: KeyLocks,
    /// Where s3s-fs keeps objects and their metadata files.
    root: PathBuf,
}

impl Endpoint for S3Endpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if let Some(signed) = presigned_headers(&req) {
            if let Some(name) = req
                .headers()
                .keys()
                .find(|n| n.as_str().starts_with("x-amz-") && !signed.iter().any(|s| s == n.as_str()))
            {
                let message = format!("There were headers present in the request which were not signed: {name}");
                return Ok(s3_error(StatusCode::FORBIDDEN, "AccessDenied", &message));
            }
            for name in UNSIGNED_METADATA {
                if !signed.iter().any(|s| s == name) {
                    req.headers_mut().remove(*name);
                }
            }
        }
        if req.method() == Method::GET && has_param(&req, "uploads") {
            // s3s-fs cannot list multipart uploads; answered here, without the
            // error line s3s logs for every 5xx (the sweeper asks every sweep).
            return Ok(s3_error(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "ListMultipartUploads"));
        }
        // s3s decodes the path before it finds the key: so does the lock, or
        // `/b/%75ploads/…` would be the same object under another lock.
        let path = percent_encoding::percent_decode_str(req.uri().path()).decode_utf8_lossy().into_owned();
        let deletes_object = req.method() == Method::DELETE && !has_param(&req, "uploadId");
        let writes_object = (req.method() == Method::PUT && !has_param(&req, "partNumber"))
            || (req.method() == Method::POST && has_param(&req, "uploadId"))
            || deletes_object;
        let _one_writer = match writes_object {
            true => Some(self.writes.lock(&path).await),
            false => None,
        };
        let bad_digest = Arc::new(AtomicBool::new(false));
        if req.method() == Method::PUT
            && let Some(expected) = declared_sha256(&req)
        {
            let body = req.take_body().into_bytes_stream();
            let checked = DigestChecked {
                inner: Box::pin(body),
                hasher: Some(Sha256::new()),
                expected,
                failed: bad_digest.clone(),
            };
            req.set_body(poem::Body::from_bytes_stream(checked));
        }

        let req: poem::http::Request<_> = req.into();
        let req = req.map(s3s::Body::http_body);
        let result = self.s3.call(req).await;
        if bad_digest.load(Ordering::SeqCst) {
            let message =
                "The x-amz-checksum-sha256 you specified did not match the calculated checksum; nothing was stored";
            return Ok(s3_error(StatusCode::BAD_REQUEST, "BadDigest", message));
        }
        match result {
            Ok(resp) => {
                if deletes_object && resp.status().is_success() {
                    forget_metadata(&self.root, &path).await;
                }
                let (parts, body) = resp.into_parts();
                let mut out = Response::builder()
                    .status(parts.status)
                    .body(poem::Body::from_bytes_stream(body.map_err(io::Error::other)));
                *out.headers_mut() = parts.headers;
                Ok(out)
            }
            Err(err) => {
                tracing::error!(error = ?err, "embedded S3 failed to handle a request");
                Ok(Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).finish())
            }
        }
    }
}

/// Headers that become an object's response headers: a presigned request
/// keeps them only when they are signed.
const UNSIGNED_METADATA: &[&str] =
    &["cache-control", "content-disposition", "content-encoding", "content-language", "expires"];

/// The signed header names of a presigned (query-signed) request.
fn presigned_headers(req: &Request) -> Option<Vec<String>> {
    let signed = query_param(req, "X-Amz-SignedHeaders")?;
    Some(signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect())
}

fn has_param(req: &Request, name: &str) -> bool {
    query_param(req, name).is_some()
}

/// A query parameter, name and value percent-decoded as s3s decodes them
/// (`X-Amz-Signed%48eaders` is `X-Amz-SignedHeaders` to the signature check).
fn query_param(req: &Request, name: &str) -> Option<String> {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    req.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

/// Removes what s3s-fs keeps beside a deleted object (its metadata files,
/// which it leaves behind) and the object's now empty folders.
async fn forget_metadata(root: &Path, path: &str) {
    use base64::Engine;
    let Some((bucket, key)) = path.trim_start_matches('/').split_once('/') else { return };
    let encode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let stem = format!(".bucket-{}.object-{}", encode(bucket), encode(key));
    for suffix in [".metadata.json", ".internal.json"] {
        let file = root.join(format!("{stem}{suffix}"));
        if let Err(err) = tokio::fs::remove_file(&file).await
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %file.display(), error = %err, "embedded S3: cannot remove a deleted object's metadata");
        }
    }
    let bucket_dir = root.join(bucket);
    let mut dir = bucket_dir.join(key);
    while dir.pop() && dir.starts_with(&bucket_dir) && dir != bucket_dir {
        // Fails (and stops) at the first folder that still holds something.
        if tokio::fs::remove_dir(&dir).await.is_err() {
            break;
        }
    }
}

/// The SHA-256 a PUT declares in `x-amz-checksum-sha256`, decoded.
fn declared_sha256(req: &Request) -> Option<Vec<u8>> {
    use base64::Engine;
    let value = req.headers().get("x-amz-checksum-sha256")?.to_str().ok()?;
    base64::engine::general_purpose::STANDARD.decode(value).ok().filter(|d| d.len() == 32)
}

/// An S3 error response.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder().status(status).content_type("application/xml").body(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ))
}

/// A body that hashes itself and, when its end does not match the expected
/// SHA-256, fails instead of ending: s3s-fs then drops the temporary file
/// instead of moving it into place.
struct DigestChecked {
    inner: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    hasher: Option<Sha256>,
    expected: Vec<u8>,
    failed: Arc<AtomicBool>,
}

impl Stream for DigestChecked {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                let matches = self.hasher.take().is_none_or(|h| h.finalize().as_slice() == self.expected.as_slice());
                if matches {
                    return Poll::Ready(None);
                }
                self.failed.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Err(io::Error::other("x-amz-checksum-sha256 does not match the body"))))
            }
            other => other,
        }
    }
}

/// One async lock per key being written; entries of finished writes are dropped.
#[derive(Default)]
struct KeyLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyLocks {
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if locks.len() >= 1024 {
                locks.retain(|_, lock| lock.strong_count() > 0);
            }
            match locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

fn random_string(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}
