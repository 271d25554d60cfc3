//! The data model of the paper's Table 4.3 plus the baseline catalog classes.
//!
//! Every class is partitioned by one id (`product_id` for the four operational classes), so a
//! read never leaves one partition. Entities are maps of fields; each field carries the version
//! of the event that last wrote it, which is what makes merging order-independent (see `merge`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A data class: one keyspace, one cache TTL, one label value in metrics.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Product metadata, by `product_id`.
    Product,
    /// Prices, by `product_id` + `valid_from`.
    Pricing,
    /// Inventory, by `product_id` + `location`.
    Inventory,
    /// Fulfillment options, by `product_id` + `region`.
    Fulfillment,
    /// Category hierarchy, by `category_id`.
    Category,
    /// Brands, by `brand_id`.
    Brand,
    /// Attribute metadata, by `attribute_id`.
    Attribute,
}

impl Class {
    /// Every class, in dependency order: referenced classes first.
    pub const ALL: [Class; 7] = [
        Class::Category,
        Class::Brand,
        Class::Attribute,
        Class::Product,
        Class::Pricing,
        Class::Inventory,
        Class::Fulfillment,
    ];

    /// The name used in records, keyspaces and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Product => "product",
            Class::Pricing => "pricing",
            Class::Inventory => "inventory",
            Class::Fulfillment => "fulfillment",
            Class::Category => "category",
            Class::Brand => "brand",
            Class::Attribute => "attribute",
        }
    }

    /// Parses a class name as written in records.
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The key fields, in key order. The first is the partition key.
    pub fn key_fields(self) -> &'static [&'static str] {
        match self {
            Class::Product => &["product_id"],
            Class::Pricing => &["product_id", "valid_from"],
            Class::Inventory => &["product_id", "location"],
            Class::Fulfillment => &["product_id", "region"],
            Class::Category => &["category_id"],
            Class::Brand => &["brand_id"],
            Class::Attribute => &["attribute_id"],
        }
    }

    /// Snapshot loading order: a class is loaded after the classes it references.
    pub fn rank(self) -> u8 {
        match self {
            Class::Category | Class::Brand | Class::Attribute => 0,
            Class::Product => 1,
            Class::Pricing | Class::Inventory | Class::Fulfillment => 2,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of one entity: class plus its normalised key parts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey {
    /// The class.
    pub class: Class,
    /// The partition id (`product_id`, `category_id`, ...).
    pub id: String,
    /// The clustering part: location, region, or `valid_from` in epoch milliseconds.
    pub sub: Option<SubKey>,
}

/// The clustering part of a key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(untagged)]
pub enum SubKey {
    /// `valid_from` of a price, epoch milliseconds.
    Time(i64),
    /// A location or region code.
    Code(String),
}

/// Separates key parts in stored keys; ids never contain it (see `schema::valid_id`).
const KEY_SEPARATOR: u8 = 0;

impl EntityKey {
    /// The bytes under which the entity is stored in its class's keyspace. Prices sort by
    /// `valid_from` inside their product, which makes "price in effect at t" a short reverse scan.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.id.len() + 17);
        out.extend_from_slice(self.id.as_bytes());
        match &self.sub {
            None => {}
            Some(SubKey::Time(t)) => {
                out.push(KEY_SEPARATOR);
                out.extend_from_slice(&time_key(*t));
            }
            Some(SubKey::Code(code)) => {
                out.push(KEY_SEPARATOR);
                out.extend_from_slice(code.as_bytes());
            }
        }
        out
    }

    /// The stored-key prefix of everything of this class in partition `id`.
    pub fn partition_prefix(id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(id.len() + 1);
        out.extend_from_slice(id.as_bytes());
        out.push(KEY_SEPARATOR);
        out
    }
}

/// Big-endian, sign-flipped encoding so byte order equals numeric order for negative times too.
pub fn time_key(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The partition of an id among `partitions`: same id, same partition, in every process.
pub fn partition_of(id: &str, partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// Total order of writes: event time, then source sequence, then event id hash as a
/// deterministic tie-break so that two distinct events never compare equal.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Event time, epoch milliseconds.
    #[serde(rename = "t")]
    pub event_time_ms: i64,
    /// Source sequence number.
    #[serde(rename = "s")]
    pub sequence: u64,
    /// Hash of the event id.
    #[serde(rename = "e")]
    pub event_hash: u64,
}

/// One field's value and the version that wrote it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Field {
    /// The value; `null` clears the field but keeps its version, so older writes stay beaten.
    #[serde(rename = "v")]
    pub value: serde_json::Value,
    /// Who wrote it.
    #[serde(rename = "w")]
    pub version: Version,
}

/// The stored state of one entity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Entity {
    /// Fields by name.
    #[serde(rename = "f")]
    pub fields: BTreeMap<String, Field>,
}

impl Entity {
    /// The newest version among the fields.
    pub fn version(&self) -> Option<Version> {
        self.fields.values().map(|f| f.version).max()
    }

    /// The value of a field, if set and not cleared.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.fields
            .get(name)
            .map(|f| &f.value)
            .filter(|v| !v.is_null())
    }

    /// The client-facing JSON: key parts, non-null fields and the event time of the newest write.
    pub fn to_json(&self, key: &EntityKey) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let names = key.class.key_fields();
        out.insert(names[0].into(), key.id.clone().into());
        match &key.sub {
            Some(SubKey::Time(t)) => {
                out.insert(names[1].into(), format_time(*t).into());
            }
            Some(SubKey::Code(c)) => {
                out.insert(names[1].into(), c.clone().into());
            }
            None => {}
        }
        for (name, field) in &self.fields {
            match (&field.value, name.as_str()) {
                (serde_json::Value::Null, _) => {}
                // Times are stored as epoch milliseconds and shown as RFC 3339.
                (serde_json::Value::Number(n), "valid_to") if n.is_i64() => {
                    out.insert(
                        name.clone(),
                        format_time(n.as_i64().unwrap_or_default()).into(),
                    );
                }
                (value, _) => {
                    out.insert(name.clone(), value.clone());
                }
            }
        }
        if let Some(v) = self.version() {
            out.insert("updated_at".into(), format_time(v.event_time_ms).into());
        }
        serde_json::Value::Object(out)
    }
}

/// A validated, normalised update: the unit the write path works on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Update {
    /// The upstream event id, verbatim.
    pub event_id: String,
    /// What it writes.
    pub key: EntityKey,
    /// Its place in the total order of writes.
    pub version: Version,
    /// The fields it sets (partial updates set only some).
    pub payload: BTreeMap<String, serde_json::Value>,
    /// Enrichment or auxiliary attributes only: deferred while `pauseNonCritical` is on.
    pub non_critical: bool,
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The stable hash of an event id, used for dedup and tie-breaks.
pub fn event_hash(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_numerically() {
        let times = [-5_i64, -1, 0, 1, 1_700_000_000_000];
        for pair in times.windows(2) {
            assert!(time_key(pair[0]) < time_key(pair[1]));
        }
    }

    #[test]
    fn class_names_round_trip() {
        for class in Class::ALL {
            assert_eq!(Class::parse(class.as_str()), Some(class));
        }
        assert_eq!(Class::parse("promotion"), None);
    }
}
