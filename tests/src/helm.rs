//! The Helm chart in tests: the helm binary that `tests/helm/build.sh` builds, and rendering.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `$TAILWARDEN_CACHE`, or `~/.cache/tailwarden`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TAILWARDEN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tailwarden")
        })
}

/// The helm binary.
pub fn helm() -> PathBuf {
    let helm = cache_dir().join("bin/helm");
    assert!(
        helm.is_file(),
        "{} is missing: run tests/helm/build.sh (tests/run.sh does)",
        helm.display()
    );
    helm
}

/// The chart's directory.
pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/tailwarden")
}

/// `helm template` of the chart as release `release` in `namespace`, one JSON value per object.
pub fn render(release: &str, namespace: &str, set: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", release])
        .arg(chart())
        .args(["--namespace", namespace]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let yaml = crate::run(&mut cmd);
    serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).expect("helm renders YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// Whether `helm template` refuses the chart with `--set set` (values.schema.json or a template
/// check).
pub fn refuses(set: &str) -> bool {
    !Command::new(helm())
        .args(["template", "tw"])
        .arg(chart())
        .args(["--set", set])
        .output()
        .expect("helm runs")
        .status
        .success()
}
