//! The in-process S3 endpoint of the embedded default: s3s + s3s-fs storing
//! objects under `DATA_DIR/s3`, SigV4 checked with credentials generated at
//! boot, and CORS (which s3s lacks) answered by poem in front of it.

use std::{io, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use futures_util::TryStreamExt;
use poem::{
    Endpoint, EndpointExt, Request, Response, Server,
    http::{Method, StatusCode},
    middleware::Cors,
};
use rand::{Rng, distr::Alphanumeric};
use s3s::{auth::SimpleAuth, service::S3Service, service::S3ServiceBuilder};
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
        let endpoint = S3Endpoint(builder.build()).with(s3_cors(cors_origins));

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
struct S3Endpoint(S3Service);

impl Endpoint for S3Endpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let req: poem::http::Request<_> = req.into();
        let req = req.map(s3s::Body::http_body);
        match self.0.call(req).await {
            Ok(resp) => {
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

fn random_string(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}
