//! Fuzzes the ingest boundary: body splitting and record parsing must never panic, and whatever
//! they accept must survive the store's encoding unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailwarden_dataplane::ingest::body::{Format, split};
use tailwarden_dataplane::model::Update;
use tailwarden_dataplane::schema::{Mode, parse_record};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Ndjson, Format::JsonArray] {
        let Ok(records) = split(data, format) else { continue };
        for record in records {
            for mode in [Mode::Stream, Mode::Snapshot { version: 1, as_of_ms: 0, line: 1 }] {
                if let Ok(parsed) = parse_record(record, mode) {
                    let bytes = serde_json::to_vec(&parsed.update).expect("an accepted update encodes");
                    let back: Update = serde_json::from_slice(&bytes).expect("and decodes");
                    assert_eq!(back, parsed.update);
                    assert!(!parsed.update.key.to_bytes().is_empty());
                }
            }
        }
    }
});
