//! Admission control: at most `queueCapacity` records are admitted and not yet durable, and at
//! most a fixed number of write requests hold bodies in memory. Beyond either, the write API
//! answers 429 with Retry-After instead of queueing: memory stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds records in flight and request bodies in memory.
pub struct Admission {
    records: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    depth: Gauge,
    refused: Counter,
    /// Mean records per admitted batch (exponentially weighted), to count the records of a
    /// request refused before its body is read.
    mean_batch: AtomicU64,
}

/// Records admitted; releases them (and the depth gauge) on drop.
pub struct RecordPermit {
    _permit: OwnedSemaphorePermit,
    count: u32,
    depth: Gauge,
}

impl Drop for RecordPermit {
    fn drop(&mut self) {
        self.depth.dec_by(i64::from(self.count));
    }
}

impl Admission {
    /// `capacity` records, `max_requests` concurrent request bodies; `depth` counts admitted
    /// records, `refused` the records of refused writes.
    pub fn new(capacity: usize, max_requests: usize, depth: Gauge, refused: Counter) -> Self {
        Self {
            records: Arc::new(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS))),
            requests: Arc::new(Semaphore::new(max_requests)),
            depth,
            refused,
            mean_batch: AtomicU64::new(1),
        }
    }

    /// Counts a write refused with 429: `records` when its body was read, else the mean batch.
    /// Producers hold refused records and retry, so this rate is backlog the queue cannot show.
    pub fn refuse(&self, records: Option<usize>) {
        let n = records.map_or_else(|| self.mean_batch.load(Ordering::Relaxed), |n| n as u64);
        self.refused.inc_by(n);
    }

    /// A slot to read one request body, or `None` when the queue is full.
    pub fn request(&self) -> Option<OwnedSemaphorePermit> {
        if self.records.available_permits() == 0 {
            return None;
        }
        self.requests.clone().try_acquire_owned().ok()
    }

    /// Admits `n` records, or `None` when they do not fit.
    pub fn records(&self, n: usize) -> Option<RecordPermit> {
        let count = u32::try_from(n).ok()?;
        let permit = self.records.clone().try_acquire_many_owned(count).ok()?;
        self.depth.inc_by(i64::from(count));
        let mean = self.mean_batch.load(Ordering::Relaxed);
        self.mean_batch
            .store((mean * 7 + u64::from(count)).div_ceil(8), Ordering::Relaxed);
        Some(RecordPermit {
            _permit: permit,
            count,
            depth: self.depth.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_count_records_or_the_mean_batch() {
        let a = Admission::new(100, 2, Gauge::default(), Counter::default());
        a.refuse(None);
        assert_eq!(
            a.refused.get(),
            1,
            "before any batch, one record per request"
        );
        for _ in 0..50 {
            drop(a.records(40).unwrap());
        }
        a.refuse(None);
        assert_eq!(a.refused.get(), 41, "the mean batch converges on 40");
        a.refuse(Some(7));
        assert_eq!(a.refused.get(), 48);
    }

    #[test]
    fn full_queue_refuses_and_release_readmits() {
        let a = Admission::new(10, 2, Gauge::default(), Counter::default());
        let p = a.records(8).unwrap();
        assert!(a.records(3).is_none());
        assert_eq!(a.depth.get(), 8);
        drop(p);
        assert_eq!(a.depth.get(), 0);
        assert!(a.records(10).is_some());
    }
}
