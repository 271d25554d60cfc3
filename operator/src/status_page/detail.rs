//! The detail page's derived data: objective tiles and the multi-window burn-rate table. Both
//! come from the spec's objectives (the SLO engine's own definitions) and the status or verdict;
//! nothing is evaluated again.

use std::time::Duration;

use tailwarden_slo::burn::{BurnWindow, Severity, prom_duration, windows};
use tailwarden_slo::objective::slos;
use tailwarden_slo::window::period;

use super::view::PipelineView;
use crate::evaluation::objectives;

/// One SLO of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// The SLO's name, e.g. `availability`.
    pub name: String,
    /// Its target in percent.
    pub target_percent: f64,
    /// Budget left in percent, when known for this SLO.
    pub budget_percent: Option<f64>,
    /// Whether it is the SLO with the least budget left.
    pub worst: bool,
}

/// One alert of the multi-window, multi-burn-rate scheme.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnRow {
    /// Page or ticket.
    pub severity: Severity,
    /// The long window, e.g. `1h`.
    pub long: String,
    /// The short window, e.g. `5m`.
    pub short: String,
    /// The burn-rate threshold both windows must exceed.
    pub factor: f64,
    /// The long window's burn rate, when the status reports it.
    pub long_rate: Option<f64>,
    /// The short window's burn rate, when the status reports it.
    pub short_rate: Option<f64>,
}

impl BurnRow {
    /// Whether the alert fires; None when a window's rate is not reported.
    pub fn fires(&self, window: &BurnWindow) -> Option<bool> {
        Some(window.fires_at(self.short_rate?, self.long_rate?))
    }
}

/// What the detail page derives from the spec and status.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// One tile per SLO.
    pub tiles: Vec<Tile>,
    /// The alerts, fastest first, with whether each fires.
    pub burn: Vec<(BurnRow, Option<bool>)>,
    /// The SLO period.
    pub period: Duration,
}

/// The tiles and burn table of `view`; None when the spec's objectives are invalid (the
/// pipeline's status says why).
pub fn derive(view: &PipelineView) -> Option<Derived> {
    let objectives = objectives(&view.pipeline.spec).ok()?;
    let budget = view.status.as_ref().map(|s| &s.budget);
    let worst = budget.and_then(|b| b.worst_slo.clone());
    let tiles = slos(&objectives)
        .into_iter()
        .map(|slo| {
            let is_worst = worst.as_deref() == Some(slo.name.as_str());
            let budget_percent = view
                .slo_budgets
                .get(&slo.name)
                .map(|f| f * 100.0)
                .or_else(|| {
                    budget
                        .and_then(|b| b.remaining_percent)
                        .filter(|_| is_worst)
                });
            Tile {
                target_percent: slo.target * 100.0,
                name: slo.name,
                budget_percent,
                worst: is_worst,
            }
        })
        .collect();
    let rate = |window: Duration| {
        let name = prom_duration(window);
        budget?
            .burn_rates
            .iter()
            .find(|r| r.window == name)
            .map(|r| r.rate)
    };
    let period = period(&objectives);
    let burn = windows(period)
        .iter()
        .map(|w| {
            let row = BurnRow {
                severity: w.severity,
                long: prom_duration(w.long),
                short: prom_duration(w.short),
                factor: w.factor,
                long_rate: rate(w.long),
                short_rate: rate(w.short),
            };
            let fires = row.fires(w);
            (row, fires)
        })
        .collect();
    Some(Derived {
        tiles,
        burn,
        period,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_page::view::tests::{evaluated, pipeline};

    #[test]
    fn the_burn_table_reads_the_status_rates_and_says_which_alerts_fire() {
        let view = PipelineView::new(&pipeline("shop", "web", evaluated(4.2, true)), None);
        let derived = derive(&view).unwrap();
        let (first, fires) = &derived.burn[0];
        assert_eq!((first.long.as_str(), first.short.as_str()), ("1h", "5m"));
        assert_eq!(
            (first.long_rate, first.short_rate),
            (Some(15.0), Some(16.0))
        );
        assert_eq!(*fires, Some(true), "15 and 16 exceed 14.4");
        assert_eq!(derived.burn[1].1, Some(false), "6h burns at 2, below 6");
        let (ticket, fires) = &derived.burn[2];
        assert_eq!(ticket.severity, Severity::Ticket);
        assert_eq!(*fires, None, "the status reports only the page windows");
    }

    #[test]
    fn tiles_name_every_slo_and_the_worst_ones_budget() {
        let view = PipelineView::new(&pipeline("shop", "web", evaluated(4.2, true)), None);
        let tiles = derive(&view).unwrap().tiles;
        let availability = tiles.iter().find(|t| t.name == "availability").unwrap();
        assert!(availability.worst);
        assert_eq!(availability.budget_percent, Some(4.2));
        assert!(
            tiles
                .iter()
                .filter(|t| !t.worst)
                .all(|t| t.budget_percent.is_none())
        );
    }
}
