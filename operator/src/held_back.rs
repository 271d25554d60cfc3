//! What a freeze keeps from the workers: a pure function of the desired children and what runs.
//!
//! While rollouts are frozen the workloads keep their live pod templates, and the ConfigMap keeps
//! its live config with only the degradation switch changed (the workers read it live, and it is
//! remediation). Holding the ConfigMap too matters: a pod restarted or added by scaling would
//! otherwise start on the new config. Every change the spec would make is listed for the status.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use crate::children::{CONFIG_HASH_ANNOTATION, Children, Role, VERSION_LABEL};

/// The live state a freeze keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveRollout<'a> {
    /// The version the workloads run.
    pub version: Option<&'a str>,
    /// Each live workload's pod template.
    pub templates: &'a [(Role, PodTemplateSpec)],
    /// The live ConfigMap's config file.
    pub config: Option<&'a str>,
}

/// How many changes the status lists before it summarises the rest.
const LISTED: usize = 12;
/// The config key the workers read live, so a freeze does not hold it.
const LIVE_KEY: &str = "degradation";

/// Puts the live templates and config into `desired` and lists what that holds back from the
/// spec's `spec_version` and config.
pub fn hold(desired: &mut Children, live: &LiveRollout<'_>, spec_version: &str) -> Vec<String> {
    let mut held = vec![];
    if let Some(running) = live.version.filter(|v| *v != spec_version) {
        held.push(format!("version {running} -> {spec_version}"));
    }
    if let (Some(live_config), Some(desired_config)) = (live.config, desired.config_yaml_mut())
        && let Some((kept, changed)) = hold_config(desired_config, live_config)
    {
        *desired_config = kept;
        held.extend(changed.into_iter().map(|path| format!("config {path}")));
    }
    for (role, template) in desired.templates_mut() {
        let Some((_, running)) = live.templates.iter().find(|(r, _)| *r == role) else {
            continue;
        };
        let mut changed = vec![];
        subset_diff(
            "",
            &comparable(template),
            &comparable(running),
            &mut changed,
        );
        held.extend(
            changed
                .into_iter()
                .map(|path| format!("{} pod template {path}", role.as_str())),
        );
        *template = running.clone();
    }
    if held.len() > LISTED {
        let more = held.len() - LISTED;
        held.truncate(LISTED);
        held.push(format!("and {more} more"));
    }
    held
}

/// The live config with the desired degradation switch, and the paths where the desired config
/// differs otherwise; None when either does not parse (then nothing is held).
fn hold_config(desired: &str, live: &str) -> Option<(String, Vec<String>)> {
    let mut desired: serde_yaml::Mapping = serde_yaml::from_str(desired).ok()?;
    let mut live: serde_yaml::Mapping = serde_yaml::from_str(live).ok()?;
    let switch = desired.remove(LIVE_KEY);
    live.remove(LIVE_KEY);
    let mut changed = vec![];
    full_diff(
        "",
        &yaml_to_json(serde_yaml::Value::Mapping(desired)),
        &yaml_to_json(serde_yaml::Value::Mapping(live.clone())),
        &mut changed,
    );
    if let Some(switch) = switch {
        live.insert(LIVE_KEY.into(), switch);
    }
    Some((serde_yaml::to_string(&live).ok()?, changed))
}

/// YAML as JSON for diffing; a tagged value (`storage: !cassandra ...`) becomes `{tag: value}`.
fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or_default(),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other).unwrap_or_default(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string().trim_start_matches('!').to_owned();
            Value::Object([(tag, yaml_to_json(t.value))].into_iter().collect())
        }
    }
}

/// A template as JSON without what other entries already report: the version label (the version
/// entry) and the config hash (the config entries).
fn comparable(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(meta) = t.get_mut("metadata") {
        for (field, key) in [
            ("labels", VERSION_LABEL),
            ("annotations", CONFIG_HASH_ANNOTATION),
        ] {
            if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
                map.remove(key);
            }
        }
    }
    t
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Array elements are named by their `name` field where they have one (containers, volumes).
fn element(path: &str, index: usize, v: &Value) -> String {
    match v.get("name").and_then(Value::as_str) {
        Some(name) => format!("{path}[{name}]"),
        None => format!("{path}[{index}]"),
    }
}

/// Paths where `want` sets something `have` lacks or has otherwise. Fields only `have` sets are
/// ignored: the API server fills in defaults (so a removal alone is not listed).
fn subset_diff(path: &str, want: &Value, have: &Value, out: &mut Vec<String>) {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for (key, wv) in w {
                match h.get(key) {
                    Some(hv) => subset_diff(&join(path, key), wv, hv, out),
                    None if !wv.is_null() => out.push(join(path, key)),
                    None => {}
                }
            }
        }
        (Value::Array(w), Value::Array(h)) if w.len() == h.len() => {
            for (i, (wv, hv)) in w.iter().zip(h).enumerate() {
                subset_diff(&element(path, i, wv), wv, hv, out);
            }
        }
        _ if want != have => out.push(path.to_owned()),
        _ => {}
    }
}

