//! The cache-invalidation feed: ingest publishes what changed after each durable commit, the read
//! path invalidates exactly those partitions. In HTTP mode the feed is in-process; in Kafka mode
//! ingest publishes to the change topic (`stream::changes`) that every serve worker hears.

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::model::EntityKey;

/// One change, published after it is durable (serialized on the Kafka change topic).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "key", rename_all = "lowercase")]
pub enum ChangeEvent {
    /// One entity changed.
    Entity(EntityKey),
    /// Everything may have changed (a snapshot was activated or rolled back).
    All,
}

/// Receives change events; the read caches implement it.
pub trait Invalidate: Send + Sync {
    /// Drops cached state for the given changes.
    fn invalidate(&self, events: &[ChangeEvent]);
}

/// Carries change events from ingest to every subscriber.
pub trait ChangeFeed: Send + Sync {
    /// Publishes changes that are already durable.
    fn publish(&self, events: &[ChangeEvent]);
    /// Registers a subscriber for every later event.
    fn subscribe(&self, subscriber: Arc<dyn Invalidate>);
}

/// The in-process feed: synchronous delivery, so a change is invalidated before the write is
/// acknowledged and no event can be lost to a full buffer.
#[derive(Default)]
pub struct InProcessFeed {
    subscribers: RwLock<Vec<Arc<dyn Invalidate>>>,
}

impl ChangeFeed for InProcessFeed {
    fn publish(&self, events: &[ChangeEvent]) {
        for s in self.subscribers.read().iter() {
            s.invalidate(events);
        }
    }

    fn subscribe(&self, subscriber: Arc<dyn Invalidate>) {
        self.subscribers.write().push(subscriber);
    }
}

/// Hands events heard elsewhere (the Kafka change topic) to a local feed's subscribers.
pub struct Relay(pub Arc<dyn ChangeFeed>);

impl Invalidate for Relay {
    fn invalidate(&self, events: &[ChangeEvent]) {
        self.0.publish(events);
    }
}
