//! What can go wrong, in words that say what to do next: the plugin is used at the worst moment
//! (a burning budget, a frozen rollout), so an error names the server, verb, resource or flag.

use std::fmt;
use std::path::PathBuf;

use tailwarden_crds::CRD_FILE;

/// Every failure of the plugin; each ends the command with a non-zero exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig.
    #[error(
        "cannot load a kubeconfig: {cause}: set KUBECONFIG or pass --kubeconfig, and --context to \
         pick a context"
    )]
    Kubeconfig { cause: String },
    /// The API server answers, but does not serve RetailPipelines.
    #[error(
        "the RetailPipeline CRD is not installed in the cluster at {server}: kubectl apply \
         --server-side -f crds/{CRD_FILE} (from the Tailwarden repository), or install the chart"
    )]
    CrdMissing { server: String },
    /// RBAC denies a request.
    #[error(
        "you may not {verb} {resource} {scope}: ask your cluster admin for a role that grants it \
         (kubectl auth can-i {verb} {resource} {flag} checks)",
        flag = scope.flag()
    )]
    Forbidden {
        verb: Verb,
        resource: &'static str,
        scope: Scope,
    },
    /// No pipeline of that name in the namespace.
    #[error(
        "there is no RetailPipeline {name:?} in namespace {namespace}{}",
        hint(namespace, suggestions)
    )]
    UnknownPipeline {
        namespace: String,
        name: String,
        /// Names in the namespace close to the one asked for, closest first.
        suggestions: Vec<String>,
    },
    /// No answer from the API server.
    #[error(
        "cannot reach the cluster at {server}: {cause}: check that it is running and that \
         KUBECONFIG, --kubeconfig or --context point at it"
    )]
    Unreachable { server: String, cause: String },
    /// The API server does not accept the credentials.
    #[error(
        "the cluster at {server} does not accept your credentials (401 Unauthorized): log in \
         again, or check the user of your kubeconfig context"
    )]
    Unauthorized { server: String },
    /// The API server refused a request for another reason, e.g. an admission policy.
    #[error("the cluster refused to {verb} {resource} {scope}: {message}")]
    Refused {
        verb: Verb,
        resource: &'static str,
        scope: Scope,
        message: String,
    },
    /// The SelfSubjectReview did not name the user, so an annotation cannot be signed.
    #[error(
        "the cluster at {server} did not say who you are (SelfSubjectReview has no username), \
         so the annotation cannot name you in its -by"
    )]
    NoUsername { server: String },
    /// `--for` is not a duration the annotations accept.
    #[error("--for {value}: {why}")]
    For { value: String, why: String },
    /// `--reason` is blank.
    #[error("--reason is empty: say why, it is recorded with the annotation")]
    EmptyReason,
    /// The `-f` file cannot be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The `-f` file is not a RetailPipeline.
    #[error("{} is not a RetailPipeline: {cause}", path.display())]
    NotAPipeline {
        path: PathBuf,
        cause: serde_yaml::Error,
    },
    /// The pipeline's SLOs cannot be rendered as rules.
    #[error("cannot render the rules of {pipeline}: {cause}")]
    Rules {
        pipeline: String,
        cause: tailwarden_operator::rules_file::RenderError,
    },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(String),
    /// Anything else the client reports.
    #[error("{verb} {resource} {scope} failed: {cause}")]
    Client {
        verb: Verb,
        resource: &'static str,
        scope: Scope,
        cause: String,
    },
}

fn hint(namespace: &str, suggestions: &[String]) -> String {
    let list = format!("kubectl tailwarden status -n {namespace} lists them");
    match suggestions {
        [] => format!(": {list}, or pass -n for another namespace"),
        names => format!("; did you mean {}? ({list})", names.join(" or ")),
    }
}

/// The verbs the plugin uses, as RBAC names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Patch,
    Create,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Patch => "patch",
            Verb::Create => "create",
        })
    }
}

/// Where a request applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (`-A`).
    AllNamespaces,
    /// A cluster-scoped resource.
    Cluster,
}

impl Scope {
    /// The `kubectl auth can-i` flag for the scope.
    fn flag(&self) -> String {
        match self {
            Scope::Namespace(ns) => format!("-n {ns}"),
            Scope::AllNamespaces => "-A".into(),
            Scope::Cluster => String::new(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Namespace(ns) => write!(f, "in namespace {ns}"),
            Scope::AllNamespaces => f.write_str("in all namespaces"),
            Scope::Cluster => f.write_str("cluster-wide"),
        }
    }
}

/// One request to the API server, to name it when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: Verb,
    pub resource: &'static str,
    pub scope: Scope,
}

