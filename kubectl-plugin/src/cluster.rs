//! The cluster: a client from the kubeconfig as kubectl reads it, and the few requests the plugin
//! makes, each turned into an [`Error`] that names what failed.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use tailwarden_crds::RetailPipeline;

use crate::cli::Connection;
use crate::error::{Error, Request, Scope, Verb, classify};
use crate::suggest::suggestions;

/// The resource, as RBAC and errors name it.
const PIPELINES: &str = "retailpipelines";
/// Who made a change, in the pipeline's managedFields.
const FIELD_MANAGER: &str = "kubectl-tailwarden";

/// A connected client, the namespace to use and the server, for errors.
pub struct Cluster {
    client: Client,
    /// `-n`, else the context's namespace.
    pub namespace: String,
    server: String,
}

impl Cluster {
    /// Connects as `connection` says; only the kubeconfig is read, no request is made yet.
    pub async fn connect(connection: &Connection) -> Result<Self, Error> {
        let options = KubeConfigOptions {
            context: connection.context.clone(),
            ..Default::default()
        };
        let kubeconfig_error = |cause: &dyn std::fmt::Display| Error::Kubeconfig {
            cause: cause.to_string(),
        };
        let config = match &connection.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(&e))?;
                Config::from_custom_kubeconfig(file, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| kubeconfig_error(&e))?;
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        let namespace = connection
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| kubeconfig_error(&e))?;
        Ok(Cluster {
            client,
            namespace,
            server,
        })
    }

    /// `namespace/name` of a pipeline in the namespace in use.
    pub fn target(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    fn here(&self, verb: Verb) -> Request {
        Request {
            verb,
            resource: PIPELINES,
            scope: Scope::Namespace(self.namespace.clone()),
        }
    }

    /// The pipelines of the namespace in use, or of all namespaces.
    pub async fn pipelines(&self, all_namespaces: bool) -> Result<Vec<RetailPipeline>, Error> {
        let (api, request) = if all_namespaces {
            let request = Request {
                verb: Verb::List,
                resource: PIPELINES,
                scope: Scope::AllNamespaces,
            };
            (Api::all(self.client.clone()), request)
        } else {
            (self.api(), self.here(Verb::List))
        };
        let list = api.list(&ListParams::default()).await;
        Ok(self.check(list, request, None).await?.items)
    }

    /// One pipeline of the namespace in use.
    pub async fn pipeline(&self, name: &str) -> Result<RetailPipeline, Error> {
        let got = self.api().get(name).await;
        self.check(got, self.here(Verb::Get), Some(name)).await
    }

    /// Applies a JSON merge patch to a pipeline's metadata.
    pub async fn patch(&self, name: &str, patch: &serde_json::Value) -> Result<(), Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patched = self.api().patch(name, &params, &Patch::Merge(patch)).await;
        self.check(patched, self.here(Verb::Patch), Some(name))
            .await
            .map(drop)
    }

    /// The user name the API server sees, as the admission policy compares it with `-by`.
    pub async fn username(&self) -> Result<String, Error> {
        let request = Request {
            verb: Verb::Create,
            resource: "selfsubjectreviews",
            scope: Scope::Cluster,
        };
        let review = Api::<SelfSubjectReview>::all(self.client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|e| classify(e, request, &self.server))?;
        review
            .status
            .and_then(|s| s.user_info?.username)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::NoUsername {
                server: self.server.clone(),
            })
    }

    fn api(&self) -> Api<RetailPipeline> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The result of a pipeline request; a 404 is a missing CRD, or a missing pipeline `name`.
    async fn check<T>(
        &self,
        result: Result<T, kube::Error>,
        request: Request,
        name: Option<&str>,
    ) -> Result<T, Error> {
        match result {
            Ok(value) => Ok(value),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(match name {
                Some(name) if self.crd_served().await => Error::UnknownPipeline {
                    namespace: self.namespace.clone(),
                    name: name.to_owned(),
                    suggestions: self.close_names(name).await,
                },
                _ => Error::CrdMissing {
                    server: self.server.clone(),
                },
            }),
            Err(e) => Err(classify(e, request, &self.server)),
        }
    }

    /// Whether discovery serves RetailPipelines: a 404 of one pipeline could be either.
    async fn crd_served(&self) -> bool {
        let group_version = format!(
            "{}/{}",
            <RetailPipeline as kube::Resource>::group(&()),
            <RetailPipeline as kube::Resource>::version(&())
        );
        match self.client.list_api_group_resources(&group_version).await {
            Ok(list) => list.resources.iter().any(|r| r.name == PIPELINES),
            // Unsure (e.g. discovery denied): the pipeline is the likelier thing to be missing.
            Err(e) => !matches!(e, kube::Error::Api(s) if s.code == 404),
        }
    }

    /// Names in the namespace close to `name`; none when they cannot be listed.
    async fn close_names(&self, name: &str) -> Vec<String> {
        match self.api().list_metadata(&ListParams::default()).await {
            Ok(list) => {
                let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
                suggestions(name, names.iter().map(String::as_str))
            }
            Err(_) => vec![],
        }
    }
}
