//! Entities as CQL cells, so that Cassandra itself resolves concurrent writes field by field.
//!
//! Each field is one element of the row's `fields map<text, blob>` (a map element is its own
//! cell) written `USING TIMESTAMP` = the field's event time in microseconds: a later event wins
//! whatever order the writes arrive in. Cassandra breaks timestamp ties (same millisecond) by
//! comparing cell values as unsigned bytes, the bigger wins, so every value starts with the
//! field's full [`Version`] encoded so that byte order equals version order, then the JSON
//! value. Two writers that blind-write the same key therefore converge on the maximum version,
//! exactly as `merge::apply` would.

use std::collections::BTreeMap;

use super::{Layer, StoreError};
use crate::model::{Entity, Field, Version, time_key};

/// Bytes of the version prefix: event time (sign-flipped), sequence, event hash, big-endian.
pub(crate) const VERSION_BYTES: usize = 24;

/// The `layer` partition-key column: `-1` for the stream, the version for a baseline.
pub(crate) fn layer_key(layer: Layer) -> i64 {
    match layer {
        Layer::Stream => -1,
        Layer::Baseline(v) => v as i64,
    }
}

/// The write timestamp of a streaming field: its event time in microseconds.
pub(crate) fn stream_timestamp(version: &Version) -> i64 {
    version.event_time_ms.saturating_mul(1000)
}

/// The version prefix: byte order equals [`Version`] order.
pub(crate) fn version_bytes(version: &Version) -> [u8; VERSION_BYTES] {
    let mut out = [0_u8; VERSION_BYTES];
    out[..8].copy_from_slice(&time_key(version.event_time_ms));
    out[8..16].copy_from_slice(&version.sequence.to_be_bytes());
    out[16..].copy_from_slice(&version.event_hash.to_be_bytes());
    out
}

/// One field as a cell value: version prefix, then the JSON value.
pub(crate) fn encode_field(field: &Field) -> Result<Vec<u8>, StoreError> {
    let mut out = version_bytes(&field.version).to_vec();
    serde_json::to_writer(&mut out, &field.value).map_err(|e| StoreError::Engine(e.to_string()))?;
    Ok(out)
}

/// The inverse of [`encode_field`].
pub(crate) fn decode_field(table: &str, bytes: &[u8]) -> Result<Field, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        keyspace: table.to_owned(),
        why,
    };
    if bytes.len() < VERSION_BYTES {
        return Err(corrupt(format!("field cell of {} bytes", bytes.len())));
    }
    let word = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
    let version = Version {
        event_time_ms: (word(0) ^ (1 << 63)) as i64,
        sequence: word(8),
        event_hash: word(16),
    };
    let value =
        serde_json::from_slice(&bytes[VERSION_BYTES..]).map_err(|e| corrupt(e.to_string()))?;
    Ok(Field { value, version })
}

/// An entity's fields grouped by version: one write per group, each with its own timestamp.
pub(crate) fn cells_by_version(
    entity: &Entity,
) -> Result<BTreeMap<Version, BTreeMap<String, Vec<u8>>>, StoreError> {
    let mut out: BTreeMap<Version, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (name, field) in &entity.fields {
        out.entry(field.version)
            .or_default()
            .insert(name.clone(), encode_field(field)?);
    }
    Ok(out)
}

/// All of an entity's cells, for one write with one timestamp (baselines).
pub(crate) fn cells(entity: &Entity) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    entity
        .fields
        .iter()
        .map(|(name, field)| Ok((name.clone(), encode_field(field)?)))
        .collect()
}

/// An entity from its stored cells.
pub(crate) fn decode_entity(
    table: &str,
    cells: BTreeMap<String, Vec<u8>>,
) -> Result<Entity, StoreError> {
    let mut entity = Entity::default();
    for (name, bytes) in cells {
        entity.fields.insert(name, decode_field(table, &bytes)?);
    }
    Ok(entity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(t: i64, s: u64, e: u64) -> Version {
        Version {
            event_time_ms: t,
            sequence: s,
            event_hash: e,
        }
    }

    #[test]
    fn byte_order_is_version_order() {
        let versions = [
            v(-5, 9, 9),
            v(-1, 0, 0),
            v(0, 0, 0),
            v(0, 0, 1),
            v(0, 1, 0),
            v(1, 0, u64::MAX),
            v(1_700_000_000_000, 3, 2),
        ];
        for pair in versions.windows(2) {
            let a = encode_field(&Field {
                value: serde_json::json!("zzz"),
                version: pair[0],
            })
            .unwrap();
            let b = encode_field(&Field {
                value: serde_json::json!(0),
                version: pair[1],
            })
            .unwrap();
            assert!(a < b, "{:?} must sort before {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn fields_round_trip() {
        let field = Field {
            value: serde_json::json!({"a": [1, null, "x"]}),
            version: v(-42, 7, 99),
        };
        let bytes = encode_field(&field).unwrap();
        assert_eq!(decode_field("t", &bytes).unwrap(), field);
        assert!(decode_field("t", &bytes[..10]).is_err());
    }
}