/// The error for a failed request, but for 404s, which need a look at discovery to tell a missing
/// CRD from a missing object (see `Cluster::check`).
pub fn classify(err: kube::Error, request: Request, server: &str) -> Error {
    let Request {
        verb,
        resource,
        scope,
    } = request;
    let server = server.to_owned();
    match err {
        kube::Error::Api(status) if status.code == 401 => Error::Unauthorized { server },
        // RBAC says "User "x" cannot patch resource ..."; an admission policy's 403 says why else.
        kube::Error::Api(status)
            if status.code == 403
                && status.message.contains(&format!("cannot {verb} resource")) =>
        {
            Error::Forbidden {
                verb,
                resource,
                scope,
            }
        }
        kube::Error::Api(status) => Error::Refused {
            verb,
            resource,
            scope,
            message: status.message,
        },
        // The client's own wrapper says nothing; its sources say what failed.
        kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable {
            server,
            cause: causes(std::error::Error::source(&err).unwrap_or(&err)),
        },
        other => Error::Client {
            verb,
            resource,
            scope,
            cause: causes(&other),
        },
    }
}

/// An error and its sources, as one line: the root cause (connection refused, a TLS failure) is
/// usually at the bottom.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn request() -> Request {
        Request {
            verb: Verb::Patch,
            resource: "retailpipelines",
            scope: Scope::Namespace("shop".into()),
        }
    }

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, "").with_code(code).boxed())
    }

    #[test]
    fn rbac_denials_name_the_verb_the_resource_and_the_namespace() {
        let rbac = api(
            403,
            "retailpipelines.tailwarden.io \"web\" is forbidden: User \"bob\" cannot patch \
             resource \"retailpipelines\" in API group \"tailwarden.io\" in the namespace \"shop\"",
        );
        let text = classify(rbac, request(), "https://k8s:6443").to_string();
        assert!(
            text.starts_with("you may not patch retailpipelines in namespace shop: "),
            "{text}"
        );
        assert!(
            text.contains("kubectl auth can-i patch retailpipelines -n shop"),
            "{text}"
        );
    }

    #[test]
    fn an_admission_policys_403_is_passed_on_with_its_message() {
        let policy = api(
            403,
            "ValidatingAdmissionPolicy denied request: setting or changing \
             tailwarden.io/rollout-freeze needs the annotation tailwarden.io/rollout-freeze-by: bob",
        );
        let text = classify(policy, request(), "https://k8s:6443").to_string();
        assert!(
            text.starts_with("the cluster refused to patch retailpipelines in namespace shop: "),
            "{text}"
        );
        assert!(text.ends_with("rollout-freeze-by: bob"), "{text}");
    }

    #[test]
    fn a_401_names_the_server() {
        let text = classify(api(401, "Unauthorized"), request(), "https://k8s:6443").to_string();
        assert!(
            text.starts_with("the cluster at https://k8s:6443 does not accept your credentials"),
            "{text}"
        );
    }

    #[test]
    fn unknown_pipelines_suggest_close_names_or_how_to_list_them() {
        let unknown = |suggestions: &[&str]| {
            Error::UnknownPipeline {
                namespace: "shop".into(),
                name: "wbe".into(),
                suggestions: suggestions.iter().map(|s| s.to_string()).collect(),
            }
            .to_string()
        };
        assert_eq!(
            unknown(&["web", "webs"]),
            "there is no RetailPipeline \"wbe\" in namespace shop; did you mean web or webs? \
             (kubectl tailwarden status -n shop lists them)"
        );
        assert_eq!(
            unknown(&[]),
            "there is no RetailPipeline \"wbe\" in namespace shop: kubectl tailwarden status -n \
             shop lists them, or pass -n for another namespace"
        );
    }

    #[test]
    fn a_missing_crd_says_how_to_install_it() {
        let text = Error::CrdMissing {
            server: "https://k8s:6443".into(),
        }
        .to_string();
        assert!(
            text.starts_with(
                "the RetailPipeline CRD is not installed in the cluster at https://k8s:6443: \
                 kubectl apply --server-side -f crds/retailpipelines.tailwarden.io.yaml"
            ),
            "{text}"
        );
    }
}
