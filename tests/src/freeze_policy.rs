//! The chart's ValidatingAdmissionPolicy for the freeze annotations (a `-by` must name the
//! requesting user). The chart binds it cluster-wide; tests bind it to their own namespace, so
//! that tests running beside them (which set annotations as the admin) are not affected.

use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::json;

use crate::helm::render;

/// The installed policy and binding, to remove at the end of a test.
pub struct FreezePolicy {
    policies: Api<DynamicObject>,
    bindings: Api<DynamicObject>,
    policy: String,
    binding: String,
}

fn admission_api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

impl FreezePolicy {
    /// Applies the chart's policy with its binding narrowed to `namespace`. The API server loads
    /// it a moment later: callers wait until it denies something before relying on it.
    pub async fn install(admin: &Client, namespace: &str) -> Self {
        let objects = render(namespace, namespace, &[]);
        let of_kind = |kind: &str| -> DynamicObject {
            let o = objects
                .iter()
                .find(|o| o["kind"] == kind)
                .unwrap_or_else(|| panic!("the chart renders a {kind}"));
            serde_json::from_value(o.clone()).expect("a Kubernetes object")
        };
        let policy = of_kind("ValidatingAdmissionPolicy");
        let mut binding = of_kind("ValidatingAdmissionPolicyBinding");
        binding.data["spec"]["matchResources"] = json!({"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": namespace}}});
        let ssa = PatchParams::apply("tailwarden-tests").force();
        let policies = admission_api(
            admin,
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
        );
        let bindings = admission_api(
            admin,
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        );
        let policy_name = policy.metadata.name.clone().expect("a named policy");
        let binding_name = binding.metadata.name.clone().expect("a named binding");
        policies
            .patch(&policy_name, &ssa, &Patch::Apply(&policy))
            .await
            .expect("the policy applies");
        bindings
            .patch(&binding_name, &ssa, &Patch::Apply(&binding))
            .await
            .expect("the binding applies");
        FreezePolicy {
            policies,
            bindings,
            policy: policy_name,
            binding: binding_name,
        }
    }

    /// Deletes the binding and the policy.
    pub async fn remove(self) {
        let _ = self
            .bindings
            .delete(&self.binding, &DeleteParams::default())
            .await;
        let _ = self
            .policies
            .delete(&self.policy, &DeleteParams::default())
            .await;
    }
}
