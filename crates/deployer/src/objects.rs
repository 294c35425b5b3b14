//! The bundle as one ordered list: every object with its API resource and scope. `render`, apply,
//! diff and delete all walk [`Bundle::resources`], so an object added to the bundle is applied,
//! diffed and deleted without a line anywhere else. Applied in this order (dependencies first),
//! deleted in reverse.

use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::Value;

use crate::manifests::Bundle;

/// One object of the bundle, untyped for the walk but with its exact API resource (taken from the
/// typed object, not guessed from its kind).
#[derive(Clone, Debug)]
pub struct Object {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// The object as server-side apply sends it.
    pub value: Value,
}

impl Object {
    fn of<K: Resource<DynamicType = ()> + Serialize>(k: &K, namespaced: bool) -> Object {
        Object {
            resource: ApiResource::erase::<K>(&()),
            namespaced,
            value: serde_json::to_value(k).expect("k8s-openapi objects serialise"),
        }
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `Deployment`, `Service`, ...
    pub fn kind(&self) -> &str {
        &self.resource.kind
    }

    /// kubectl's name for the resource: `deployment.apps`, `service`.
    pub fn label(&self) -> String {
        let kind = self.resource.kind.to_lowercase();
        match self.resource.group.as_str() {
            "" => kind,
            group => format!("{kind}.{group}"),
        }
    }

    /// The API this object lives in (its namespace, for a namespaced one).
    pub fn api(&self, client: Client, namespace: &str) -> Api<DynamicObject> {
        if self.namespaced {
            Api::namespaced_with(client, namespace, &self.resource)
        } else {
            Api::all_with(client, &self.resource)
        }
    }

    /// The object for kube's dynamic API.
    pub fn dynamic(&self) -> DynamicObject {
        serde_json::from_value(self.value.clone()).expect("a k8s-openapi object is a DynamicObject")
    }
}

impl Bundle {
    /// Every object, in apply order. With a ScaledObject, it takes the HPA's place (KEDA makes
    /// and owns the HPA).
    pub fn resources(&self) -> Vec<Object> {
        let scaler = match &self.scaled_object {
            Some(so) => Object {
                resource: crate::queue::resource(),
                namespaced: true,
                value: so.clone(),
            },
            None => Object::of(&self.hpa, true),
        };
        vec![
            Object::of(&self.namespace, false),
            Object::of(&self.service_account, true),
            Object::of(&self.deployment, true),
            Object::of(&self.service, true),
            scaler,
            Object::of(&self.pdb, true),
            Object::of(&self.network_policy, true),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_scopes_are_kubectls() {
        let b = Bundle::base().unwrap();
        let list: Vec<(String, bool)> = b
            .resources()
            .iter()
            .map(|o| (o.label(), o.namespaced))
            .collect();
        let want = [
            ("namespace", false),
            ("serviceaccount", true),
            ("deployment.apps", true),
            ("service", true),
            ("horizontalpodautoscaler.autoscaling", true),
            ("poddisruptionbudget.policy", true),
            ("networkpolicy.networking.k8s.io", true),
        ];
        let want: Vec<(String, bool)> = want.iter().map(|(l, n)| (l.to_string(), *n)).collect();
        assert_eq!(list, want);
        let d = &b.resources()[2];
        assert_eq!(
            (d.kind(), d.resource.plural.as_str()),
            ("Deployment", "deployments")
        );
        assert_eq!(d.dynamic().metadata.name.as_deref(), Some(d.name()));
    }
}
