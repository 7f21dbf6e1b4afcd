//! Per-user rate limits (governor keyed limiters), one per action. Stale keys
//! are dropped by [`RateLimits::retain_recent`] so memory stays bounded.

use std::num::NonZeroU32;

use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Presigning an upload or uploading through the broker.
    Upload,
    /// Confirming an upload.
    Confirm,
    /// Getting a download link.
    Download,
}

/// Refused: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// The limiters of every action.
pub struct RateLimits {
    upload: DefaultKeyedRateLimiter<i32>,
    confirm: DefaultKeyedRateLimiter<i32>,
    download: DefaultKeyedRateLimiter<i32>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limits in requests per minute per user (bursts up to the same number).
    pub fn new(upload_per_min: NonZeroU32, confirm_per_min: NonZeroU32, download_per_min: NonZeroU32) -> Self {
        Self {
            upload: DefaultKeyedRateLimiter::keyed(Quota::per_minute(upload_per_min)),
            confirm: DefaultKeyedRateLimiter::keyed(Quota::per_minute(confirm_per_min)),
            download: DefaultKeyedRateLimiter::keyed(Quota::per_minute(download_per_min)),
            clock: DefaultClock::default(),
        }
    }

    fn limiter(&self, action: Action) -> &DefaultKeyedRateLimiter<i32> {
        match action {
            Action::Upload => &self.upload,
            Action::Confirm => &self.confirm,
            Action::Download => &self.download,
        }
    }

    /// Takes one request of `user` for `action`, or says how long to wait.
    pub fn check(&self, action: Action, user: i32) -> Result<(), Limited> {
        self.limiter(action).check_key(&user).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Limited { retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
        })
    }

    /// Forgets users whose limits have fully recovered.
    pub fn retain_recent(&self) {
        for action in [Action::Upload, Action::Confirm, Action::Download] {
            let limiter = self.limiter(action);
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys currently tracked, over all actions.
    pub fn len(&self) -> usize {
        self.upload.len() + self.confirm.len() + self.download.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
