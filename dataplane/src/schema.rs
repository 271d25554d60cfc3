//! The ingest boundary: parses one record, upgrades old schema versions, validates every field
//! and normalises values. Errors name the offending field so a producer can fix its record.
//!
//! Unknown-field policy (documented in docs/dataplane.md):
//! - unknown *envelope* keys are ignored and counted, so a newer producer does not break an
//!   older worker;
//! - unknown *payload* keys are kept verbatim (additive fields survive a worker that does not
//!   know them yet) and counted;
//! - a `schema_version` above [`CURRENT_SCHEMA_VERSION`] is rejected: its meaning is unknown.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::currency;
use crate::model::{Class, EntityKey, SubKey, Update, Version, event_hash};

/// The schema version this worker writes. Older versions are upgraded on entry.
pub const CURRENT_SCHEMA_VERSION: u64 = 2;
/// Longest id or code accepted.
const MAX_ID_LEN: usize = 128;
/// Longest free-text field accepted.
const MAX_TEXT_LEN: usize = 4096;
/// Largest price or weight accepted; beyond it a number is an upstream bug.
const MAX_AMOUNT: f64 = 1e12;
/// Largest quantity accepted.
const MAX_QUANTITY: i64 = 1_000_000_000_000;

/// Why one record was rejected, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct RecordError {
    /// Dotted path of the field, e.g. `payload.currency`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// The record's class when it could be read; for metrics.
    pub class: Option<Class>,
}

/// How records are being read.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Streaming updates: the envelope (event id, time, sequence) is required.
    Stream,
    /// Baseline snapshot records: the envelope is optional; every field is versioned at the
    /// snapshot's `as_of` time so that later streaming updates win and earlier ones lose.
    Snapshot {
        /// Snapshot version.
        version: u64,
        /// Snapshot time, epoch milliseconds.
        as_of_ms: i64,
        /// Line number in the snapshot file, for the synthetic event id.
        line: u64,
    },
}

/// A parsed record.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The normalised update.
    pub update: Update,
    /// How many unknown keys the record carried (envelope and payload).
    pub unknown_fields: u32,
}

/// Parses one record from JSON text.
pub fn parse_record(text: &[u8], mode: Mode) -> Result<Parsed, RecordError> {
    let text = std::str::from_utf8(text).map_err(|e| RecordError {
        field: "<record>".into(),
        message: format!("not valid UTF-8 ({e})"),
        class: None,
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| RecordError {
        field: "<record>".into(),
        message: format!("malformed JSON: {e}"),
        class: None,
    })?;
    parse_value(value, mode)
}

/// Parses one record that is already JSON.
pub fn parse_value(value: Value, mode: Mode) -> Result<Parsed, RecordError> {
    let Value::Object(mut record) = value else {
        return Err(err(None, "<record>", "must be a JSON object"));
    };
    let class_name = take_str(&mut record, None, "class", true)?.unwrap_or_default();
    let class = Class::parse(&class_name.to_ascii_lowercase()).ok_or_else(|| {
        let names: Vec<_> = Class::ALL.iter().map(|c| c.as_str()).collect();
        err(
            None,
            "class",
            &format!("{class_name:?} is not one of {}", names.join(", ")),
        )
    })?;
    let c = Some(class);
    let schema_version = match record.remove("schema_version") {
        None => return Err(err(c, "schema_version", "is required")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| err(c, "schema_version", "must be a positive integer"))?,
    };
    if !(1..=CURRENT_SCHEMA_VERSION).contains(&schema_version) {
        return Err(err(
            c,
            "schema_version",
            &format!(
                "{schema_version} is not supported (this worker reads 1..={CURRENT_SCHEMA_VERSION})"
            ),
        ));
    }
    if schema_version == 1 {
        upgrade_v1(class, &mut record);
    }
    let stream = matches!(mode, Mode::Stream);
    let event_id = take_str(&mut record, c, "event_id", stream)?;
    let event_time = record.remove("event_time");
    let sequence = record.remove("sequence");
    let version = match mode {
        Mode::Stream => {
            let event_id = event_id.as_deref().unwrap_or_default();
            if event_id.is_empty() || event_id.len() > 256 {
                return Err(err(c, "event_id", "must be 1 to 256 characters"));
            }
            let event_time_ms = match event_time {
                None => return Err(err(c, "event_time", "is required")),
                Some(v) => parse_time(&v).map_err(|m| err(c, "event_time", &m))?,
            };
            let sequence = match sequence {
                None => return Err(err(c, "sequence", "is required")),
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| err(c, "sequence", "must be an integer from 0 to 2^64-1"))?,
            };
            Version {
                event_time_ms,
                sequence,
                event_hash: event_hash(event_id),
            }
        }
        Mode::Snapshot {
            version,
            as_of_ms,
            line,
        } => Version {
            event_time_ms: as_of_ms,
            sequence: 0,
            event_hash: event_hash(&snapshot_event_id(version, line)),
        },
    };
    let event_id = match mode {
        Mode::Stream => event_id.unwrap_or_default(),
        Mode::Snapshot { version, line, .. } => snapshot_event_id(version, line),
    };
    let key = match record.remove("key") {
        Some(Value::Object(key)) => parse_key(class, key)?,
        Some(_) => return Err(err(c, "key", "must be an object")),
        None => return Err(err(c, "key", "is required")),
    };
    let payload = match record.remove("payload") {
        Some(Value::Object(p)) if !p.is_empty() => p,
        Some(Value::Object(_)) => return Err(err(c, "payload", "must set at least one field")),
        Some(_) => return Err(err(c, "payload", "must be an object")),
        None => return Err(err(c, "payload", "is required")),
    };
    let mut unknown_fields = record.len() as u32;
    let payload = validate_payload(&key, payload, &mut unknown_fields)?;
    let non_critical = payload.keys().all(|f| is_non_critical(class, f));
    Ok(Parsed {
        update: Update {
            event_id,
            key,
            version,
            payload,
            non_critical,
        },
        unknown_fields,
    })
}

