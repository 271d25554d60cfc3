//! What the page shows of a pipeline: its status, with the leader's latest verdict laid over it,
//! and the list's states and filters. Pure data; the HTML is in [`super::html`].

use kube::ResourceExt;
use tailwarden_crds::{RetailPipeline, RetailPipelineStatus};

use crate::conditions::METRICS_AVAILABLE;
use crate::summary::{self, Summary};
use crate::verdict::Verdict;

/// Where the page's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The leader: its pipeline store and the SLO engine's verdicts, as of now.
    Leader,
    /// A standby: the pipelines' status as the leader last wrote it.
    Standby,
}

/// One pipeline as the page shows it.
#[derive(Debug, Clone)]
pub struct PipelineView {
    /// The pipeline, its status replaced by [`PipelineView::status`].
    pub pipeline: RetailPipeline,
    /// The status, with the budget and SLIs of the leader's latest verdict when there is one.
    pub status: Option<RetailPipelineStatus>,
    /// The list row, from [`PipelineView::status`].
    pub summary: Summary,
    /// SLIs without data, each with why; None while unknown.
    pub missing: Option<Vec<String>>,
    /// Budget left per SLO as a fraction (the leader's verdict only: the status names the worst).
    pub slo_budgets: std::collections::BTreeMap<String, f64>,
    /// When the SLO engine evaluated (the leader's verdict only).
    pub evaluated_at: Option<String>,
}

impl PipelineView {
    /// The view of `pipeline`, with `verdict`'s budget, SLIs and missing data when given: the
    /// engine evaluates more often than the reconciler writes the status.
    pub fn new(pipeline: &RetailPipeline, verdict: Option<&Verdict>) -> Self {
        let mut status = pipeline.status.clone();
        if let Some(v) = verdict {
            let s = status.get_or_insert_with(Default::default);
            s.budget = v.budget.clone();
            s.slis = v.slis.clone();
        }
        let missing = match verdict {
            Some(v) => Some(v.missing.clone()),
            None => status.as_ref().and_then(missing_from_status),
        };
        let mut pipeline = pipeline.clone();
        pipeline.status = status.clone();
        PipelineView {
            summary: Summary::of(&pipeline),
            status,
            missing,
            slo_budgets: verdict.map(|v| v.slo_budgets.clone()).unwrap_or_default(),
            evaluated_at: verdict.map(|v| v.evaluated_at.clone()),
            pipeline,
        }
    }

    /// The states the pipeline is in; [`State::Healthy`] when none of the others.
    pub fn states(&self) -> Vec<State> {
        let frozen = self
            .summary
            .frozen
            .is_some_and(|f| (f.budget && !f.overridden) || f.manual);
        let mut states: Vec<State> = [
            (frozen, State::Frozen),
            (self.summary.degraded == Some(true), State::Degraded),
            (
                self.missing.as_ref().is_some_and(|m| !m.is_empty()),
                State::MissingData,
            ),
        ]
        .into_iter()
        .filter_map(|(on, state)| on.then_some(state))
        .collect();
        if states.is_empty() {
            states.push(State::Healthy);
        }
        states
    }
}

/// The MetricsAvailable condition's message names the missing SLIs when it is False.
fn missing_from_status(status: &RetailPipelineStatus) -> Option<Vec<String>> {
    let available = summary::condition(status, METRICS_AVAILABLE)?;
    if available {
        return Some(Vec::new());
    }
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == METRICS_AVAILABLE)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    Some(vec![message])
}

/// A state the list can be filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Rollouts are held: by the budget (not overridden) or by a manual freeze.
    Frozen,
    /// Non-critical work is paused.
    Degraded,
    /// Some SLIs could not be read.
    MissingData,
    /// None of the above.
    Healthy,
}

impl State {
    /// Every state, in the filter's order.
    pub const ALL: [State; 4] = [
        State::Frozen,
        State::Degraded,
        State::MissingData,
        State::Healthy,
    ];

    /// The query-parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Frozen => "frozen",
            State::Degraded => "degraded",
            State::MissingData => "missing-data",
            State::Healthy => "healthy",
        }
    }

    /// The state named by a query-parameter value.
    pub fn parse(value: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// The list's filters; None shows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only pipelines in this state.
    pub state: Option<State>,
}

impl Filter {
    fn keeps(&self, view: &PipelineView) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| *ns == view.summary.namespace)
            && self.state.is_none_or(|s| view.states().contains(&s))
    }
}

