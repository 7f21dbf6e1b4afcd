//! Dev login and the current user.

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use super::common::{ApiTags, JsonString, Success, ok, utc};
use crate::{
    auth::{BearerAuth, CurrentUser},
    domain::Username,
    entity::user,
    error::ApiError,
    service::{ServiceError, users},
    state::AppState,
};

/// Authentication operations.
pub struct AuthApi;

/// A chat user.
#[derive(Object, Debug, Clone)]
pub struct User {
    /// User id (the `sub` of their tokens).
    pub id: i32,
    /// Login name.
    pub username: String,
    /// When the account was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<user::Model> for User {
    fn from(m: user::Model) -> Self {
        Self { id: m.id, username: m.username, created_at: utc(m.created_at) }
    }
}

/// Dev login request.
#[derive(Object)]
pub struct DevLoginRequest {
    /// Login name (1-64 of letters, digits, `_`, `-`, `.`); the user is created on first login.
    pub username: JsonString,
}

/// A bearer token and its user.
#[derive(Object)]
pub struct LoginResponse {
    /// JWT to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The logged-in user.
    pub user: User,
}

/// The caller as the token names them.
#[derive(Object)]
pub struct Me {
    /// User id.
    pub id: i32,
    /// Login name.
    pub username: String,
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Log in by name (development mode only).
    ///
    /// Creates the user on first use and returns a bearer token. Off (404
    /// `dev_login_disabled`) when the operator sets JWT_SECRET without DEV_LOGIN=true.
    /// Usernames are case-insensitive. At most DEV_LOGIN_RATE_PER_MIN per
    /// client address (429 `rate_limited`).
    #[oai(path = "/auth/dev-login", method = "post", operation_id = "dev_login")]
    async fn dev_login(
        &self,
        req: &poem::Request,
        state: Data<&AppState>,
        body: Json<DevLoginRequest>,
    ) -> Result<Success<LoginResponse>, ApiError> {
        // Off: answered 404 `dev_login_disabled` by `crate::guard`, before the body is read.
        if let Some(address) = req.remote_addr().as_socket_addr() {
            state
                .deps
                .limits
                .check_dev_login(address.ip())
                .map_err(|l| ServiceError::RateLimited { retry_after_secs: l.retry_after_secs })?;
        }
        let username = Username::parse(&body.username)?;
        let user = users::find_or_create(&state.deps.db, &username).await?;
        let token = state.auth.keys.issue(&CurrentUser::of(&user));
        Ok(ok(LoginResponse { token, user: user.into() }))
    }

    /// The authenticated caller.
    #[oai(path = "/auth/me", method = "get", operation_id = "current_user")]
    async fn me(&self, auth: BearerAuth) -> Result<Success<Me>, ApiError> {
        Ok(ok(Me { id: auth.0.id, username: auth.0.username }))
    }
}
