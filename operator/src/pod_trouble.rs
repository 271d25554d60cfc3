//! Why a pipeline's workers are not ready, read from their pods: a pure function.
//!
//! A workload's status only counts ready replicas; the pods say why the others are not. The Ready
//! condition quotes the most telling cause, so `kubectl get` answers what otherwise takes a
//! `kubectl describe pod` on the right pod.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod, PodCondition};
use kube::ResourceExt;

/// The kinds of trouble, most telling first: the order in which [`most_telling`] picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TroubleKind {
    /// The image cannot be pulled (or, with pull policy Never, is not on the node).
    ImagePull,
    /// The worker exits: it is in CrashLoopBackOff or its last run ended with a non-zero code.
    Crashing,
    /// The kubelet cannot create or start the container (e.g. `CreateContainerConfigError`).
    CannotStart,
    /// No node can take the pod.
    Unschedulable,
    /// The worker runs but does not pass its readiness probe.
    NotReady,
    /// The pod is waiting for a node or its container is still being created.
    Starting,
}

impl TroubleKind {
    /// The Ready condition's reason for this kind.
    pub fn reason(self) -> &'static str {
        match self {
            TroubleKind::ImagePull => "ImagePullFailed",
            TroubleKind::Crashing => "WorkerCrashing",
            TroubleKind::CannotStart => "WorkerCannotStart",
            TroubleKind::Unschedulable => "Unschedulable",
            TroubleKind::NotReady => "WorkerNotReady",
            TroubleKind::Starting => "WorkerStarting",
        }
    }
}

/// One pod's trouble, as the Ready condition reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTrouble {
    /// The pod.
    pub pod: String,
    /// The container, when the trouble is one container's rather than the pod's.
    pub container: Option<String>,
    /// What kind of trouble it is.
    pub kind: TroubleKind,
    /// The reason Kubernetes gives, e.g. `ErrImagePull`, `CrashLoopBackOff`, `Unschedulable`.
    pub reason: String,
    /// Kubernetes' message, or what the operator can tell (exit code, how long it has run).
    pub message: String,
}

impl fmt::Display for PodTrouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pod {}", self.pod)?;
        if let Some(container) = &self.container {
            write!(f, " container {container}")?;
        }
        write!(f, ": {}", self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Waiting reasons of an image that cannot be used.
const IMAGE_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
];
/// Waiting reasons of a container that is on its way up; any other waiting reason is a failure.
const STARTING_REASONS: [&str; 2] = ["ContainerCreating", "PodInitializing"];
/// The longest message quoted, in characters: a condition message is read in `kubectl get`.
const MAX_MESSAGE_CHARS: usize = 256;

/// The most telling trouble among `pods`, by [`TroubleKind`] and then by pod and container name
/// (so the same pods always give the same cause); None when no pod shows one.
pub fn most_telling(pods: &[Pod], now: Timestamp) -> Option<PodTrouble> {
    pods.iter()
        .filter(|pod| counts(pod))
        .flat_map(|pod| troubles(pod, now))
        .min_by(|a, b| (a.kind, &a.pod, &a.container).cmp(&(b.kind, &b.pod, &b.container)))
}

/// Pods on their way out (deleted, or ended like an evicted pod) are not what a workload waits for.
fn counts(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Every trouble of one pod: its containers' (the operator's pods have no init containers) and
/// its own.
fn troubles(pod: &Pod, now: Timestamp) -> Vec<PodTrouble> {
    let name = pod.name_any();
    let status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let containers = status.container_statuses.unwrap_or_default();
    let mut found: Vec<PodTrouble> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| {
            let (kind, reason, message) = container_trouble(c, &conditions, now);
            PodTrouble {
                pod: name.clone(),
                container: Some(c.name.clone()),
                kind,
                reason,
                message,
            }
        })
        .collect();
    let scheduled = find(&conditions, "PodScheduled");
    let (kind, reason, message) = match scheduled {
        Some(c) if c.status == "False" => (
            TroubleKind::Unschedulable,
            c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
            head(c.message.as_deref().unwrap_or_default()),
        ),
        Some(_) if containers.is_empty() => (
            TroubleKind::Starting,
            status.phase.unwrap_or_else(|| "Pending".into()),
            match since(scheduled, now) {
                Some(ago) => format!("scheduled {ago} ago, its containers are not created yet"),
                None => "scheduled, its containers are not created yet".into(),
            },
        ),
        None => (
            TroubleKind::Starting,
            status.phase.unwrap_or_else(|| "Pending".into()),
            "waiting for the scheduler".into(),
        ),
        _ => return found,
    };
    found.push(PodTrouble {
        pod: name,
        container: None,
        kind,
        reason,
        message,
    });
    found
}

