//! The synthetic write workload of `tailwarden-loadgen` and of the benchmarks: products by Zipf
//! popularity, and update records in a retail feed's mix (half inventory, then prices,
//! fulfillment and product names). One definition, so that a benchmark that skips the HTTP path
//! (`examples/raw_store_bench.rs`) commits the same records as the load generator sends.

use std::fmt::Write as _;

/// Zipf-distributed ranks 0..n by inverse CDF lookup.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Ranks 0..`n` with exponent `s`.
    pub fn new(n: u64, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    /// One rank; rank 0 is the most popular.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        let u = rng.f64();
        self.cdf.partition_point(|c| *c < u) as u64
    }
}

/// The product id of a rank.
pub fn product_id(rank: u64) -> String {
    format!("P{rank:08}")
}

/// Appends one NDJSON update record of product `id` (a random class of the mix, at one of
/// `locations` locations) with event id `event_id`, sequence `seq` and event time `now_ms`.
pub fn write_update(
    body: &mut String,
    rng: &mut fastrand::Rng,
    id: &str,
    locations: u64,
    event_id: &str,
    seq: u64,
    now_ms: i64,
) {
    let (eid, now) = (event_id, now_ms);
    let _ = match rng.u8(0..10) {
        0..=4 => writeln!(
            body,
            r#"{{"event_id":"{eid}","class":"inventory","schema_version":2,"key":{{"product_id":"{id}","location":"S{}"}},"event_time":{now},"sequence":{seq},"payload":{{"quantity":{}}}}}"#,
            rng.u64(0..locations.max(1)),
            rng.u32(0..1000)
        ),
        5..=7 => writeln!(
            body,
            r#"{{"event_id":"{eid}","class":"pricing","schema_version":2,"key":{{"product_id":"{id}","valid_from":"2026-01-01T00:00:00Z"}},"event_time":{now},"sequence":{seq},"payload":{{"amount":{}.{:02},"currency":"usd"}}}}"#,
            rng.u32(1..500),
            rng.u32(0..100)
        ),
        8 => writeln!(
            body,
            r#"{{"event_id":"{eid}","class":"fulfillment","schema_version":2,"key":{{"product_id":"{id}","region":"R0"}},"event_time":{now},"sequence":{seq},"payload":{{"available":{}}}}}"#,
            rng.bool()
        ),
        _ => writeln!(
            body,
            r#"{{"event_id":"{eid}","class":"product","schema_version":2,"key":{{"product_id":"{id}"}},"event_time":{now},"sequence":{seq},"payload":{{"name":" Product {seq} "}}}}"#
        ),
    };
}
