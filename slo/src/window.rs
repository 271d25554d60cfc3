//! The windows an SLO is judged over: the nominal period the rules use, the window the budget is
//! counted over, and the page-alert windows a fast burn is judged on.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::burn::{BurnWindow, Severity, windows};
use crate::objective::{Objectives, WindowKind};

const DAY: u64 = 86_400;

/// The SLO period the rules use: the configured rolling window, or 30 days for calendar months.
pub fn period(objectives: &Objectives) -> Duration {
    match objectives.window_kind {
        WindowKind::Rolling => objectives.window,
        WindowKind::CalendarMonth => Duration::from_secs(30 * DAY),
    }
}

/// The window the budget is counted over at `now`: the rolling window, or, for calendar months,
/// the month so far (UTC), at least five minutes so the first minutes of a month have data.
pub fn budget_window(objectives: &Objectives, now: Timestamp) -> Duration {
    match objectives.window_kind {
        WindowKind::Rolling => objectives.window,
        WindowKind::CalendarMonth => {
            let start = now
                .to_zoned(TimeZone::UTC)
                .date()
                .first_of_month()
                .to_zoned(TimeZone::UTC)
                .map(|t| t.timestamp())
                .unwrap_or(now);
            // Whole minutes, so the window is a valid PromQL range that pipelines can share.
            let secs = now.duration_since(start).as_secs().max(300) as u64 / 60 * 60;
            Duration::from_secs(secs)
        }
    }
}

/// Every window the engine reads each SLO over at `now`: the page-alert pairs and the budget
/// window.
pub fn read_windows(objectives: &Objectives, now: Timestamp) -> Vec<Duration> {
    let mut all = page_windows(period(objectives));
    all.push(budget_window(objectives, now));
    all
}

/// The page-alert pairs of a period, fastest first: a fast burn is judged on these.
pub fn page_pairs(period: Duration) -> impl Iterator<Item = BurnWindow> {
    windows(period)
        .into_iter()
        .filter(|w| w.severity == Severity::Page)
}

/// The windows of the page-alert pairs of a period, shortest first.
pub fn page_windows(period: Duration) -> Vec<Duration> {
    let mut all: Vec<Duration> = page_pairs(period).flat_map(|w| [w.short, w.long]).collect();
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_months_count_the_month_so_far() {
        let mut o = Objectives::reference();
        let now = "2026-11-23T10:00:30Z".parse::<Timestamp>().unwrap();
        assert_eq!(
            budget_window(&o, now),
            Duration::from_secs(30 * DAY),
            "rolling by default"
        );
        o.window_kind = WindowKind::CalendarMonth;
        assert_eq!(
            budget_window(&o, now),
            Duration::from_secs(22 * DAY + 10 * 3600)
        );
        let first_minute = "2026-12-01T00:00:40Z".parse::<Timestamp>().unwrap();
        assert_eq!(budget_window(&o, first_minute), Duration::from_secs(300));
    }

    #[test]
    fn the_engine_reads_the_page_pairs_and_the_budget_window() {
        let mut o = Objectives::reference();
        let now = "2026-11-23T10:00:30Z".parse::<Timestamp>().unwrap();
        let mins = |w: Vec<Duration>| w.iter().map(|d| d.as_secs() / 60).collect::<Vec<_>>();
        assert_eq!(mins(read_windows(&o, now)), [5, 30, 60, 360, 30 * 24 * 60]);
        o.window_kind = WindowKind::CalendarMonth;
        assert_eq!(period(&o), Duration::from_secs(30 * DAY));
        assert_eq!(
            mins(read_windows(&o, now)),
            [5, 30, 60, 360, 22 * 24 * 60 + 600]
        );
    }
}
