//! Bearer tokens: HS256 JWTs whose `sub` is the user id and `ust` the user's
//! creation time, minted by dev login or the `token` command. Every API call
//! checks the signature and expiry, then that this database has that user,
//! created at that time: a token from an earlier database (same secret, ids
//! given out again) or for a deleted user is refused with 401.

use std::{path::Path, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};

use crate::{config::Secret, error::ApiError};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: i32,
    pub username: String,
    /// When the user was created (milliseconds since the epoch): ties the
    /// token to this database's user, not just to an id.
    pub created_ms: i64,
    /// When the token expires (seconds since the epoch).
    pub expires_at: u64,
}

impl CurrentUser {
    /// The user of a `users` row, for a token issued now.
    pub fn of(user: &crate::entity::user::Model) -> Self {
        Self {
            id: user.id,
            username: user.username.clone(),
            created_ms: user.created_at.and_utc().timestamp_millis(),
            expires_at: 0,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    /// The user's creation time, milliseconds since the epoch.
    ust: i64,
    iat: u64,
    exp: u64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token is malformed")]
    Malformed,
}

/// Seconds of clock skew a token's expiry is allowed.
const LEEWAY_SECS: u64 = 5;

/// Signs and verifies bearer tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &Secret, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `ust` is required too: `Claims` has no default for it.
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            ttl,
        }
    }

    /// A token for `user`, valid for the configured lifetime.
    pub fn issue(&self, user: &CurrentUser) -> String {
        self.issue_with_ttl(user, self.ttl.as_secs() as i64)
    }

    /// A token whose expiry is `ttl_secs` from now (negative: already expired; for tests).
    pub fn issue_with_ttl(&self, user: &CurrentUser, ttl_secs: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.username.clone(),
            ust: user.created_ms,
            iat: now as u64,
            exp: (now + ttl_secs).max(0) as u64,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// The user a token names, when it is well-formed, correctly signed and not expired.
    pub fn verify(&self, token: &str) -> Result<CurrentUser, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })?;
        let id = data.claims.sub.parse().map_err(|_| TokenError::Malformed)?;
        Ok(CurrentUser { id, username: data.claims.name, created_ms: data.claims.ust, expires_at: data.claims.exp })
    }
}

/// The JWT secret: the configured one, or a random one kept in `data_dir` so
/// that tokens (and the `token` command) survive restarts of the embedded default.
pub fn resolve_secret(configured: Option<&Secret>, data_dir: &Path) -> std::io::Result<Secret> {
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    let path = data_dir.join("jwt_secret");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 32
    {
        return Ok(Secret::new(existing.trim()));
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&path, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Secret::new(secret))
}

/// `Authorization: Bearer <JWT>` (HS256, `sub` = user id). Get one from `POST /auth/dev-login`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub CurrentUser);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<CurrentUser> {
    let authenticator = req.data::<Authenticator>().expect("the authenticator is request data of every route");
    Ok(authenticator.authenticate(&bearer.token).await?)
}

/// Checks bearer tokens against the keys and this database's users; request
/// data of every route.
#[derive(Clone)]
pub struct Authenticator {
    pub keys: Arc<TokenKeys>,
    db: DatabaseConnection,
}

impl Authenticator {
    pub fn new(keys: Arc<TokenKeys>, db: DatabaseConnection) -> Self {
        Self { keys, db }
    }

    /// The user of a bearer token: well-formed, correctly signed, not
    /// expired, and naming a user this database has (created when the token
    /// says).
    pub async fn authenticate(&self, token: &str) -> Result<CurrentUser, ApiError> {
        let user = self.keys.verify(token).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        match crate::service::users::find_by_id(&self.db, user.id).await? {
            Some(found) if CurrentUser::of(&found).created_ms == user.created_ms => Ok(user),
            _ => Err(ApiError::unauthorized("the token's user does not exist here; log in again")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&Secret::new("an-hs256-secret-of-at-least-32-bytes!!"), Duration::from_secs(3600))
    }

    #[test]
    fn a_token_is_accepted_until_it_expires_and_a_tampered_one_never() {
        let keys = keys();
        let alice = CurrentUser { id: 7, username: "alice".into(), created_ms: 1_700_000_000_123, expires_at: 0 };
        let token = keys.issue(&alice);
        let verified = keys.verify(&token).unwrap();
        assert_eq!((verified.id, verified.created_ms), (7, alice.created_ms));
        assert!(verified.expires_at > jsonwebtoken::get_current_timestamp());

        // A character inside the signature (the last one holds padding bits).
        let mut tampered = token.clone();
        let at = tampered.len() - 10;
        let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
        tampered.replace_range(at..=at, flipped);
        assert!(matches!(keys.verify(&tampered), Err(TokenError::BadSignature)));

        let expired = keys.issue_with_ttl(&alice, -(LEEWAY_SECS as i64) - 60);
        assert!(matches!(keys.verify(&expired), Err(TokenError::Expired)));
    }
}