/// The synthetic event id of a snapshot record, stable across reloads of the same version.
fn snapshot_event_id(version: u64, line: u64) -> String {
    format!("snapshot:{version}:{line}")
}

/// Schema 1 called the sequence `version`, the price `price` and the quantity `qty`.
fn upgrade_v1(class: Class, record: &mut Map<String, Value>) {
    if let Some(v) = record.remove("version") {
        record.entry("sequence").or_insert(v);
    }
    let rename = match class {
        Class::Pricing => Some(("price", "amount")),
        Class::Inventory => Some(("qty", "quantity")),
        _ => None,
    };
    if let (Some((old, new)), Some(Value::Object(payload))) = (rename, record.get_mut("payload"))
        && let Some(v) = payload.remove(old)
    {
        payload.entry(new).or_insert(v);
    }
}

/// Enrichment and auxiliary attributes: the work `pauseNonCritical` defers.
pub fn is_non_critical(class: Class, field: &str) -> bool {
    match class {
        Class::Attribute => true,
        Class::Product => matches!(field, "attributes" | "enrichment" | "description"),
        _ => false,
    }
}

fn parse_key(class: Class, mut key: Map<String, Value>) -> Result<EntityKey, RecordError> {
    let c = Some(class);
    let names = class.key_fields();
    let id_field = format!("key.{}", names[0]);
    let id = match key.remove(names[0]) {
        Some(Value::String(s)) => normalise_id(&s, false).map_err(|m| err(c, &id_field, &m))?,
        Some(_) => return Err(err(c, &id_field, "must be a string")),
        None => return Err(err(c, &id_field, "is required")),
    };
    let sub = match names.get(1) {
        None => None,
        Some(&name) => {
            let field = format!("key.{name}");
            let v = key
                .remove(name)
                .ok_or_else(|| err(c, &field, "is required"))?;
            Some(if class == Class::Pricing {
                SubKey::Time(parse_time(&v).map_err(|m| err(c, &field, &m))?)
            } else {
                let s = v
                    .as_str()
                    .ok_or_else(|| err(c, &field, "must be a string"))?;
                SubKey::Code(normalise_id(s, true).map_err(|m| err(c, &field, &m))?)
            })
        }
    };
    if let Some(extra) = key.keys().next() {
        return Err(err(
            c,
            &format!("key.{extra}"),
            "is not part of this class's key",
        ));
    }
    Ok(EntityKey { class, id, sub })
}

