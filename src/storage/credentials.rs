//! The broker's S3 credentials: static keys, or AWS's standard chain
//! (environment, shared profile, web identity, ECS container credentials,
//! IMDS) through `aws-config`. The SDK client asks the provider itself; the
//! presigner reads a snapshot kept fresh in the background, so presigning
//! stays a synchronous computation with no network call.

use std::{
    sync::{Arc, RwLock, Weak},
    time::{Duration, SystemTime},
};

pub use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider},
};

/// Temporary credentials are renewed this long before they expire: a URL
/// signed with them dies with them, so a default 15-minute upload URL signed
/// just before a renewal still lives its whole time.
const RENEW_BEFORE: Duration = Duration::from_secs(20 * 60);
/// Fetches are at least this far apart (a provider may hand out the same
/// credentials until shortly before their expiry, or fail for a while).
const MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Where the credentials come from, and the ones in use now.
#[derive(Clone)]
pub struct CredentialSource {
    provider: SharedCredentialsProvider,
    current: Arc<RwLock<Credentials>>,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Credentials`' own Debug redacts the secret and the token.
        f.debug_struct("CredentialSource").field("current", &self.current()).finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// Fixed keys (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the embedded store's).
    pub fn fixed(access_key_id: &str, secret_access_key: &str) -> Self {
        let credentials = Credentials::new(access_key_id, secret_access_key, None, None, "chatgenius-files");
        Self {
            provider: SharedCredentialsProvider::new(credentials.clone()),
            current: Arc::new(RwLock::new(credentials)),
        }
    }

    /// AWS's default chain, resolved once now (so a deployment without any
    /// credentials fails at boot) and renewed before each expiry.
    pub async fn chain(region: &str) -> Result<Self, CredentialsError> {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .region(aws_config::Region::new(region.to_owned()))
            .build()
            .await;
        Self::from_provider(SharedCredentialsProvider::new(chain)).await
    }

    /// Any provider: resolved once now, renewed before each expiry.
    pub async fn from_provider(provider: SharedCredentialsProvider) -> Result<Self, CredentialsError> {
        let first = provider.provide_credentials().await?;
        let renews = first.expiry().is_some();
        let source = Self { provider, current: Arc::new(RwLock::new(first)) };
        if renews {
            tokio::spawn(renew(source.provider.clone(), Arc::downgrade(&source.current)));
        }
        Ok(source)
    }

    /// The provider the SDK client asks (it caches and renews on its own).
    pub fn provider(&self) -> SharedCredentialsProvider {
        self.provider.clone()
    }

    /// The credentials to sign with now.
    pub fn current(&self) -> Credentials {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Keeps `current` fresh until the source is dropped.
async fn renew(provider: SharedCredentialsProvider, current: Weak<RwLock<Credentials>>) {
    loop {
        let Some(slot) = current.upgrade() else { return };
        let expiry = slot.read().unwrap_or_else(std::sync::PoisonError::into_inner).expiry();
        drop(slot);
        let Some(expiry) = expiry else { return };
        let due = expiry.checked_sub(RENEW_BEFORE).unwrap_or(expiry);
        tokio::time::sleep(due.duration_since(SystemTime::now()).unwrap_or_default().max(MIN_INTERVAL)).await;
        match provider.provide_credentials().await {
            Ok(fresh) => match current.upgrade() {
                Some(slot) => *slot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh,
                None => return,
            },
            Err(err) => tracing::warn!(error = %err, "renewing AWS credentials failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Rotating(std::sync::atomic::AtomicU32);

    impl ProvideCredentials for Rotating {
        fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Each set is due for renewal as soon as it is handed out.
            let expiry = SystemTime::now() + RENEW_BEFORE;
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("ASIA{n}"),
                "secret",
                Some(format!("token-{n}")),
                Some(expiry),
                "test",
            )))
        }
    }

    // Paused time: the renewal's waits pass at once.
    #[tokio::test(start_paused = true)]
    async fn temporary_credentials_are_renewed_before_they_expire() {
        let provider = SharedCredentialsProvider::new(Rotating(Default::default()));
        let source = CredentialSource::from_provider(provider).await.unwrap();
        assert_eq!(source.current().access_key_id(), "ASIA0");
        let mut renewed = false;
        for _ in 0..100 {
            tokio::time::sleep(MIN_INTERVAL).await;
            if source.current().access_key_id() != "ASIA0" {
                renewed = true;
                break;
            }
        }
        assert!(renewed, "the snapshot follows the provider");
        assert!(source.current().session_token().is_some_and(|t| t.starts_with("token-")));
    }

    #[test]
    fn fixed_keys_never_expire_and_debug_hides_the_secret() {
        let source = CredentialSource::fixed("AKID", "very-secret");
        assert_eq!(source.current().access_key_id(), "AKID");
        assert!(source.current().expiry().is_none());
        assert!(!format!("{source:?}").contains("very-secret"));
    }
}
