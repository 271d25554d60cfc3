//! Tailwarden's data plane: ingest and serve workers for retail product, price, inventory and
//! fulfillment data, after the reference design in `shared/reference/retail-platform-paper.md`.
//!
//! Flow is one-way: records enter at `ingest` (validated and normalised by `schema`), are merged
//! by `merge` and committed durably through a `store::Store`; the `feed` tells the read caches
//! what changed; `serve` answers single-partition reads. `snapshot` loads baselines.

pub mod app;
pub mod auth;
pub mod backend_probe;
pub mod backends;
pub mod cache;
pub use tailwarden_contract::config;
pub mod currency;
pub mod dedup;
pub mod feed;
pub mod health;
pub mod ingest;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod schema;
pub mod serve;
pub mod snapshot;
pub mod store;
pub mod stream;
pub mod workload;