/// Paths where two configs differ, both ways (neither side is defaulted by anyone).
fn full_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                match (x.get(key), y.get(key)) {
                    (Some(xv), Some(yv)) => full_diff(&join(path, key), xv, yv, out),
                    _ => out.push(join(path, key)),
                }
            }
        }
        _ if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::{Plan, Replicas, desired};
    use crate::dataplane_config;
    use crate::test_support::{cassandra_pipeline, pipeline};
    use tailwarden_crds::RetailPipeline;

    fn build(p: &RetailPipeline, version: &str, degraded: bool) -> Children {
        desired(
            p,
            &Plan {
                config: dataplane_config::render(
                    &kube::ResourceExt::name_any(p),
                    &p.spec,
                    degraded,
                )
                .unwrap(),
                replicas: Replicas {
                    ingest: 1,
                    serve: 1,
                },
                version: version.into(),
                paused: false,
            },
        )
    }

    /// What the API server would return for `c`: its templates with a defaulted field added.
    fn live_of(c: &mut Children) -> (Vec<(Role, PodTemplateSpec)>, String) {
        let config = c.config_yaml_mut().unwrap().clone();
        let templates = c
            .templates_mut()
            .into_iter()
            .map(|(role, t)| {
                let mut t = t.clone();
                let spec = t.spec.as_mut().unwrap();
                spec.dns_policy = Some("ClusterFirst".into());
                spec.containers[0].termination_message_path = Some("/dev/termination-log".into());
                (role, t)
            })
            .collect();
        (templates, config)
    }

    #[test]
    fn an_unchanged_spec_holds_back_nothing_despite_server_defaults() {
        let p = cassandra_pipeline("shop");
        let (templates, config) = live_of(&mut build(&p, "1.0.0", false));
        let mut now = build(&p, "1.0.0", false);
        let live = LiveRollout {
            version: Some("1.0.0"),
            templates: &templates,
            config: Some(&config),
        };
        assert_eq!(hold(&mut now, &live, "1.0.0"), Vec::<String>::new());
        assert_eq!(now.templates_mut()[0].1, &templates[0].1);
    }

    #[test]
    fn version_config_and_resources_are_held_and_listed_but_degradation_goes_through() {
        let p = cassandra_pipeline("shop");
        let (templates, config) = live_of(&mut build(&p, "1.0.0", false));
        let mut changed = p.clone();
        changed.spec.dataplane.version = "1.1.0".into();
        changed.spec.ingest.batch.linger = "50ms".into();
        changed.spec.serve.resources = Some(
            serde_json::from_value(serde_json::json!(
                {"limits": {"cpu": "3"}}
            ))
            .unwrap(),
        );
        // The plan renders the running version while frozen; the spec's is listed.
        let mut desired = build(&changed, "1.0.0", true);
        let live = LiveRollout {
            version: Some("1.0.0"),
            templates: &templates,
            config: Some(&config),
        };
        let held = hold(&mut desired, &live, "1.1.0");
        assert_eq!(
            held,
            [
                "version 1.0.0 -> 1.1.0",
                "config ingest.batch.linger",
                "serve pod template spec.containers[dataplane].resources.limits.cpu",
            ],
            "{held:?}"
        );
        let templates_now: Vec<PodTemplateSpec> = desired
            .templates_mut()
            .into_iter()
            .map(|(_, t)| t.clone())
            .collect();
        assert_eq!(
            templates_now,
            [templates[0].1.clone(), templates[1].1.clone()]
        );
        let kept = desired.config_yaml_mut().unwrap().clone();
        let kept = yaml_to_json(serde_yaml::from_str(&kept).unwrap());
        let before = yaml_to_json(serde_yaml::from_str(&config).unwrap());
        assert_eq!(kept["ingest"], before["ingest"], "the batch linger is held");
        assert_eq!(
            kept[LIVE_KEY]["pauseNonCritical"],
            Value::Bool(true),
            "degradation goes through"
        );
    }

    #[test]
    fn a_new_workload_or_an_unreadable_config_is_not_held() {
        let p = pipeline("shop");
        let mut desired = build(&p, "1.0.0", false);
        let want = desired.clone();
        let live = LiveRollout {
            version: None,
            templates: &[],
            config: Some("{not yaml"),
        };
        assert!(hold(&mut desired, &live, "1.0.0").is_empty());
        assert_eq!(desired, want);
    }

    #[test]
    fn a_long_list_is_summarised() {
        let mut out = vec![];
        let want = serde_json::json!({"a": (0..20).collect::<Vec<_>>()});
        let have = serde_json::json!({"a": (100..120).collect::<Vec<_>>()});
        subset_diff("", &want, &have, &mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(out[3], "a[3]");
        let p = pipeline("shop");
        let mut desired = build(&p, "1.0.0", false);
        let (mut templates, _) = live_of(&mut desired.clone());
        let env: Vec<_> = (0..20)
            .map(|i| k8s_openapi::api::core::v1::EnvVar {
                name: format!("E{i}"),
                ..Default::default()
            })
            .collect();
        templates[0].1.spec.as_mut().unwrap().containers[0].env = Some(env.clone());
        desired.templates_mut()[0]
            .1
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .env = Some(
            env.into_iter()
                .map(|e| k8s_openapi::api::core::v1::EnvVar {
                    value: Some("x".into()),
                    ..e
                })
                .collect(),
        );
        let held = hold(
            &mut desired,
            &LiveRollout {
                version: Some("1.0.0"),
                templates: &templates,
                config: None,
            },
            "1.0.0",
        );
        assert_eq!(held.len(), LISTED + 1);
        assert_eq!(held.last().unwrap(), "and 8 more");
    }
}
