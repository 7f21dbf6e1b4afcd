//! The in-process event hub: use cases publish channel-scoped events, the
//! WebSocket endpoint (and tests) subscribe. Every event is stamped with an
//! id and a time so a reconnecting client knows from when to catch up.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::wire::{FileInfo, MessageInfo};

/// Something that happened in a channel. Serialised as `{"type": ..., "channel_id": ..., ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A file was confirmed and is ready to download.
    FileUploadComplete {
        channel_id: i32,
        message_id: Option<i32>,
        file: FileInfo,
    },
    /// A file was deleted by its owner; it no longer downloads.
    FileDeleted {
        channel_id: i32,
        message_id: Option<i32>,
        file_id: i32,
    },
    /// A message was posted (with the files attached at once).
    MessageCreated { channel_id: i32, message: MessageInfo },
    /// Files were attached to or removed from a message.
    MessageUpdated { channel_id: i32, message: MessageInfo },
    /// A user joined the channel.
    MemberJoined { channel_id: i32, user_id: i32 },
    /// A user left or was removed from the channel.
    MemberLeft { channel_id: i32, user_id: i32 },
}

impl Event {
    /// The channel whose members may see this event.
    pub fn channel_id(&self) -> i32 {
        match self {
            Self::FileUploadComplete { channel_id, .. }
            | Self::FileDeleted { channel_id, .. }
            | Self::MessageCreated { channel_id, .. }
            | Self::MessageUpdated { channel_id, .. }
            | Self::MemberJoined { channel_id, .. }
            | Self::MemberLeft { channel_id, .. } => *channel_id,
        }
    }
}

/// An event as delivered: `{"id", "at", "type", "channel_id", ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stamped {
    /// Increases with every event this instance publishes.
    pub id: u64,
    /// When it was published.
    pub at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// Fan-out of events to every subscriber of this process.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Stamped>>,
    next_id: Arc<AtomicU64>,
    /// Where published events also go for other instances (PostgreSQL relay).
    relay: Arc<OnceLock<mpsc::UnboundedSender<Arc<Stamped>>>>,
}

impl EventHub {
    /// A hub whose subscribers may lag `capacity` events before losing some.
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity).0, next_id: Arc::new(AtomicU64::new(1)), relay: Arc::default() }
    }

    /// Sends every event published from now on to `relay` as well.
    pub fn set_relay(&self, relay: mpsc::UnboundedSender<Arc<Stamped>>) {
        let _ = self.relay.set(relay);
    }

    /// Publishes an event here and, with a relay, to the other instances.
    pub fn publish(&self, event: Event) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stamped = Arc::new(Stamped { id, at: chrono::Utc::now(), event });
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(stamped.clone());
        }
        let _ = self.tx.send(stamped);
    }

    /// Hands an already stamped event (e.g. from another instance) to local subscribers.
    pub fn deliver(&self, stamped: Stamped) {
        let _ = self.tx.send(Arc::new(stamped));
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(1024)
    }
}
