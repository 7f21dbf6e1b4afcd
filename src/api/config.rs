//! `/config`: the settings a client needs before it uploads.

use poem::web::Data;
use poem_openapi::{Object, OpenApi};

use super::common::{ApiTags, Success, ok};
use crate::state::AppState;

/// Client settings.
pub struct ConfigApi;

/// Limits and switches a client checks before it uploads anything.
#[derive(Object)]
pub struct ClientConfig {
    /// Largest accepted file, in MiB (MAX_FILE_SIZE_MB).
    pub max_file_size_mb: u64,
    /// Largest accepted file, in bytes.
    pub max_file_size_bytes: u64,
    /// MIME patterns accepted (ALLOWED_FILE_TYPES), e.g. `image/*`.
    pub allowed_file_types: Vec<String>,
    /// Files larger than this (bytes) go up in parts (`POST /files/multipart`).
    pub multipart_threshold_bytes: u64,
    /// Whether `POST /auth/dev-login` is available.
    pub dev_login: bool,
}

#[OpenApi(tag = "ApiTags::Client")]
impl ConfigApi {
    /// Upload limits and client switches.
    ///
    /// Public: nothing here is secret, and a client validates files against
    /// it before presigning (the broker checks again).
    #[oai(path = "/config", method = "get", operation_id = "client_config")]
    async fn config(&self, state: Data<&AppState>) -> Success<ClientConfig> {
        let config = &state.config;
        ok(ClientConfig {
            max_file_size_mb: config.max_file_size_mb,
            max_file_size_bytes: config.max_file_size_bytes(),
            allowed_file_types: config.allowed_file_types.patterns().to_vec(),
            multipart_threshold_bytes: config.multipart_threshold_mb * 1024 * 1024,
            dev_login: config.dev_login_enabled(),
        })
    }
}