/// Trims an id and checks its characters; codes (locations, regions) are upper-cased.
pub fn normalise_id(raw: &str, upper: bool) -> Result<String, String> {
    let s = raw.trim();
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(format!("must be 1 to {MAX_ID_LEN} characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err("may contain only letters, digits and - _ . :".into());
    }
    Ok(if upper {
        s.to_ascii_uppercase()
    } else {
        s.to_owned()
    })
}

/// RFC 3339 text or epoch milliseconds.
pub fn parse_time(v: &Value) -> Result<i64, String> {
    match v {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})")),
        Value::Number(n) => n
            .as_i64()
            .filter(|ms| (0..=253_402_300_799_999).contains(ms))
            .ok_or_else(|| format!("{n} is not epoch milliseconds between 1970 and 9999")),
        _ => Err("must be an RFC 3339 string or epoch milliseconds".into()),
    }
}

fn validate_payload(
    key: &EntityKey,
    payload: Map<String, Value>,
    unknown: &mut u32,
) -> Result<BTreeMap<String, Value>, RecordError> {
    let class = key.class;
    let mut out = BTreeMap::new();
    for (name, value) in payload {
        // `null` clears a field (a partial update can unset what it names).
        if value.is_null() {
            out.insert(name, Value::Null);
            continue;
        }
        match validate_field(key, &name, value, unknown) {
            Ok((None, value)) => {
                out.insert(name, value);
            }
            Ok((Some(renamed), value)) => {
                out.insert(renamed.to_owned(), value);
            }
            Err(m) => return Err(err(Some(class), &format!("payload.{name}"), &m)),
        }
    }
    Ok(out)
}

/// Validates and normalises one known field; returns a new name when normalisation renames it.
fn validate_field(
    key: &EntityKey,
    name: &str,
    value: Value,
    unknown: &mut u32,
) -> Result<(Option<&'static str>, Value), String> {
    let class = key.class;
    let same = |v: Result<Value, String>| v.map(|v| (None, v));
    match (class, name) {
        (_, "name") => same(text(value)),
        (Class::Product, "description") => same(text(value)),
        (Class::Product, "brand_id" | "category_id") | (Class::Category, "parent_id") => {
            same(id(value, false))
        }
        (Class::Product, "status") => same(one_of(
            value,
            &["active", "inactive", "discontinued", "draft"],
        )),
        (Class::Product, "attributes" | "enrichment") if value.is_object() => Ok((None, value)),
        (Class::Product, "attributes" | "enrichment") => Err("must be an object".into()),
        (Class::Product, "weight") => weight(value).map(|v| (Some("weight_grams"), v)),
        (Class::Product, "weight_grams") => same(amount(value)),
        (Class::Pricing | Class::Fulfillment, "amount" | "cost") => same(amount(value)),
        (Class::Pricing | Class::Fulfillment, "currency") => value
            .as_str()
            .and_then(currency::normalise)
            .map(|code| (None, Value::String(code)))
            .ok_or_else(|| "must be an ISO 4217 currency code".into()),
        (Class::Pricing, "valid_to") => {
            let t = parse_time(&value)?;
            if let Some(SubKey::Time(from)) = key.sub
                && t <= from
            {
                return Err("must be after key.valid_from".into());
            }
            Ok((None, Value::from(t)))
        }
        (Class::Inventory, "quantity" | "reserved") => same(quantity(value)),
        (Class::Inventory, "unit") => same(unit(value)),
        (Class::Fulfillment, "available") if value.is_boolean() => Ok((None, value)),
        (Class::Fulfillment, "available") => Err("must be true or false".into()),
        (Class::Fulfillment, "methods") => same(methods(value)),
        (Class::Fulfillment, "eta_days") => value
            .as_u64()
            .filter(|d| *d <= 365)
            .map(|d| (None, Value::from(d)))
            .ok_or_else(|| "must be an integer from 0 to 365".into()),
        (Class::Attribute, "data_type") => {
            same(one_of(value, &["string", "number", "boolean", "enum"]))
        }
        (Class::Attribute, "unit") => same(text(value)),
        (Class::Attribute, "allowed_values") => {
            if value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string))
            {
                Ok((None, value))
            } else {
                Err("must be an array of strings".into())
            }
        }
        _ => {
            *unknown += 1;
            Ok((None, value))
        }
    }
}

fn err(class: Option<Class>, field: &str, message: &str) -> RecordError {
    RecordError {
        field: field.into(),
        message: message.into(),
        class,
    }
}

fn take_str(
    record: &mut Map<String, Value>,
    class: Option<Class>,
    field: &str,
    required: bool,
) -> Result<Option<String>, RecordError> {
    match record.remove(field) {
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(err(class, field, "must be a string")),
        None if required => Err(err(class, field, "is required")),
        None => Ok(None),
    }
}