/// The kind, Kubernetes' reason and a message for a container that is not ready.
fn container_trouble(
    c: &ContainerStatus,
    pod_conditions: &[PodCondition],
    now: Timestamp,
) -> (TroubleKind, String, String) {
    let state = c.state.clone().unwrap_or_default();
    let waiting = state.waiting.unwrap_or_default();
    let waiting_reason = waiting.reason.unwrap_or_default();
    let waiting_message = head(waiting.message.as_deref().unwrap_or_default());
    if IMAGE_REASONS.contains(&waiting_reason.as_str()) {
        return (TroubleKind::ImagePull, waiting_reason, waiting_message);
    }
    let previous = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let failed_before = previous.is_some_and(|t| t.exit_code != 0);
    // Under the workloads' restartPolicy Always, a terminated container has stopped unexpectedly.
    if waiting_reason == "CrashLoopBackOff" || state.terminated.is_some() || failed_before {
        let last_exit = state.terminated.as_ref().or(previous);
        let reason = match last_exit {
            _ if waiting_reason == "CrashLoopBackOff" => waiting_reason,
            Some(t) => t.reason.clone().unwrap_or_else(|| "Error".into()),
            None => "Error".into(),
        };
        let message = match last_exit {
            Some(t) => exit_message(t, &reason, c.restart_count),
            None => waiting_message,
        };
        return (TroubleKind::Crashing, reason, message);
    }
    if let Some(running) = state.running {
        let reason = find(pod_conditions, "ContainersReady")
            .and_then(|c| c.reason.clone())
            .unwrap_or_else(|| "ContainersNotReady".into());
        let running_for = running
            .started_at
            .map(|t| format!(" for {}", human(now.duration_since(t.0))))
            .unwrap_or_default();
        let message = format!("running{running_for} but its readiness probe does not pass");
        return (TroubleKind::NotReady, reason, message);
    }
    if waiting_reason.is_empty() || STARTING_REASONS.contains(&waiting_reason.as_str()) {
        let message = if waiting_message.is_empty() {
            since(find(pod_conditions, "PodScheduled"), now)
                .map(|ago| format!("scheduled {ago} ago"))
                .unwrap_or_default()
        } else {
            waiting_message
        };
        let reason = if waiting_reason.is_empty() {
            "Waiting".into()
        } else {
            waiting_reason
        };
        return (TroubleKind::Starting, reason, message);
    }
    (TroubleKind::CannotStart, waiting_reason, waiting_message)
}

/// The exit code, the termination's own reason when it adds to `reason`, the restarts, and the end
/// of the termination message: with `FallbackToLogsOnError` it is the log's last lines, and a
/// worker's error is its last line.
fn exit_message(t: &ContainerStateTerminated, reason: &str, restarts: i32) -> String {
    let mut message = format!("exit code {}", t.exit_code);
    if let Some(own) = t.reason.as_deref().filter(|own| *own != reason) {
        message.push_str(&format!(" ({own})"));
    }
    match restarts {
        0 => {}
        1 => message.push_str(", 1 restart"),
        n => message.push_str(&format!(", {n} restarts")),
    }
    let quoted = tail(t.message.as_deref().unwrap_or_default());
    if !quoted.is_empty() {
        message.push_str(": ");
        message.push_str(&quoted);
    }
    message
}

fn find<'a>(conditions: &'a [PodCondition], type_: &str) -> Option<&'a PodCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// How long ago `condition` last changed, for a pod's `PodScheduled`.
fn since(condition: Option<&PodCondition>, now: Timestamp) -> Option<String> {
    let at = condition?.last_transition_time.as_ref()?;
    Some(human(now.duration_since(at.0)))
}

