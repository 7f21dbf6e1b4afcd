//! The in-process event hub: use cases publish channel-scoped events, the
//! WebSocket endpoint (and tests) subscribe. Every event is stamped with an
//! id and a time so a reconnecting client knows from when to catch up.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering},
};

use poem_openapi::{Object, Union};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::wire::{FileInfo, MessageInfo};

/// A file was confirmed and is ready to download.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FileUploadComplete {
    /// Channel of the file.
    pub channel_id: i32,
    /// Message the file is attached to, if any.
    #[oai(nullable)]
    pub message_id: Option<i32>,
    /// The file.
    pub file: FileInfo,
}

/// A file was deleted by its owner; it no longer lists or downloads.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FileDeleted {
    /// Channel of the file.
    pub channel_id: i32,
    /// Message it was attached to, if any.
    #[oai(nullable)]
    pub message_id: Option<i32>,
    /// Id of the deleted file.
    pub file_id: i32,
}

/// A message was posted (with the files attached at once).
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageCreated {
    /// Channel of the message.
    pub channel_id: i32,
    /// The message with its files.
    pub message: MessageInfo,
}

/// Files were attached to or removed from a message.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageUpdated {
    /// Channel of the message.
    pub channel_id: i32,
    /// The message with its live files.
    pub message: MessageInfo,
}

/// A user joined the channel (delivery to them starts now).
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MemberJoined {
    /// The channel.
    pub channel_id: i32,
    /// The user who joined.
    pub user_id: i32,
}

/// A user left or was removed (delivery to them stops after this event).
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MemberLeft {
    /// The channel.
    pub channel_id: i32,
    /// The user who left.
    pub user_id: i32,
}

/// Something that happened in a channel, tagged by `type`. On the WebSocket
/// each text frame is one event with two more fields: `id` (increasing per
/// broker instance) and `at` (publish time, RFC 3339).
#[derive(Union, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(discriminator_name = "type", one_of)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    #[oai(mapping = "file_upload_complete")]
    FileUploadComplete(FileUploadComplete),
    #[oai(mapping = "file_deleted")]
    FileDeleted(FileDeleted),
    #[oai(mapping = "message_created")]
    MessageCreated(MessageCreated),
    #[oai(mapping = "message_updated")]
    MessageUpdated(MessageUpdated),
    #[oai(mapping = "member_joined")]
    MemberJoined(MemberJoined),
    #[oai(mapping = "member_left")]
    MemberLeft(MemberLeft),
}

impl Event {
    /// The channel whose members may see this event.
    pub fn channel_id(&self) -> i32 {
        match self {
            Self::FileUploadComplete(e) => e.channel_id,
            Self::FileDeleted(e) => e.channel_id,
            Self::MessageCreated(e) => e.channel_id,
            Self::MessageUpdated(e) => e.channel_id,
            Self::MemberJoined(e) => e.channel_id,
            Self::MemberLeft(e) => e.channel_id,
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
    /// The JSON text, made once however many sockets send it.
    #[serde(skip)]
    json: OnceLock<String>,
}

impl Stamped {
    pub fn new(id: u64, at: chrono::DateTime<chrono::Utc>, event: Event) -> Self {
        Self { id, at, event, json: OnceLock::new() }
    }

    /// `{"id", "at", "type", ...}` as sent on the WebSocket.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| serde_json::to_string(self).expect("events serialise"))
    }
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
        let stamped = Arc::new(Stamped::new(id, chrono::Utc::now(), event));
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
