//! The in-process event hub: use cases publish channel-scoped events, the
//! WebSocket endpoint (and tests) subscribe.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::wire::{FileInfo, MessageInfo};

/// Something that happened in a channel. Serialised as `{"type": ..., "channel_id": ..., ...}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
}

impl Event {
    /// The channel whose members may see this event.
    pub fn channel_id(&self) -> i32 {
        match self {
            Self::FileUploadComplete { channel_id, .. }
            | Self::FileDeleted { channel_id, .. }
            | Self::MessageCreated { channel_id, .. }
            | Self::MessageUpdated { channel_id, .. } => *channel_id,
        }
    }
}

/// Fan-out of events to every subscriber of this process.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventHub {
    /// A hub whose subscribers may lag `capacity` events before losing some.
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity).0 }
    }

    /// Publishes an event; having no subscriber is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(1024)
    }
}
