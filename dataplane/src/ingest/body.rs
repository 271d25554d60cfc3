//! Splits a bulk request body into records: a JSON array, or NDJSON (one record per line).
//! Body-level problems (not an array, invalid UTF-8 in an array, nothing in it) fail the whole
//! request; record-level problems fail only that record.

use serde_json::value::RawValue;

/// The body's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: a JSON array of records.
    JsonArray,
    /// `application/x-ndjson`: one record per line.
    Ndjson,
}

/// Why a whole body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    /// Nothing to ingest.
    #[error("batch is empty: send at least one record")]
    Empty,
    /// The array itself does not parse.
    #[error("body is not a JSON array of records: {0}")]
    NotAnArray(String),
    /// The content type is neither JSON nor NDJSON.
    #[error("unsupported content type {0:?}: use application/json (array) or application/x-ndjson")]
    ContentType(String),
}

/// The format named by a `Content-Type`, sniffing the body when there is none.
pub fn format(content_type: Option<&str>, body: &[u8]) -> Result<Format, BodyError> {
    let essence = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match essence.as_deref() {
        Some("application/json") => Ok(Format::JsonArray),
        Some(
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/jsonlines",
        ) => Ok(Format::Ndjson),
        None | Some("") => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            Ok(if first == Some(&b'[') {
                Format::JsonArray
            } else {
                Format::Ndjson
            })
        }
        Some(other) => Err(BodyError::ContentType(other.into())),
    }
}

/// The records of a body, as byte slices, in order.
pub fn split(body: &[u8], format: Format) -> Result<Vec<&[u8]>, BodyError> {
    let records: Vec<&[u8]> = match format {
        Format::JsonArray => {
            let text = std::str::from_utf8(body)
                .map_err(|e| BodyError::NotAnArray(format!("invalid UTF-8: {e}")))?;
            let raw: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| BodyError::NotAnArray(e.to_string()))?;
            raw.into_iter().map(|r| r.get().as_bytes()).collect()
        }
        Format::Ndjson => body
            .split(|b| *b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .collect(),
    };
    if records.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_arrays_and_lines() {
        assert_eq!(
            split(br#"[{"a":1}, {"b":2}]"#, Format::JsonArray)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            split(b"{\"a\":1}\r\n\n{\"b\":2}\n", Format::Ndjson)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn refuses_empty_and_broken_bodies() {
        assert_eq!(split(b"[]", Format::JsonArray), Err(BodyError::Empty));
        assert_eq!(split(b"\n \n", Format::Ndjson), Err(BodyError::Empty));
        assert!(matches!(
            split(b"[{\"a\":1}", Format::JsonArray),
            Err(BodyError::NotAnArray(_))
        ));
        assert!(
            matches!(split(b"[\"\xff\"]", Format::JsonArray), Err(BodyError::NotAnArray(m)) if m.contains("UTF-8"))
        );
    }

    #[test]
    fn a_bad_line_is_still_a_record() {
        assert_eq!(
            split(b"{\"a\":1}\nnot json\n", Format::Ndjson)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn picks_format_from_content_type_or_body() {
        assert_eq!(
            format(Some("application/json; charset=utf-8"), b"").unwrap(),
            Format::JsonArray
        );
        assert_eq!(format(None, b"  [1]").unwrap(), Format::JsonArray);
        assert_eq!(format(None, b"{}").unwrap(), Format::Ndjson);
        assert!(format(Some("text/csv"), b"").is_err());
    }
}
