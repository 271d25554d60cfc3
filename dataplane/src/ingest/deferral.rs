//! Applies deferred non-critical updates once `pauseNonCritical` is off again. Each chunk is
//! applied and deleted from the deferred store in one commit, so nothing is lost or doubled
//! (and a repeat after a crash is absorbed by last-writer-wins).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::ingest::Item;
use crate::ingest::http::IngestState;

/// Deferred updates applied per commit.
const CHUNK: usize = 1000;
/// How often the deferred store is checked.
const POLL: Duration = Duration::from_millis(200);

/// Runs until `closing` turns true.
pub async fn drain(state: Arc<IngestState>, mut closing: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        while !state.paused.load(Ordering::Relaxed)
            && state.store.deferred_count() > 0
            && !*closing.borrow()
        {
            let chunk = match state.store.deferred(CHUNK) {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading deferred updates failed");
                    break;
                }
            };
            let Some(_permit) = state.admission.records(chunk.len()) else {
                break;
            };
            let (ids, items): (Vec<u64>, Vec<Item>) = chunk
                .into_iter()
                .map(|(id, u)| (id, Item::Update(u)))
                .unzip();
            match state.submit(items, ids, Vec::new()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "applying deferred updates failed");
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