/// The list: the pipelines `filter` keeps, lowest remaining budget first (as the kubectl plugin
/// sorts them).
pub fn list(views: Vec<PipelineView>, filter: &Filter) -> Vec<PipelineView> {
    let mut kept: Vec<PipelineView> = views.into_iter().filter(|v| filter.keeps(v)).collect();
    let mut order: Vec<Summary> = kept.iter().map(|v| v.summary.clone()).collect();
    summary::sort(&mut order);
    kept.sort_by_key(|v| {
        order
            .iter()
            .position(|s| s.namespace == v.summary.namespace && s.name == v.summary.name)
    });
    kept
}

/// The namespaces among `views`, sorted, for the namespace filter.
pub fn namespaces(views: &[PipelineView]) -> Vec<String> {
    let mut all: Vec<String> = views
        .iter()
        .map(|v| v.pipeline.namespace().unwrap_or_default())
        .collect();
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pipeline with `status` (JSON), for the page's tests.
    pub(crate) fn pipeline(
        namespace: &str,
        name: &str,
        status: serde_json::Value,
    ) -> RetailPipeline {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tailwarden.io/v1alpha1",
            "kind": "RetailPipeline",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"dataplane": {"image": "example.com/dataplane", "version": "1.0.0"}},
            "status": status,
        }))
        .unwrap()
    }

    /// An evaluated status with `remaining` percent of budget left.
    pub(crate) fn evaluated(remaining: f64, frozen: bool) -> serde_json::Value {
        serde_json::json!({
            "ingest": {"desiredReplicas": 2, "readyReplicas": 2, "summary": "2/2"},
            "serve": {"desiredReplicas": 3, "readyReplicas": 2, "summary": "2/3"},
            "budget": {
                "remaining": format!("{remaining:.1}%"),
                "remainingPercent": remaining,
                "worstSlo": "availability",
                "burnRates": [
                    {"window": "5m", "rate": 16.0}, {"window": "30m", "rate": 7.0},
                    {"window": "1h", "rate": 15.0}, {"window": "6h", "rate": 2.0},
                ],
            },
            "rollout": {"budgetFrozen": frozen},
            "conditions": [{"type": "MetricsAvailable", "status": "True", "reason": "AllRead",
                            "message": "", "lastTransitionTime": "2026-12-02T12:00:00Z"}],
            "decisions": [{"kind": "FreezeRollout", "reason": "budget at 4.2% <script>alert(1)</script>",
                           "time": "2026-12-02T12:00:00Z"}],
        })
    }

    fn views() -> Vec<PipelineView> {
        let mut missing = evaluated(50.0, false);
        missing["conditions"][0]["status"] = "False".into();
        missing["conditions"][0]["message"] = "freshness: no data".into();
        [
            pipeline("shop", "healthy", evaluated(80.0, false)),
            pipeline("shop", "new", serde_json::json!({})),
            pipeline("ops", "burning", evaluated(4.2, true)),
            pipeline("shop", "blind", missing),
        ]
        .iter()
        .map(|p| PipelineView::new(p, None))
        .collect()
    }

    fn names(views: &[PipelineView]) -> Vec<&str> {
        views.iter().map(|v| v.summary.name.as_str()).collect()
    }

    #[test]
    fn lowest_budget_first_unevaluated_last() {
        let all = list(views(), &Filter::default());
        assert_eq!(names(&all), ["burning", "blind", "healthy", "new"]);
    }

    #[test]
    fn filters_by_namespace_and_state() {
        let shop = Filter {
            namespace: Some("shop".into()),
            state: None,
        };
        assert_eq!(names(&list(views(), &shop)), ["blind", "healthy", "new"]);
        let state = |s| Filter {
            namespace: None,
            state: Some(s),
        };
        assert_eq!(names(&list(views(), &state(State::Frozen))), ["burning"]);
        assert_eq!(names(&list(views(), &state(State::MissingData))), ["blind"]);
        assert_eq!(
            names(&list(views(), &state(State::Healthy))),
            ["healthy", "new"]
        );
        assert_eq!(State::parse("missing-data"), Some(State::MissingData));
        assert_eq!(State::parse("bogus"), None);
    }

    #[test]
    fn the_leaders_verdict_replaces_the_written_budget() {
        let p = pipeline("shop", "web", evaluated(80.0, false));
        let mut verdict =
            crate::test_support::verdict(false, tailwarden_slo::gate::GateCode::BudgetHealthy);
        verdict.budget.remaining_percent = Some(12.5);
        verdict.missing = vec!["freshness: no data".into()];
        let view = PipelineView::new(&p, Some(&verdict));
        assert_eq!(view.summary.budget_remaining_percent, Some(12.5));
        assert!(view.states().contains(&State::MissingData));
    }
}
