//! What every handler can reach: the use cases' handles ([`Deps`]) and what
//! only the HTTP layer needs (tokens, settings, socket counts, readiness,
//! shutdown).

use std::{sync::Arc, time::Instant};

use tokio::sync::{Mutex, watch};

use crate::{auth::Authenticator, config::Config, ratelimit::UserSlots, service::deps::Deps};

/// Shared by every request; cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    pub deps: Deps,
    pub auth: Authenticator,
    pub config: Arc<Config>,
    /// Open event sockets per user.
    pub sockets: Arc<UserSlots>,
    /// The last readiness answer (what failed, and when it was checked).
    pub readiness: Arc<Mutex<Option<Readiness>>>,
    /// Turns true when shutdown starts: WebSockets say goodbye, the sweeper stops.
    pub closing: watch::Receiver<bool>,
}

/// A readiness answer: when it was checked and what failed.
pub type Readiness = (Instant, Vec<&'static str>);