fn text(v: Value) -> Result<Value, String> {
    match v {
        Value::String(s) if s.trim().len() <= MAX_TEXT_LEN => {
            Ok(Value::String(s.trim().to_owned()))
        }
        Value::String(_) => Err(format!("must be at most {MAX_TEXT_LEN} bytes")),
        _ => Err("must be a string".into()),
    }
}

fn id(v: Value, upper: bool) -> Result<Value, String> {
    let s = v.as_str().ok_or("must be a string")?;
    normalise_id(s, upper).map(Value::String)
}

fn one_of(v: Value, allowed: &[&str]) -> Result<Value, String> {
    let s = v
        .as_str()
        .ok_or("must be a string")?
        .trim()
        .to_ascii_lowercase();
    if allowed.contains(&s.as_str()) {
        Ok(Value::String(s))
    } else {
        Err(format!("{s:?} is not one of {}", allowed.join(", ")))
    }
}

/// A non-negative decimal, as a JSON number or a decimal string such as `"19.99"`.
fn amount(v: Value) -> Result<Value, String> {
    let x = match &v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or("must be a number")?;
    if !x.is_finite() || !(0.0..=MAX_AMOUNT).contains(&x) {
        return Err(format!("must be between 0 and {MAX_AMOUNT}"));
    }
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| "must be a finite number".into())
}

fn quantity(v: Value) -> Result<Value, String> {
    v.as_i64()
        .filter(|q| (0..=MAX_QUANTITY).contains(q))
        .map(Value::from)
        .ok_or_else(|| format!("must be an integer from 0 to {MAX_QUANTITY}"))
}

/// Inventory units, normalised to one spelling each.
fn unit(v: Value) -> Result<Value, String> {
    let s = v
        .as_str()
        .ok_or("must be a string")?
        .trim()
        .to_ascii_lowercase();
    let canonical = match s.as_str() {
        "each" | "ea" | "pc" | "pcs" | "piece" | "pieces" | "unit" | "units" => "each",
        "case" | "cs" | "cases" => "case",
        "pallet" | "plt" | "pallets" => "pallet",
        "kg" | "kilogram" | "kilograms" => "kg",
        "m" | "meter" | "meters" | "metre" | "metres" => "m",
        "l" | "liter" | "liters" | "litre" | "litres" => "l",
        other => {
            return Err(format!(
                "{other:?} is not a known unit (each, case, pallet, kg, m, l)"
            ));
        }
    };
    Ok(Value::String(canonical.into()))
}

/// `{"value": 2.5, "unit": "lb"}` normalised to grams.
fn weight(v: Value) -> Result<Value, String> {
    let obj = v.as_object().ok_or("must be an object {value, unit}")?;
    let value = obj
        .get("value")
        .and_then(Value::as_f64)
        .ok_or("value must be a number")?;
    let unit = obj
        .get("unit")
        .and_then(Value::as_str)
        .ok_or("unit must be a string")?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "g" => 1.0,
        "kg" => 1000.0,
        "lb" | "lbs" => 453.592_37,
        "oz" => 28.349_523_125,
        other => return Err(format!("unit {other:?} is not one of g, kg, lb, oz")),
    };
    amount(Value::from((value * factor * 1000.0).round() / 1000.0))
}

