//! The burn-down chart: remaining budget over the SLO period as inline SVG, drawn on the server
//! from samples Prometheus returned, so the page needs no script.

use maud::{Markup, html};

/// One sample: Unix seconds and the budget left as a fraction (below 0 once overspent).
pub type Sample = (f64, f64);

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// The chart of `samples` between `start` and `end` (Unix seconds). The y axis spans 0 to 100 %,
/// widened to the lowest and highest sample.
pub fn svg(samples: &[Sample], start: f64, end: f64, label: &str) -> Markup {
    let low = samples.iter().map(|s| s.1).fold(0.0_f64, f64::min);
    let high = samples.iter().map(|s| s.1).fold(1.0_f64, f64::max);
    let span = (end - start).max(1.0);
    let x = |t: f64| LEFT + (t - start) / span * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (high - v) / (high - low) * (HEIGHT - TOP - BOTTOM);
    let points: Vec<String> = samples
        .iter()
        .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect();
    let grid = [(high, format!("{:.0}%", high * 100.0)), (0.0, "0%".into())];
    html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label)
            xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            @for (value, text) in &grid {
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(*value)) y2=(y(*value)) class="grid" {}
                text x=(LEFT - 6.0) y=(y(*value) + 4.0) text-anchor="end" { (text) }
            }
            @if low < 0.0 {
                text x=(LEFT - 6.0) y=(y(low) + 4.0) text-anchor="end" { (format!("{:.0}%", low * 100.0)) }
            }
            text x=(LEFT) y=(HEIGHT - 8.0) { (date(start)) }
            text x=(WIDTH - RIGHT) y=(HEIGHT - 8.0) text-anchor="end" { (date(end)) }
            polyline class="budget" points=(points.join(" ")) {}
        }
    }
}

/// `2026-12-02 14:05` (UTC).
fn date(unix: f64) -> String {
    jiff::Timestamp::from_second(unix as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_a_point_inside_the_plot() {
        let samples = [(0.0, 1.0), (50.0, 0.5), (100.0, 0.0)];
        let out = svg(&samples, 0.0, 100.0, "budget").into_string();
        assert!(
            out.contains(r#"points="48.0,12.0 378.0,102.0 708.0,192.0""#),
            "{out}"
        );
        assert!(out.contains("<title>budget</title>"));
    }

    #[test]
    fn an_overspent_budget_widens_the_axis_below_zero() {
        let out = svg(&[(0.0, 0.5), (10.0, -0.5)], 0.0, 10.0, "b").into_string();
        assert!(out.contains(">-50%<"), "{out}");
        assert!(out.contains("points=\"48.0,72.0 708.0,192.0\""), "{out}");
    }
}
