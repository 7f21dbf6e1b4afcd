//! Rate limits (governor keyed limiters): one per action and user, and dev
//! login per client address; and the cap on open event sockets per user. Stale keys are dropped by
//! [`RateLimits::retain_recent`] so memory stays bounded.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

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
    /// Listing a multipart upload's parts (one store listing each).
    Parts,
}

/// Limits per minute of each action (bursts up to the same number).
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub upload: NonZeroU32,
    pub confirm: NonZeroU32,
    pub download: NonZeroU32,
    pub parts: NonZeroU32,
    /// Dev logins per client address.
    pub dev_login: NonZeroU32,
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
    parts: DefaultKeyedRateLimiter<i32>,
    dev_login: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(quotas: Quotas) -> Self {
        let keyed = |per_min| DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_min));
        Self {
            upload: keyed(quotas.upload),
            confirm: keyed(quotas.confirm),
            download: keyed(quotas.download),
            parts: keyed(quotas.parts),
            dev_login: DefaultKeyedRateLimiter::keyed(Quota::per_minute(quotas.dev_login)),
            clock: DefaultClock::default(),
        }
    }

    fn limiter(&self, action: Action) -> &DefaultKeyedRateLimiter<i32> {
        match action {
            Action::Upload => &self.upload,
            Action::Confirm => &self.confirm,
            Action::Download => &self.download,
            Action::Parts => &self.parts,
        }
    }

    /// Takes one request of `user` for `action`, or says how long to wait.
    pub fn check(&self, action: Action, user: i32) -> Result<(), Limited> {
        self.limiter(action).check_key(&user).map_err(|not_until| self.limited(not_until))
    }

    /// Takes one dev login from the client at `address`.
    pub fn check_dev_login(&self, address: IpAddr) -> Result<(), Limited> {
        self.dev_login.check_key(&address).map_err(|not_until| self.limited(not_until))
    }

    fn limited(&self, not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Limited {
        let wait = not_until.wait_time_from(self.clock.now());
        Limited { retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
    }

    /// Forgets users whose limits have fully recovered.
    pub fn retain_recent(&self) {
        for action in [Action::Upload, Action::Confirm, Action::Download, Action::Parts] {
            let limiter = self.limiter(action);
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.dev_login.retain_recent();
        self.dev_login.shrink_to_fit();
    }

    /// Keys currently tracked, over all actions.
    pub fn len(&self) -> usize {
        self.upload.len() + self.confirm.len() + self.download.len() + self.parts.len() + self.dev_login.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What each user has open at once (event sockets, bounded by
/// WS_MAX_PER_USER; uploads through the broker, by PROXY_UPLOADS_PER_USER).
#[derive(Default)]
pub struct UserSlots(Mutex<HashMap<i32, usize>>);

/// One open thing of a user, counted until dropped.
pub struct UserSlot {
    counts: Arc<UserSlots>,
    user: i32,
}

impl UserSlots {
    /// A slot for one more of `user`'s, unless they have `max` open.
    pub fn take(self: &Arc<Self>, user: i32, max: usize) -> Option<UserSlot> {
        let mut counts = self.0.lock().expect("user slots");
        let open = counts.entry(user).or_default();
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(UserSlot { counts: self.clone(), user })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("user slots");
        if let Some(open) = counts.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.user);
            }
        }
    }
}