fn methods(v: Value) -> Result<Value, String> {
    let items = v.as_array().ok_or("must be an array")?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(one_of(item.clone(), &["ship", "pickup", "delivery"])?);
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Parsed, RecordError> {
        parse_value(v, Mode::Stream)
    }

    fn price(payload: Value) -> Value {
        json!({"event_id": "e1", "class": "pricing", "schema_version": 2,
               "key": {"product_id": " P1 ", "valid_from": "2026-01-01T00:00:00Z"},
               "event_time": "2026-11-23T10:00:00Z", "sequence": 7, "payload": payload})
    }

    #[test]
    fn normalises_price() {
        let p = parse(price(json!({"amount": "19.99", "currency": " usd "}))).unwrap();
        assert_eq!(p.update.key.id, "P1");
        assert_eq!(p.update.payload["currency"], json!("USD"));
        assert_eq!(p.update.payload["amount"], json!(19.99));
        assert!(!p.update.non_critical);
    }

    /// Found by the fuzzer: without correctly rounded float parsing, a long number read from the
    /// request and the same number read back from the store differed in the last bit.
    #[test]
    fn numbers_survive_the_store_encoding_bit_for_bit() {
        for text in [
            "1900000055555155555500000",
            "1.9000000555551554e24",
            "0.30000000000000004",
            "123456789.12345678",
        ] {
            let record = format!(
                r#"{{"event_id":"e1","class":"pricing","schema_version":2,"key":{{"product_id":"P1","valid_from":0}},"event_time":5,"sequence":1,"payload":{{"amount":1,"currency":"usd","extra":{text}}}}}"#
            );
            let p = parse_record(record.as_bytes(), Mode::Stream).unwrap();
            let stored = serde_json::to_vec(&p.update).unwrap();
            let back: crate::model::Update = serde_json::from_slice(&stored).unwrap();
            assert_eq!(back, p.update, "{text}");
            let expected: f64 = text.parse().unwrap();
            assert_eq!(
                back.payload["extra"].as_f64().map(f64::to_bits),
                Some(expected.to_bits()),
                "{text}"
            );
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(price(json!({"currency": "XXQ"}))).unwrap_err();
        assert_eq!(e.field, "payload.currency");
        let e = parse(price(json!({"amount": "lots"}))).unwrap_err();
        assert_eq!(e.field, "payload.amount");
        let mut r = price(json!({"amount": 1}));
        r["sequence"] = json!(-1);
        assert_eq!(parse(r).unwrap_err().field, "sequence");
        let mut r = price(json!({"amount": 1}));
        r["key"]["product_id"] = json!(5);
        assert_eq!(parse(r).unwrap_err().field, "key.product_id");
    }

    #[test]
    fn huge_numbers_are_rejected() {
        let e = parse(price(json!({"amount": 1e300}))).unwrap_err();
        assert_eq!(e.field, "payload.amount");
        let e = parse_record(
            br#"{"event_id":"e","class":"inventory","schema_version":2,"key":{"product_id":"p","location":"s1"},"event_time":1,"sequence":99999999999999999999999,"payload":{"quantity":1}}"#,
            Mode::Stream,
        )
        .unwrap_err();
        assert_eq!(e.field, "sequence");
    }

    #[test]
    fn v1_is_upgraded() {
        let r = json!({"event_id": "e1", "class": "inventory", "schema_version": 1,
            "key": {"product_id": "P1", "location": "store-7"}, "event_time": 1000, "version": 3,
            "payload": {"qty": 4, "unit": "EA"}});
        let p = parse(r).unwrap();
        assert_eq!(p.update.version.sequence, 3);
        assert_eq!(p.update.payload["quantity"], json!(4));
        assert_eq!(p.update.payload["unit"], json!("each"));
        assert_eq!(p.update.key.sub, Some(SubKey::Code("STORE-7".into())));
    }

    #[test]
    fn unknown_schema_version_is_rejected() {
        let mut r = price(json!({"amount": 1}));
        r["schema_version"] = json!(3);
        let e = parse(r).unwrap_err();
        assert_eq!(e.field, "schema_version");
        assert!(e.message.contains("not supported"), "{e}");
    }

    #[test]
    fn unknown_fields_follow_the_policy() {
        let mut r = price(json!({"amount": 1, "loyalty_tier": "gold"}));
        r["trace_id"] = json!("abc");
        let p = parse(r).unwrap();
        assert_eq!(p.unknown_fields, 2);
        assert_eq!(p.update.payload["loyalty_tier"], json!("gold"));
    }

    #[test]
    fn enrichment_is_non_critical() {
        let r = json!({"event_id": "e", "class": "product", "schema_version": 2,
            "key": {"product_id": "P1"}, "event_time": 5, "sequence": 1,
            "payload": {"enrichment": {"tags": ["x"]}}});
        assert!(parse(r.clone()).unwrap().update.non_critical);
        let mut r2 = r;
        r2["payload"]["name"] = json!("Drill");
        assert!(!parse(r2).unwrap().update.non_critical);
    }

    #[test]
    fn weight_is_converted_to_grams() {
        let r = json!({"event_id": "e", "class": "product", "schema_version": 2,
            "key": {"product_id": "P1"}, "event_time": 5, "sequence": 1,
            "payload": {"weight": {"value": 1, "unit": "KG"}}});
        assert_eq!(
            parse(r).unwrap().update.payload["weight_grams"],
            json!(1000.0)
        );
    }

    #[test]
    fn invalid_utf8_is_named() {
        let e = parse_record(b"{\"a\":\"\xff\"}", Mode::Stream).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
    }
}
