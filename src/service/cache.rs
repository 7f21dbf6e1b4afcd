//! Short-lived read cache for the download path: channel membership and file
//! metadata. Writes in this process invalidate entries at once; writes made by
//! another broker instance are seen within READ_CACHE_TTL_MS.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::entity::file_upload;

/// A map whose entries expire.
struct Ttl<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
}

impl<K: Eq + Hash, V: Clone> Ttl<K, V> {
    fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().expect("cache lock");
        entries.get(key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        if !self.ttl.is_zero() {
            self.entries.lock().expect("cache lock").insert(key, (value, Instant::now()));
        }
    }

    fn forget(&self, key: &K) {
        self.entries.lock().expect("cache lock").remove(key);
    }

    fn evict_expired(&self) {
        self.entries.lock().expect("cache lock").retain(|_, (_, at)| at.elapsed() < self.ttl);
    }

    fn len(&self) -> usize {
        self.entries.lock().expect("cache lock").len()
    }
}

/// Membership by (channel, user) and live files by id.
pub struct ReadCache {
    members: Ttl<(i32, i32), bool>,
    files: Ttl<i32, file_upload::Model>,
}

impl ReadCache {
    /// A cache whose entries live `ttl` (zero: caching off).
    pub fn new(ttl: Duration) -> Self {
        Self { members: Ttl::new(ttl), files: Ttl::new(ttl) }
    }

    pub fn membership(&self, channel_id: i32, user_id: i32) -> Option<bool> {
        self.members.get(&(channel_id, user_id))
    }

    pub fn set_membership(&self, channel_id: i32, user_id: i32, member: bool) {
        self.members.put((channel_id, user_id), member);
    }

    /// Call after a membership changes.
    pub fn forget_membership(&self, channel_id: i32, user_id: i32) {
        self.members.forget(&(channel_id, user_id));
    }

    pub fn file(&self, id: i32) -> Option<file_upload::Model> {
        self.files.get(&id)
    }

    pub fn put_file(&self, file: file_upload::Model) {
        self.files.put(file.id, file);
    }

    /// Call after a file changes (deleted).
    pub fn forget_file(&self, id: i32) {
        self.files.forget(&id);
    }

    /// Drops expired entries, bounding memory (run on a timer).
    pub fn evict_expired(&self) {
        self.members.evict_expired();
        self.files.evict_expired();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.members.len() + self.files.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
