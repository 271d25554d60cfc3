//! The Grafana dashboards of `dashboards/` as the tests read them: their panels, template
//! variables and annotations, every PromQL query they send, and a query with Grafana's variables
//! substituted the way Grafana does before sending it.

use std::path::PathBuf;

use serde_json::Value;

/// The data source every query must name: the dashboard's `datasource` variable.
pub const DATASOURCE_VARIABLE: &str = "${datasource}";

/// Grafana's built-in variables a query may use.
pub const BUILT_IN: [&str; 3] = ["__rate_interval", "__interval", "__range"];

/// `dashboards/` at the repository root.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// The chart's copy, which it loads with `.Files.Get`.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/tailwarden/dashboards")
}

/// The names of the `.json` files in `dir`, sorted.
pub fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// One dashboard file.
pub struct Dashboard {
    /// File name, e.g. `slo-overview.json`.
    pub file: String,
    /// Its JSON model.
    pub json: Value,
}

/// A PromQL query of a dashboard and where it is.
#[derive(Debug, Clone)]
pub struct Query {
    /// E.g. `pipeline-detail.json, panel "Read P95 per query class", query B`.
    pub whence: String,
    /// The PromQL, with Grafana's variables in it.
    pub expr: String,
    /// Whether Grafana evaluates it once at the end of the range (tables) rather than over it.
    pub instant: bool,
}

/// Every dashboard of `dashboards/`.
pub fn load_all() -> Vec<Dashboard> {
    files(&dir())
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(dir().join(&file)).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"));
            Dashboard { file, json }
        })
        .collect()
}

impl Dashboard {
    /// Every panel, those inside rows included.
    pub fn panels(&self) -> Vec<&Value> {
        let mut out = vec![];
        for p in array(&self.json["panels"]) {
            out.push(p);
            out.extend(array(&p["panels"]));
        }
        out
    }

    /// The template variables.
    pub fn variables(&self) -> Vec<&Value> {
        array(&self.json["templating"]["list"]).collect()
    }

    /// The annotation queries, without Grafana's built-in one.
    pub fn annotations(&self) -> Vec<&Value> {
        array(&self.json["annotations"]["list"])
            .filter(|a| a.get("builtIn").is_none())
            .collect()
    }

    /// Every PromQL query: the panels' targets, the annotations', and each `label_values`
    /// variable as the series query it stands for (`count by (label) (selector)`).
    pub fn queries(&self) -> Vec<Query> {
        let mut out = vec![];
        for p in self.panels() {
            for t in array(&p["targets"]) {
                out.push(Query {
                    whence: format!("{}, panel {}, query {}", self.file, p["title"], t["refId"]),
                    expr: text(&t["expr"]).to_owned(),
                    instant: t["instant"] == true,
                });
            }
        }
        for a in self.annotations() {
            out.push(Query {
                whence: format!("{}, annotation {}", self.file, a["name"]),
                expr: text(&a["expr"]).to_owned(),
                instant: false,
            });
        }
        for v in self
            .variables()
            .into_iter()
            .filter(|v| v["type"] == "query")
        {
            let definition = text(&v["definition"]);
            let (selector, label) = definition
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .and_then(|d| d.rsplit_once(','))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: variable {} is not label_values(…)",
                        self.file, v["name"]
                    )
                });
            out.push(Query {
                whence: format!("{}, variable {}", self.file, v["name"]),
                expr: format!("count by ({}) ({selector})", label.trim()),
                instant: true,
            });
        }
        out
    }
}

/// `expr` with each `(name, value)` substituted for `$name` and `${name}`, longest names first so
/// `$__interval` does not eat `$__interval_ms`.
pub fn substitute(expr: &str, values: &[(&str, &str)]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    for (name, value) in sorted {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// The variable names referenced in `text` as `$name` or `${name}` (not `$1`, a regex group).
pub fn references(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            out.push(name);
        }
    }
    out
}

fn array(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}
