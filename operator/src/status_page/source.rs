//! Where the page's pipelines come from: the leader's live store and the SLO engine's verdicts,
//! or, on a standby (no controller running), the pipelines' status read through the API.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use tailwarden_crds::RetailPipeline;

use super::view::{Mode, PipelineView};
use crate::verdict::Verdicts;

/// How long a request waits for a just-started leader's store to list every pipeline.
const STORE_READY: Duration = Duration::from_secs(5);

/// The leader's live state, set once its controller starts.
#[derive(Debug, Clone, Default)]
pub struct LiveState(Arc<OnceLock<(Store<RetailPipeline>, Verdicts)>>);

impl LiveState {
    /// Publishes the controller's pipeline store and the engine's verdicts.
    pub fn publish(&self, store: Store<RetailPipeline>, verdicts: Verdicts) {
        let _ = self.0.set((store, verdicts));
    }
}

/// Reads pipelines for the page.
#[derive(Clone)]
pub struct Source {
    /// Lists pipelines on a standby.
    pub client: Client,
    /// The watched namespace; all when None.
    pub namespace: Option<String>,
    /// The leader's state, once it leads.
    pub live: LiveState,
}

impl Source {
    /// Every pipeline, and where they were read.
    pub async fn views(&self) -> Result<(Mode, Vec<PipelineView>), kube::Error> {
        if let Some((store, verdicts)) = self.leader().await {
            let views = store
                .state()
                .iter()
                .map(|p| PipelineView::new(p, verdicts.get(&ObjectRef::from(p.as_ref())).as_ref()))
                .collect();
            return Ok((Mode::Leader, views));
        }
        let list = self.api().list(&ListParams::default()).await?;
        let views = list
            .items
            .iter()
            .map(|p| PipelineView::new(p, None))
            .collect();
        Ok((Mode::Standby, views))
    }

    /// One pipeline, None when it does not exist.
    pub async fn view(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(Mode, Option<PipelineView>), kube::Error> {
        if let Some((store, verdicts)) = self.leader().await {
            let key = ObjectRef::new(name).within(namespace);
            let view = store
                .get(&key)
                .map(|p| PipelineView::new(&p, verdicts.get(&key).as_ref()));
            return Ok((Mode::Leader, view));
        }
        let outside = self.namespace.as_deref().is_some_and(|ns| ns != namespace);
        if outside {
            return Ok((Mode::Standby, None));
        }
        let api: Api<RetailPipeline> = Api::namespaced(self.client.clone(), namespace);
        let pipeline = api.get_opt(name).await?;
        Ok((Mode::Standby, pipeline.map(|p| PipelineView::new(&p, None))))
    }

    async fn leader(&self) -> Option<(Store<RetailPipeline>, Verdicts)> {
        let (store, verdicts) = self.live.0.get()?.clone();
        let _ = tokio::time::timeout(STORE_READY, store.wait_until_ready()).await;
        Some((store, verdicts))
    }

    fn api(&self) -> Api<RetailPipeline> {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}
