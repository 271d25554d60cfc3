//! Single-partition reads: the active baseline merged with the streaming layer, through the data
//! cache. Every lookup names one partition (`product_id` or a catalog id); the product detail
//! reads four entities of the same product partition, never other partitions.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, Invalidation};
use crate::config::CacheTtls;
use crate::merge::merge;
use crate::model::{Class, Entity, EntityKey};
use crate::snapshot::Snapshots;
use crate::store::{Layer, Store, StoreError};

/// Newest price windows looked at when the newest has ended: bounds the scan.
pub const PRICE_SCAN_DEPTH: usize = 16;

/// Reads entities.
pub struct Reader {
    store: Arc<dyn Store>,
    snapshots: Arc<Snapshots>,
    data: Cache<(u64, EntityKey), Option<Arc<Entity>>>,
    invalidation: Arc<Invalidation>,
    ttls: CacheTtls,
}

impl Reader {
    /// A reader with a data cache.
    pub fn new(
        store: Arc<dyn Store>,
        snapshots: Arc<Snapshots>,
        data: Cache<(u64, EntityKey), Option<Arc<Entity>>>,
        invalidation: Arc<Invalidation>,
        ttls: CacheTtls,
    ) -> Self {
        Self {
            store,
            snapshots,
            data,
            invalidation,
            ttls,
        }
    }

    /// The cache TTL of a class: short for prices and stock, long for metadata.
    pub fn ttl(&self, class: Class) -> Duration {
        match class {
            Class::Pricing => self.ttls.pricing,
            Class::Inventory => self.ttls.inventory,
            Class::Fulfillment => self.ttls.fulfillment,
            Class::Product | Class::Category | Class::Brand | Class::Attribute => self.ttls.product,
        }
    }

    /// The current ticket of the shared invalidation state (see `cache`).
    pub fn ticket(&self) -> u64 {
        self.invalidation.ticket()
    }

    /// The active snapshot version.
    pub fn snapshot(&self) -> u64 {
        self.snapshots.active()
    }

    /// One entity, merged over the active baseline; `None` if neither layer has it.
    pub fn entity(&self, key: &EntityKey) -> Result<Option<Arc<Entity>>, StoreError> {
        let version = self.snapshot();
        let cache_key = (version, key.clone());
        if let Some(hit) = self.data.get(&cache_key) {
            return Ok(hit);
        }
        let ticket = self.ticket();
        let stream = self.store.get(Layer::Stream, key)?;
        let base = if version > 0 {
            self.store.get(Layer::Baseline(version), key)?
        } else {
            None
        };
        let merged = match (base, stream) {
            (None, None) => None,
            (Some(e), None) | (None, Some(e)) => Some(Arc::new(e)),
            (Some(mut b), Some(s)) => {
                merge(&mut b, &s);
                Some(Arc::new(b))
            }
        };
        self.data.insert(
            cache_key,
            merged.clone(),
            self.ttl(key.class),
            &key.id,
            ticket,
        );
        Ok(merged)
    }

    /// The price in effect at `at_ms`: the newest window with `valid_from <= at` whose
    /// `valid_to` (if any) is after `at`, looking at most [`PRICE_SCAN_DEPTH`] windows back.
    pub fn price_at(
        &self,
        product_id: &str,
        at_ms: i64,
    ) -> Result<Option<(EntityKey, Entity)>, StoreError> {
        let version = self.snapshot();
        let mut windows =
            self.store
                .prices_at(Layer::Stream, product_id, at_ms, PRICE_SCAN_DEPTH)?;
        if version > 0 {
            for (key, base) in self.store.prices_at(
                Layer::Baseline(version),
                product_id,
                at_ms,
                PRICE_SCAN_DEPTH,
            )? {
                match windows.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, stream)) => {
                        let mut merged = base;
                        merge(&mut merged, stream);
                        *stream = merged;
                    }
                    None => windows.push((key, base)),
                }
            }
        }
        windows.sort_by(|a, b| b.0.sub.cmp(&a.0.sub));
        Ok(windows.into_iter().take(PRICE_SCAN_DEPTH).find(|(_, e)| {
            e.get("valid_to")
                .and_then(serde_json::Value::as_i64)
                .is_none_or(|to| to > at_ms)
        }))
    }
}

/// The end of a price window, if it has one: responses must not be cached past it.
pub fn valid_to(entity: &Entity) -> Option<i64> {
    entity.get("valid_to").and_then(serde_json::Value::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheCounters;
    use crate::feed::InProcessFeed;
    use crate::metrics::Metrics;
    use crate::model::{SubKey, Update, Version};
    use crate::snapshot::InterruptedLoads;
    use crate::store::WriteSet;
    use crate::store::embedded::EmbeddedStore;
    use prometheus_client::metrics::counter::Counter;

    fn price(from: i64, to: Option<i64>, amount: f64) -> (EntityKey, Entity) {
        let key = EntityKey {
            class: Class::Pricing,
            id: "P1".into(),
            sub: Some(SubKey::Time(from)),
        };
        let mut payload = std::collections::BTreeMap::new();
        payload.insert("amount".to_string(), serde_json::json!(amount));
        if let Some(to) = to {
            payload.insert("valid_to".to_string(), serde_json::json!(to));
        }
        let mut entity = Entity::default();
        crate::merge::apply(
            &mut entity,
            &Update {
                event_id: format!("p{from}"),
                key: key.clone(),
                version: Version {
                    event_time_ms: 1,
                    sequence: 0,
                    event_hash: 0,
                },
                payload,
                non_critical: false,
            },
        );
        (key, entity)
    }

    #[test]
    fn price_in_effect_skips_windows_that_ended() {
        let dir = std::env::temp_dir().join(format!("tailwarden-reader-{}", fastrand::u64(..)));
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir, 1 << 20).unwrap());
        let mut set = WriteSet::default();
        // A base price from t=100, a promotion [200, 300), a future price from 1000.
        for (k, e) in [
            price(100, None, 10.0),
            price(200, Some(300), 7.0),
            price(1000, None, 12.0),
        ] {
            set.entities.push((Layer::Stream, k, e));
        }
        store.commit(&set).unwrap();
        let metrics = Arc::new(Metrics::new());
        let snapshots = Arc::new(
            Snapshots::open(
                store.clone(),
                Arc::new(InProcessFeed::default()),
                metrics,
                InterruptedLoads::Discard,
            )
            .unwrap(),
        );
        let inv = Arc::new(Invalidation::new(Counter::default()));
        let reader = Reader::new(
            store,
            snapshots,
            Cache::new(10, inv.clone(), CacheCounters::default()),
            inv,
            CacheTtls::default(),
        );
        let amount_at = |t| {
            reader
                .price_at("P1", t)
                .unwrap()
                .and_then(|(_, e)| e.get("amount").cloned())
        };
        assert_eq!(amount_at(50), None, "no price before the first window");
        assert_eq!(amount_at(150), Some(serde_json::json!(10.0)));
        assert_eq!(
            amount_at(250),
            Some(serde_json::json!(7.0)),
            "promotion in effect"
        );
        assert_eq!(
            amount_at(300),
            Some(serde_json::json!(10.0)),
            "valid_to is exclusive"
        );
        assert_eq!(amount_at(5000), Some(serde_json::json!(12.0)));
        let _ = std::fs::remove_dir_all(dir);
    }
}
