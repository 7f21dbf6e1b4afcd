//! Channel events and the in-process hub that hands them to WebSocket
//! connections. Events are written to the outbox (`events` table) in the
//! transaction of the change they announce; [`crate::outbox`] reads them back
//! in id order and delivers them here, on every broker instance.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, AtomicI64, Ordering},
};

use poem_openapi::{Object, Union};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

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

/// A file changed: its preview was made (or found impossible) and its image
/// size is known.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FileUpdated {
    /// Channel of the file.
    pub channel_id: i32,
    /// Message the file is attached to, if any.
    #[oai(nullable)]
    pub message_id: Option<i32>,
    /// The file as it is now.
    pub file: FileInfo,
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

/// Opens every stream: the events the client asked to catch up on (if any)
/// were sent before it; live events follow. Its `id` is the stream position
/// (the id of the newest event at connect): resume from it.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StreamReady {
    /// Events replayed before this frame (connections with `?after=`).
    pub replayed: u64,
}

/// The events after `?after=` can no longer be replayed (older than the
/// retention window, too many, or from another database): reload the
/// channels and messages, then resume from this frame's `id`.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ResyncRequired {
    /// Why nothing was replayed.
    pub reason: String,
}

/// One WebSocket frame, tagged by `type`: a channel event, or one of the two
/// frames that open a stream (`ready`, `resync_required`). Every frame also
/// has `id` (the event's position: increasing across all instances, in commit
/// order) and `at` (RFC 3339).
#[derive(Union, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(discriminator_name = "type", one_of)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    #[oai(mapping = "file_upload_complete")]
    FileUploadComplete(FileUploadComplete),
    #[oai(mapping = "file_deleted")]
    FileDeleted(FileDeleted),
    #[oai(mapping = "file_updated")]
    FileUpdated(FileUpdated),
    #[oai(mapping = "message_created")]
    MessageCreated(MessageCreated),
    #[oai(mapping = "message_updated")]
    MessageUpdated(MessageUpdated),
    #[oai(mapping = "member_joined")]
    MemberJoined(MemberJoined),
    #[oai(mapping = "member_left")]
    MemberLeft(MemberLeft),
    #[oai(mapping = "ready")]
    Ready(StreamReady),
    #[oai(mapping = "resync_required")]
    ResyncRequired(ResyncRequired),
}

impl Event {
    /// The channel whose members may see this event (none for stream frames).
    pub fn channel_id(&self) -> Option<i32> {
        match self {
            Self::FileUploadComplete(e) => Some(e.channel_id),
            Self::FileDeleted(e) => Some(e.channel_id),
            Self::FileUpdated(e) => Some(e.channel_id),
            Self::MessageCreated(e) => Some(e.channel_id),
            Self::MessageUpdated(e) => Some(e.channel_id),
            Self::MemberJoined(e) => Some(e.channel_id),
            Self::MemberLeft(e) => Some(e.channel_id),
            Self::Ready(_) | Self::ResyncRequired(_) => None,
        }
    }

    /// The `type` tag, as stored in the outbox's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FileUploadComplete(_) => "file_upload_complete",
            Self::FileDeleted(_) => "file_deleted",
            Self::FileUpdated(_) => "file_updated",
            Self::MessageCreated(_) => "message_created",
            Self::MessageUpdated(_) => "message_updated",
            Self::MemberJoined(_) => "member_joined",
            Self::MemberLeft(_) => "member_left",
            Self::Ready(_) => "ready",
            Self::ResyncRequired(_) => "resync_required",
        }
    }

    /// The user who joined or left, for membership events.
    pub fn member(&self) -> Option<i32> {
        match self {
            Self::MemberJoined(e) => Some(e.user_id),
            Self::MemberLeft(e) => Some(e.user_id),
            _ => None,
        }
    }
}

/// A frame as delivered: `{"id", "at", "type", ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stamped {
    /// The outbox id: larger for every event committed later, on any instance.
    pub id: i64,
    /// When the change was committed (for stream frames: when sent).
    pub at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    pub event: Event,
    /// The JSON text, made once however many sockets send it.
    #[serde(skip)]
    json: OnceLock<String>,
}

impl Stamped {
    pub fn new(id: i64, at: chrono::DateTime<chrono::Utc>, event: Event) -> Self {
        Self { id, at, event, json: OnceLock::new() }
    }

    /// `{"id", "at", "type", ...}` as sent on the WebSocket.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| serde_json::to_string(self).expect("events serialise"))
    }
}

/// Fan-out of committed events to every subscriber of this process.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Stamped>>,
    /// Wakes the outbox reader.
    wakes: Arc<Wakes>,
}

/// The outbox reader's wake-up, and what it was woken for since it last read.
#[derive(Default)]
struct Wakes {
    notify: Notify,
    /// Notifications may have been missed: read.
    missed: AtomicBool,
    /// The highest event id known to be committed: read if not delivered yet.
    committed: AtomicI64,
}

impl EventHub {
    /// A hub whose subscribers may lag `capacity` events before losing some.
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity).0, wakes: Arc::default() }
    }

    /// Tells the outbox reader that event `id` was committed, by this
    /// process (delivered at once instead of on the next notification) or by
    /// any (a notification). Ids are handed out in commit order, so it reads
    /// unless it has delivered `id` already: each event is read once though
    /// both its commit and its notification wake the reader.
    pub fn committed(&self, id: i64) {
        self.wakes.committed.fetch_max(id, Ordering::SeqCst);
        self.wakes.notify.notify_one();
    }

    /// Tells the outbox reader that notifications may have been missed (the
    /// LISTEN connection came back): it reads.
    pub fn missed(&self) {
        self.wakes.missed.store(true, Ordering::SeqCst);
        self.wakes.notify.notify_one();
    }

    /// Resolves when events after `delivered` may have been committed:
    /// [`EventHub::committed`] was called with a later id, or
    /// [`EventHub::missed`], since the last time.
    pub async fn woken(&self, delivered: i64) {
        loop {
            self.wakes.notify.notified().await;
            if self.wakes.missed.swap(false, Ordering::SeqCst)
                || self.wakes.committed.load(Ordering::SeqCst) > delivered
            {
                return;
            }
        }
    }

    /// Hands a committed event (read from the outbox) to local subscribers.
    pub fn deliver(&self, stamped: Arc<Stamped>) {
        let _ = self.tx.send(stamped);
    }

    /// Receives every event delivered from now on, in id order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(1024)
    }
}
