//! The page's HTML: pure functions from the views to markup. maud escapes every interpolated
//! value, so names, reasons and annotations (user data) cannot inject markup.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use tailwarden_crds::Decision;

use super::chart::{self, Sample};
use super::detail::Derived;
use super::view::{Filter, Mode, PipelineView, State};
use crate::summary::Summary;

/// Inline, so the page loads nothing from anywhere. Colours keep a 4.5:1 contrast on white.
const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff}
header,main{padding:0 1.5rem}header{border-bottom:1px solid #ccc}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.6rem}
a{color:#0b4f9c}
.banner{background:#fff4d6;border:1px solid #8a6100;color:#4d3600;padding:.5rem 1rem;margin:1rem 0}
table{border-collapse:collapse;margin:.5rem 0}caption{text-align:left;padding:.3rem 0}th,td{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;margin-right:.2rem;font-size:.85rem}
.frozen{background:#fde2e2;color:#8a1111}.degraded{background:#fff0d6;color:#6b4200}
.missing-data{background:#e8e8e8;color:#333}.healthy{background:#e3f2e4;color:#1b5e20}
.fires{color:#8a1111;font-weight:bold}
.bar{display:inline-block;width:6rem;height:.7rem;background:#ddd;margin-right:.4rem;vertical-align:middle}
.bar span{display:block;height:100%;background:#2f6b35}
form{margin:1rem 0}label{margin-right:.3rem}select,button{margin-right:1rem;font:inherit}
.tiles{display:flex;flex-wrap:wrap;gap:.8rem;padding:0;list-style:none}
.tiles li{border:1px solid #bbb;border-radius:4px;padding:.6rem .9rem;min-width:11rem}
.tiles li.worst{border-color:#8a1111;border-width:2px}
.tiles .value{font-size:1.3rem;font-weight:bold;display:block}.tiles .unknown{display:block;color:#555}
.chart{width:100%;max-width:720px;height:auto;border:1px solid #ddd}
.chart .grid{stroke:#bbb;stroke-dasharray:4 3}.chart text{font-size:11px;fill:#333}
.chart .budget{fill:none;stroke:#0b4f9c;stroke-width:2}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.8rem;overflow:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:bold}dd{margin:0}
";

/// The frame every page shares.
fn page(title: &str, mode: Option<Mode>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tailwarden" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header { p { a href="/" { "Tailwarden SLO status" } } }
                main {
                    @if mode == Some(Mode::Standby) {
                        p.banner role="status" {
                            "standby: showing the pipelines' status as last written by the leader"
                        }
                    }
                    (body)
                }
            }
        }
    }
}

/// The list page: `views` already filtered and sorted, `namespaces` for the filter.
pub fn list(views: &[PipelineView], namespaces: &[String], filter: &Filter, mode: Mode) -> Markup {
    let body = html! {
        h1 { "Pipelines by remaining error budget" }
        form method="get" action="/" {
            label for="namespace" { "Namespace" }
            select id="namespace" name="namespace" {
                option value="" selected[filter.namespace.is_none()] { "all" }
                @for ns in namespaces {
                    option value=(ns) selected[filter.namespace.as_ref() == Some(ns)] { (ns) }
                }
            }
            label for="state" { "State" }
            select id="state" name="state" {
                option value="" selected[filter.state.is_none()] { "all" }
                @for s in State::ALL {
                    option value=(s.as_str()) selected[filter.state == Some(s)] { (s.as_str()) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if views.is_empty() {
            p { "No pipeline matches." }
        } @else {
            table {
                caption {
                    (views.len()) @if views.len() == 1 { " pipeline" } @else { " pipelines" }
                    ", lowest remaining budget first"
                }
                thead { tr {
                    th scope="col" { "Pipeline" } th scope="col" { "Budget left" }
                    th scope="col" { "Worst SLO" } th scope="col" { "Burn rates" }
                    th scope="col" { "State" } th scope="col" { "Ingest" } th scope="col" { "Serve" }
                } }
                tbody {
                    @for v in views { (row(v)) }
                }
            }
        }
    };
    page("Pipelines", Some(mode), body)
}

fn row(v: &PipelineView) -> Markup {
    let s = &v.summary;
    html! {
        tr {
            td { a href=(detail_href(s)) { (s.namespace) "/" (s.name) } }
            td { (budget(s)) }
            td { (dash(s.worst_slo.as_deref())) }
            td { @if s.burn_rates.is_empty() { "—" } @else {
                @for (i, r) in s.burn_rates.iter().enumerate() {
                    @if i > 0 { ", " } (r.window) " " (format!("{:.1}", r.rate)) "×"
                }
            } }
            td { (states(v)) }
            td.num { (replicas(s.ingest)) }
            td.num { (replicas(s.serve)) }
        }
    }
}

/// Path segments are DNS names, so they need no percent-encoding.
fn detail_href(s: &Summary) -> String {
    format!("/pipelines/{}/{}", s.namespace, s.name)
}

fn budget(s: &Summary) -> Markup {
    match (s.budget_remaining_percent, &s.budget_text) {
        (Some(p), text) => {
            let fill = p.clamp(0.0, 100.0);
            let text = text.clone().unwrap_or_else(|| format!("{p:.1}%"));
            html! {
                span.bar aria-hidden="true" { span style=(format!("width:{fill:.0}%")) {} }
                (text)
            }
        }
        (None, _) => html! { "not evaluated" },
    }
}

fn states(v: &PipelineView) -> Markup {
    html! { @for s in v.states() { span class=(format!("badge {}", s.as_str())) { (s.as_str()) } } }
}

fn replicas(r: Option<crate::summary::Replicas>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("{}/{}", r.ready, r.desired))
}

fn dash(value: Option<&str>) -> &str {
    value.unwrap_or("—")
}

/// The budget's history: samples over `[start, end]`, or why there are none.
pub enum Chart<'a> {
    /// Samples from Prometheus.
    Samples(&'a [Sample], f64, f64),
    /// Why there is no chart.
    Unavailable(String),
}

/// The detail page of one pipeline.
pub fn detail(
    view: &PipelineView,
    derived: Option<&Derived>,
    chart: Chart<'_>,
    spec_yaml: &str,
    mode: Mode,
) -> Markup {
    let s = &view.summary;
    let status = view.status.as_ref();
    let body = html! {
        h1 { (s.namespace) "/" (s.name) }
        p { (states(view)) " Budget left: " (budget(s)) " · worst SLO: " (dash(s.worst_slo.as_deref()))
            @if let Some(at) = &view.evaluated_at { " · evaluated " (at) } }
        h2 { "Objectives" }
        @match derived {
            Some(d) => ul.tiles { @for t in &d.tiles {
                li class=[t.worst.then_some("worst")] {
                    strong { (t.name) } @if t.worst { " (worst)" }
                    @match t.budget_percent {
                        Some(b) => span.value { (format!("{b:.1}%")) " left" },
                        None => span.unknown { "budget not in the status" },
                    }
                    "target " (format!("{}%", t.target_percent))
                }
            } },
            None => p { "The spec's objectives are invalid; the pipeline's conditions say why." },
        }
        h2 { "Current SLIs" }
        @let slis = status.map(|s| s.slis.clone()).unwrap_or_default();
        dl {
            dt { "Read P95" } dd { (dash(slis.read_p95.as_deref())) }
            dt { "Read P99" } dd { (dash(slis.read_p99.as_deref())) }
            dt { "Freshness lag" } dd { (dash(slis.freshness_lag.as_deref())) }
            @for (class, lag) in &slis.freshness_lag_by_class {
                dt { "Freshness lag (" (class) ")" } dd { (lag) }
            }
            dt { "Availability" } dd { (percent(slis.availability_percent)) }
            dt { "Correctness errors" } dd { (percent(slis.correctness_error_percent)) }
            dt { "Replicas (ingest, serve)" } dd { (replicas(s.ingest)) ", " (replicas(s.serve)) }
        }
        @if let Some(missing) = view.missing.as_ref().filter(|m| !m.is_empty()) {
            p { "Missing data:" }
            ul { @for m in missing { li { (m) } } }
        }
        h2 { "Error budget over the SLO period" }
        @match chart {
            Chart::Samples(samples, start, end) if !samples.is_empty() =>
                (chart::svg(samples, start, end, &format!("Budget left of {}/{} over time", s.namespace, s.name))),
            Chart::Samples(..) => p { "Prometheus has no budget series for this pipeline yet (its recording rules may not be loaded)." },
            Chart::Unavailable(why) => p { (why) },
        }
        h2 { "Burn-rate alerts" }
        @if let Some(d) = derived {
            table {
                caption { "Burn rates of the worst SLO per window pair; an alert fires when both exceed its factor" }
                thead { tr {
                    th scope="col" { "Severity" } th scope="col" { "Long window" } th scope="col" { "Rate" }
                    th scope="col" { "Short window" } th scope="col" { "Rate" } th scope="col" { "Factor" }
                    th scope="col" { "Fires" }
                } }
                tbody { @for (r, fires) in &d.burn { tr {
                    td { (r.severity.as_str()) }
                    td { (r.long) } td.num { (rate(r.long_rate)) }
                    td { (r.short) } td.num { (rate(r.short_rate)) }
                    td.num { (format!("{}×", r.factor)) }
                    td { @match fires {
                        Some(true) => span.fires { "fires" },
                        Some(false) => "no",
                        None => "not reported",
                    } }
                } } }
            }
        }
        h2 { "Decisions" }
        @let decisions = status.map(|s| s.decisions.as_slice()).unwrap_or_default();
        @if decisions.is_empty() { p { "No decisions recorded." } } @else {
            table {
                caption { "Newest first" }
                thead { tr { th scope="col" { "Time" } th scope="col" { "Decision" } th scope="col" { "Reason" } th scope="col" { "Inputs" } } }
                tbody { @for d in decisions.iter().rev() { (decision(d)) } }
            }
        }
        h2 { "Spec" }
        pre { code { (spec_yaml) } }
    };
    page(&format!("{}/{}", s.namespace, s.name), Some(mode), body)
}

fn decision(d: &Decision) -> Markup {
    html! { tr {
        td { (d.time) }
        td { (d.kind.as_str()) @if d.dry_run { " (dry run)" } }
        td { (d.reason) }
        td { (crate::summary::decision_inputs(&d.inputs)) }
    } }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.3}%"))
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.2}"))
}

/// A page for a request that cannot be answered, e.g. an unknown pipeline; `mode` when known.
pub fn message(title: &str, text: &str, mode: Option<Mode>) -> Markup {
    page(title, mode, html! { h1 { (title) } p { (text) } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_page::detail::derive;
    use crate::status_page::view::tests::{evaluated, pipeline};
    use crate::status_page::view::{self};

    const EVIL: &str = "<script>alert(1)</script>";

    #[test]
    fn the_list_escapes_user_data_and_keeps_budget_order() {
        let mut status = evaluated(3.0, true);
        status["budget"]["worstSlo"] = EVIL.into();
        let views: Vec<PipelineView> = [
            pipeline("shop", "roomy", evaluated(90.0, false)),
            pipeline("shop", "tight", status),
            pipeline("shop", r#""><script>x</script>"#, evaluated(50.0, false)),
        ]
        .iter()
        .map(|p| PipelineView::new(p, None))
        .collect();
        let views = view::list(views, &Filter::default());
        let out = list(&views, &["shop".into()], &Filter::default(), Mode::Leader).into_string();
        assert!(!out.contains(EVIL), "{out}");
        assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            out.contains(r#"href="/pipelines/shop/&quot;&gt;&lt;script&gt;x&lt;/script&gt;""#),
            "a name is escaped inside the link's attribute too: {out}"
        );
        assert!(out.find("shop/tight").unwrap() < out.find("shop/roomy").unwrap());
        assert!(!out.contains("standby"));
        assert!(!out.contains("<script"), "no JavaScript");
    }

    #[test]
    fn the_detail_escapes_reasons_and_names_the_alerts_and_the_standby() {
        let p = pipeline("shop", "web", evaluated(4.2, true));
        let view = PipelineView::new(&p, None);
        let derived = derive(&view);
        let out = detail(
            &view,
            derived.as_ref(),
            Chart::Unavailable("the chart needs Prometheus".into()),
            &format!("name: {EVIL}\n"),
            Mode::Standby,
        )
        .into_string();
        assert!(!out.contains("<script"), "{out}");
        assert!(out.contains("budget at 4.2% &lt;script&gt;"));
        assert!(out.contains("name: &lt;script&gt;"));
        assert!(
            out.contains("standby: showing the pipelines' status as last written by the leader")
        );
        assert!(out.contains(r#"<span class="fires">fires</span>"#));
        assert!(out.contains("the chart needs Prometheus"));
    }

    #[test]
    fn the_filter_form_keeps_the_chosen_values() {
        let filter = Filter {
            namespace: Some("ops".into()),
            state: Some(State::Frozen),
        };
        let out = list(&[], &["ops".into(), "shop".into()], &filter, Mode::Leader).into_string();
        assert!(
            out.contains(r#"<option value="ops" selected>ops</option>"#),
            "{out}"
        );
        assert!(out.contains(r#"<option value="frozen" selected>frozen</option>"#));
        assert!(out.contains("No pipeline matches."));
    }
}
