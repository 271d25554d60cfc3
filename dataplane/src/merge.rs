//! Last-writer-wins merging, per field.
//!
//! Each field keeps the version of the event that wrote it and a write wins only with a strictly
//! greater version. Per-field registers form a join semilattice, so applying any permutation of
//! any multiset of the same events yields the same entity: duplicates and reordering are harmless,
//! and a partial update never resurrects or erases fields it does not mention.

use std::collections::BTreeMap;

use crate::model::{Entity, EntityKey, Field, Update};

/// What applying one update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// At least one field took the update's value.
    Changed,
    /// Every field it sets already holds a newer (or the same) write.
    Stale,
}

/// Applies one update to an entity.
pub fn apply(entity: &mut Entity, update: &Update) -> Applied {
    let mut applied = Applied::Stale;
    for (name, value) in &update.payload {
        match entity.fields.get_mut(name) {
            Some(field) if field.version < update.version => {
                field.value = value.clone();
                field.version = update.version;
                applied = Applied::Changed;
            }
            Some(_) => {}
            None => {
                entity.fields.insert(
                    name.clone(),
                    Field {
                        value: value.clone(),
                        version: update.version,
                    },
                );
                applied = Applied::Changed;
            }
        }
    }
    applied
}

/// Merges `newer` into `base` field by field; used to lay streaming updates over a snapshot.
pub fn merge(base: &mut Entity, overlay: &Entity) {
    for (name, field) in &overlay.fields {
        let wins = base
            .fields
            .get(name)
            .is_none_or(|f| f.version < field.version);
        if wins {
            base.fields.insert(name.clone(), field.clone());
        }
    }
}

/// Coalesces a batch into one new state per key: the write-amplification control of the write
/// path. `current` gives the stored state of a key; each key is read once and written once,
/// however many updates it received. Returns the states and, per update in input order, what
/// applying it did.
pub fn coalesce<'a>(
    updates: impl IntoIterator<Item = &'a Update>,
    mut current: impl FnMut(&EntityKey) -> Entity,
) -> (BTreeMap<EntityKey, Entity>, Vec<Applied>) {
    let mut states: BTreeMap<EntityKey, Entity> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for update in updates {
        // Look up before inserting: most updates hit a key already in the batch, and the
        // entry API would clone the key every time.
        let entity = match states.get_mut(&update.key) {
            Some(e) => e,
            None => states
                .entry(update.key.clone())
                .or_insert_with_key(|key| current(key)),
        };
        outcomes.push(apply(entity, update));
    }
    (states, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Class, Version};
    use proptest::prelude::*;

    fn update(id: &str, field: &str, value: i64, t: i64, seq: u64) -> Update {
        Update {
            event_id: format!("{id}-{t}-{seq}-{field}-{value}"),
            key: EntityKey {
                class: Class::Inventory,
                id: id.into(),
                sub: None,
            },
            version: Version {
                event_time_ms: t,
                sequence: seq,
                event_hash: crate::model::event_hash(&format!("{id}-{t}-{seq}-{field}-{value}")),
            },
            payload: [(field.to_string(), serde_json::json!(value))].into(),
            non_critical: false,
        }
    }

    #[test]
    fn older_event_never_overwrites_newer() {
        let mut e = Entity::default();
        assert_eq!(apply(&mut e, &update("p", "q", 2, 20, 0)), Applied::Changed);
        assert_eq!(apply(&mut e, &update("p", "q", 1, 10, 0)), Applied::Stale);
        assert_eq!(e.get("q"), Some(&serde_json::json!(2)));
    }

    #[test]
    fn sequence_breaks_event_time_ties() {
        let mut e = Entity::default();
        apply(&mut e, &update("p", "q", 2, 10, 5));
        assert_eq!(apply(&mut e, &update("p", "q", 1, 10, 4)), Applied::Stale);
        assert_eq!(e.get("q"), Some(&serde_json::json!(2)));
    }

    #[test]
    fn partial_updates_keep_other_fields() {
        let mut e = Entity::default();
        apply(&mut e, &update("p", "a", 1, 20, 0));
        apply(&mut e, &update("p", "b", 2, 10, 0));
        assert_eq!(e.get("a"), Some(&serde_json::json!(1)));
        assert_eq!(e.get("b"), Some(&serde_json::json!(2)));
    }

    fn arb_updates() -> impl Strategy<Value = Vec<Update>> {
        prop::collection::vec((0..3u8, 0..3u8, 0..100i64, 0..5i64, 0..3u64), 1..40).prop_map(|v| {
            v.into_iter()
                .map(|(k, f, val, t, s)| update(&format!("p{k}"), &format!("f{f}"), val, t, s))
                .collect()
        })
    }

    fn final_state(updates: &[Update]) -> BTreeMap<EntityKey, Entity> {
        let mut states: BTreeMap<EntityKey, Entity> = BTreeMap::new();
        for u in updates {
            apply(states.entry(u.key.clone()).or_default(), u);
        }
        states
    }

    proptest! {
        #[test]
        fn any_permutation_with_duplicates_gives_the_same_state(
            updates in arb_updates(),
            seed in any::<u64>(),
            dups in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let expected = final_state(&updates);
            let mut shuffled = updates.clone();
            for d in &dups {
                shuffled.push(d.get(&updates).clone());
            }
            let mut rng = fastrand::Rng::with_seed(seed);
            rng.shuffle(&mut shuffled);
            prop_assert_eq!(final_state(&shuffled), expected);
        }

        #[test]
        fn coalescing_never_changes_the_result(
            updates in arb_updates(),
            split in any::<prop::sample::Index>(),
        ) {
            let expected = final_state(&updates);
            // Coalesce in two batches, each reading the state the previous batch left behind.
            let cut = split.index(updates.len() + 1);
            let (first, _) = coalesce(&updates[..cut], |_| Entity::default());
            let (second, _) = coalesce(&updates[cut..], |k| first.get(k).cloned().unwrap_or_default());
            let mut combined = first.clone();
            combined.extend(second);
            prop_assert_eq!(combined, expected);
        }

        #[test]
        fn merge_of_overlay_is_order_independent(updates in arb_updates(), cut in any::<prop::sample::Index>()) {
            let expected = final_state(&updates);
            let cut = cut.index(updates.len() + 1);
            let mut base = final_state(&updates[..cut]);
            for (k, e) in final_state(&updates[cut..]) {
                merge(base.entry(k).or_default(), &e);
            }
            prop_assert_eq!(base, expected);
        }
    }
}