/// A duration to the coarsest unit that still tells (`45s`, `12m`, `3h5m`, `2d4h`), so that the
/// message, and with it the status, does not change on every reconcile.
fn human(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h{}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `text` on one line, its first [`MAX_MESSAGE_CHARS`] characters at most.
fn head(text: &str) -> String {
    let line = one_line(text);
    if line.chars().count() <= MAX_MESSAGE_CHARS {
        return line;
    }
    let mut kept: String = line.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    kept.push('…');
    kept
}

/// `text` on one line, its last [`MAX_MESSAGE_CHARS`] characters at most.
fn tail(text: &str) -> String {
    let line = one_line(text);
    let count = line.chars().count();
    if count <= MAX_MESSAGE_CHARS {
        return line;
    }
    let skip = count - (MAX_MESSAGE_CHARS - 1);
    std::iter::once('…')
        .chain(line.chars().skip(skip))
        .collect()
}

/// Lines joined with ` | `, blank ones dropped: a condition message is one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: i64 = 1_700_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    /// RFC 3339 time `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        Timestamp::from_second(NOW - secs).unwrap().to_string()
    }

    fn pod(name: &str, status: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap()
    }

    /// A running pod whose one container has `state`, scheduled 30 s ago.
    fn with_container(name: &str, ready: bool, state: Value, last_state: Value) -> Pod {
        pod(
            name,
            json!({
                "phase": if ready { "Running" } else { "Pending" },
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(30)},
                    {"type": "ContainersReady", "status": if ready { "True" } else { "False" },
                     "reason": if ready { Value::Null } else { json!("ContainersNotReady") }},
                ],
                "containerStatuses": [{
                    "name": "dataplane", "image": "x", "imageID": "", "ready": ready,
                    "restartCount": 3, "state": state, "lastState": last_state,
                }],
            }),
        )
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({"waiting": {"reason": reason, "message": message}})
    }

    fn image_pull(name: &str) -> Pod {
        let message = r#"Container image "x" is not present with pull policy of Never"#;
        with_container(
            name,
            false,
            waiting("ErrImageNeverPull", message),
            json!({}),
        )
    }

    fn crash_loop(name: &str) -> Pod {
        let log = "{\"level\":\"ERROR\",\"message\":\"invalid configuration\"}\n\
                   tailwarden-dataplane: storage.embedded.path: not writable\n";
        with_container(
            name,
            false,
            waiting(
                "CrashLoopBackOff",
                "back-off 40s restarting failed container",
            ),
            json!({"terminated": {"exitCode": 2, "reason": "Error", "message": log}}),
        )
    }

    fn cannot_start(name: &str) -> Pod {
        let message = r#"secret "shop-ingest" not found"#;
        with_container(
            name,
            false,
            waiting("CreateContainerConfigError", message),
            json!({}),
        )
    }

    fn unschedulable(name: &str) -> Pod {
        pod(
            name,
            json!({"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient memory.",
            }]}),
        )
    }

    fn not_ready(name: &str) -> Pod {
        let running = json!({"running": {"startedAt": ago(200)}});
        with_container(name, false, running, json!({}))
    }

    fn creating(name: &str) -> Pod {
        with_container(name, false, waiting("ContainerCreating", ""), json!({}))
    }

    fn ready(name: &str) -> Pod {
        let running = json!({"running": {"startedAt": ago(200)}});
        with_container(name, true, running, json!({}))
    }

    fn cause(pods: &[Pod]) -> String {
        most_telling(pods, now()).unwrap().to_string()
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named_with_kubernetes_message() {
        let t = most_telling(&[image_pull("shop-web-0")], now()).unwrap();
        assert_eq!(t.kind, TroubleKind::ImagePull);
        assert_eq!(t.kind.reason(), "ImagePullFailed");
        assert_eq!(
            t.to_string(),
            r#"pod shop-web-0 container dataplane: ErrImageNeverPull: Container image "x" is not present with pull policy of Never"#
        );
        for reason in IMAGE_REASONS {
            let p = with_container("p", false, waiting(reason, "m"), json!({}));
            assert_eq!(
                most_telling(&[p], now()).unwrap().kind,
                TroubleKind::ImagePull
            );
        }
    }

    #[test]
    fn a_crash_loop_quotes_the_exit_code_restarts_and_the_last_log_lines() {
        let t = most_telling(&[crash_loop("shop-ingest-1")], now()).unwrap();
        assert_eq!(
            (t.kind, t.reason.as_str()),
            (TroubleKind::Crashing, "CrashLoopBackOff")
        );
        assert_eq!(t.container.as_deref(), Some("dataplane"));
        assert_eq!(
            t.message,
            "exit code 2 (Error), 3 restarts: {\"level\":\"ERROR\",\"message\":\"invalid \
             configuration\"} | tailwarden-dataplane: storage.embedded.path: not writable"
        );
    }

    #[test]
    fn a_non_zero_last_exit_is_a_crash_even_while_running_again() {
        let p = with_container(
            "p",
            false,
            json!({"running": {"startedAt": ago(5)}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        );
        let t = most_telling(&[p], now()).unwrap();
        assert_eq!(
            (t.kind, t.reason.as_str()),
            (TroubleKind::Crashing, "OOMKilled")
        );
        assert_eq!(t.message, "exit code 137, 3 restarts");
        // A clean earlier exit is not a crash: the container is just not ready.
        let p = with_container(
            "p",
            false,
            json!({"running": {"startedAt": ago(5)}}),
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
        );
        assert_eq!(
            most_telling(&[p], now()).unwrap().kind,
            TroubleKind::NotReady
        );
        // Stopped just now, before the kubelet backs off: a crash with the current exit.
        let p = with_container(
            "p",
            false,
            json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "boom"}}),
            json!({}),
        );
        assert_eq!(
            cause(&[p]),
            "pod p container dataplane: Error: exit code 1, 3 restarts: boom"
        );
    }

    #[test]
    fn a_container_the_kubelet_cannot_create_is_named() {
        let t = most_telling(&[cannot_start("p")], now()).unwrap();
        assert_eq!(t.kind.reason(), "WorkerCannotStart");
        assert_eq!(
            t.to_string(),
            r#"pod p container dataplane: CreateContainerConfigError: secret "shop-ingest" not found"#
        );
    }

    #[test]
    fn an_unschedulable_pod_quotes_the_scheduler() {
        let t = most_telling(&[unschedulable("p")], now()).unwrap();
        assert_eq!(
            (t.kind, t.container.as_deref()),
            (TroubleKind::Unschedulable, None)
        );
        assert_eq!(
            t.to_string(),
            "pod p: Unschedulable: 0/2 nodes are available: 2 Insufficient memory."
        );
    }

    #[test]
    fn a_running_container_that_is_not_ready_says_for_how_long() {
        let t = most_telling(&[not_ready("p")], now()).unwrap();
        assert_eq!(t.kind.reason(), "WorkerNotReady");
        assert_eq!(
            t.to_string(),
            "pod p container dataplane: ContainersNotReady: running for 3m but its readiness \
             probe does not pass"
        );
    }

    #[test]
    fn a_pod_being_created_or_scheduled_is_starting() {
        let t = most_telling(&[creating("p")], now()).unwrap();
        assert_eq!(t.kind.reason(), "WorkerStarting");
        assert_eq!(
            t.to_string(),
            "pod p container dataplane: ContainerCreating: scheduled 30s ago"
        );
        let new = pod("p", json!({"phase": "Pending"}));
        assert_eq!(cause(&[new]), "pod p: Pending: waiting for the scheduler");
        let bound = pod(
            "p",
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(7_500)},
            ]}),
        );
        assert_eq!(
            cause(&[bound]),
            "pod p: Pending: scheduled 2h5m ago, its containers are not created yet"
        );
    }

    #[test]
    fn the_most_telling_kind_wins_then_the_first_pod_by_name() {
        let pods = [
            ready("a-ready"),
            creating("b"),
            not_ready("c"),
            unschedulable("d"),
            cannot_start("e"),
            crash_loop("f"),
            image_pull("g"),
        ];
        let kinds = [
            TroubleKind::ImagePull,
            TroubleKind::Crashing,
            TroubleKind::CannotStart,
            TroubleKind::Unschedulable,
            TroubleKind::NotReady,
            TroubleKind::Starting,
        ];
        // Drop the most telling pod each time: the next kind is chosen.
        for (kind, shown) in kinds.iter().zip((1..pods.len()).rev()) {
            assert_eq!(most_telling(&pods[..=shown], now()).unwrap().kind, *kind);
        }
        assert_eq!(most_telling(&pods[..1], now()), None);
        let same = [crash_loop("shop-2"), crash_loop("shop-1")];
        assert_eq!(most_telling(&same, now()).unwrap().pod, "shop-1");
    }

    #[test]
    fn pods_on_their_way_out_are_not_the_cause() {
        let mut deleted = image_pull("old");
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        let mut evicted = crash_loop("evicted");
        evicted.status.as_mut().unwrap().phase = Some("Failed".into());
        assert_eq!(most_telling(&[deleted, evicted], now()), None);
        assert_eq!(most_telling(&[], now()), None);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_keeping_the_end_of_a_log() {
        let log = format!("{}\nfatal: the store is locked", "é".repeat(1_000));
        let p = with_container(
            "p",
            false,
            waiting("CrashLoopBackOff", ""),
            json!({"terminated": {"exitCode": 1, "message": log}}),
        );
        let message = most_telling(&[p], now()).unwrap().message;
        let (head_part, quoted) = message.split_once(": ").unwrap();
        assert_eq!(head_part, "exit code 1, 3 restarts");
        assert_eq!(quoted.chars().count(), MAX_MESSAGE_CHARS);
        assert!(quoted.starts_with("…é"), "{quoted}");
        assert!(
            quoted.ends_with("é | fatal: the store is locked"),
            "{quoted}"
        );

        let long = format!("{}é", "x".repeat(MAX_MESSAGE_CHARS));
        let p = with_container("p", false, waiting("ErrImagePull", &long), json!({}));
        let message = most_telling(&[p], now()).unwrap().message;
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(message.ends_with("x…"));
        assert_eq!(head("short\n\n  two lines "), "short | two lines");
    }

    #[test]
    fn durations_are_coarse() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (61, "1m"),
            (3_599, "59m"),
            (3_660, "1h1m"),
        ];
        for (secs, text) in cases.into_iter().chain([(90_000, "1d1h"), (-5, "0s")]) {
            assert_eq!(human(SignedDuration::from_secs(secs)), text);
        }
    }
}
