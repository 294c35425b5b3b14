//! The objects the deployer applies: the files in `k8s/base/` (embedded at compile time, so the YAML
//! stays the single source of truth and `kubectl apply -k` applies the same thing), parsed into typed
//! k8s-openapi objects, then changed by typed transforms that mirror the kustomize overlays in
//! `k8s/overlays/` (a test checks `kubectl kustomize` against [`render`]). Overrides act on typed
//! fields, so they cannot produce invalid YAML.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, Namespace, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PodSpec, Service, ServiceAccount, Toleration,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::de::DeserializeOwned;

/// Label and taint that reserve a node for the server (`--node`).
pub const NODE_LABEL: (&str, &str) = ("role", "pytorch");
/// The extended resource the NVIDIA device plugin advertises.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The label GPU feature discovery puts on GPU nodes.
pub const GPU_NODE_LABEL: (&str, &str) = ("nvidia.com/gpu.present", "true");
/// The container that runs the server.
pub const CONTAINER: &str = "server";

const BASE: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../../k8s/base/namespace.yaml"),
    ),
    (
        "serviceaccount.yaml",
        include_str!("../../../k8s/base/serviceaccount.yaml"),
    ),
    (
        "deployment.yaml",
        include_str!("../../../k8s/base/deployment.yaml"),
    ),
    (
        "service.yaml",
        include_str!("../../../k8s/base/service.yaml"),
    ),
    ("hpa.yaml", include_str!("../../../k8s/base/hpa.yaml")),
    ("pdb.yaml", include_str!("../../../k8s/base/pdb.yaml")),
    (
        "networkpolicy.yaml",
        include_str!("../../../k8s/base/networkpolicy.yaml"),
    ),
];

/// Where to run: plain CPU nodes or NVIDIA GPU nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Cpu,
    Gpu,
}

/// What `render` and `apply` change on top of `k8s/base/`.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    pub namespace: String,
    pub image: Option<String>,
    pub profile: Profile,
    /// Pin to the node labelled `role=pytorch` and tolerate its taint (the `pinned` overlay).
    pub pinned: bool,
    /// Scale on the queue through KEDA instead of CPU (the `custom-metrics` overlay).
    pub custom_metrics: bool,
    /// Its Prometheus and target (queue.rs).
    pub queue: crate::queue::QueueOptions,
    pub min_replicas: Option<i32>,
    pub max_replicas: Option<i32>,
    pub cpu_target: Option<i32>,
    pub gpus_per_pod: u32,
    /// Requests, pull policy, extra env, scale-down window (tuning.rs).
    pub tuning: crate::tuning::Tuning,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            namespace: "torchship".into(),
            image: None,
            profile: Profile::Cpu,
            pinned: false,
            custom_metrics: false,
            queue: Default::default(),
            min_replicas: None,
            max_replicas: None,
            cpu_target: None,
            gpus_per_pod: 1,
            tuning: Default::default(),
        }
    }
}

/// Why the manifests cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// An embedded file does not parse as the object it should hold (a broken k8s/ edit).
    #[error("k8s/base/{file}: {message}")]
    Parse { file: &'static str, message: String },
    /// The options contradict each other.
    #[error("{0}")]
    Options(String),
}

/// Every object, typed; [`Bundle::resources`] (objects.rs) is the one ordered list of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub namespace: Namespace,
    pub service_account: ServiceAccount,
    pub deployment: Deployment,
    pub service: Service,
    pub hpa: HorizontalPodAutoscaler,
    pub pdb: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
    /// With `--custom-metrics`: KEDA's ScaledObject, applied instead of `hpa` (KEDA makes the HPA
    /// from it); `hpa` stays the source of its bounds and behaviour.
    pub scaled_object: Option<serde_json::Value>,
}

fn parse<T: DeserializeOwned>(file: &'static str) -> Result<T, ManifestError> {
    let text = BASE
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, t)| *t)
        .expect("embedded file");
    serde_saphyr::from_str(text).map_err(|e| ManifestError::Parse {
        file,
        message: e.to_string(),
    })
}

impl Bundle {
    /// `k8s/base/` exactly as written.
    pub fn base() -> Result<Bundle, ManifestError> {
        Ok(Bundle {
            namespace: parse("namespace.yaml")?,
            service_account: parse("serviceaccount.yaml")?,
            deployment: parse("deployment.yaml")?,
            service: parse("service.yaml")?,
            hpa: parse("hpa.yaml")?,
            pdb: parse("pdb.yaml")?,
            network_policy: parse("networkpolicy.yaml")?,
            scaled_object: None,
        })
    }

    /// `k8s/base/` with the overlays and overrides that `options` select.
    pub fn render(options: &RenderOptions) -> Result<Bundle, ManifestError> {
        let mut b = Bundle::base()?;
        b.set_namespace(&options.namespace);
        if options.pinned {
            b.pin();
        }
        if options.profile == Profile::Gpu {
            b.use_gpus(options.gpus_per_pod)?;
        }
        b.override_scaling(options)?;
        b.tune(&options.tuning)?;
        if options.custom_metrics {
            let so = crate::queue::scaled_object(&b.hpa, &options.namespace, &options.queue)?;
            b.scaled_object = Some(so);
        }
        if let Some(image) = &options.image {
            b.container_mut().image = Some(image.clone());
        }
        Ok(b)
    }

    fn set_namespace(&mut self, ns: &str) {
        self.namespace.metadata.name = Some(ns.to_string());
        for meta in [
            &mut self.service_account.metadata,
            &mut self.deployment.metadata,
            &mut self.service.metadata,
            &mut self.hpa.metadata,
            &mut self.pdb.metadata,
            &mut self.network_policy.metadata,
        ] {
            meta.namespace = Some(ns.to_string());
        }
    }

    pub fn pod_spec_mut(&mut self) -> &mut PodSpec {
        let spec = self.deployment.spec.get_or_insert_with(Default::default);
        spec.template.spec.get_or_insert_with(Default::default)
    }

    pub fn pod_spec(&self) -> Option<&PodSpec> {
        self.deployment.spec.as_ref()?.template.spec.as_ref()
    }

    pub(crate) fn container_mut(&mut self) -> &mut k8s_openapi::api::core::v1::Container {
        let pod = self.pod_spec_mut();
        let i = pod
            .containers
            .iter()
            .position(|c| c.name == CONTAINER)
            .unwrap_or(0);
        &mut pod.containers[i]
    }

    /// The `pinned` overlay.
    fn pin(&mut self) {
        let (key, value) = NODE_LABEL;
        let pod = self.pod_spec_mut();
        pod.node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        pod.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: key.into(),
                            operator: "In".into(),
                            values: Some(vec![value.into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        pod.tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: Some(key.into()),
                operator: Some("Equal".into()),
                value: Some(value.into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            });
    }

    /// The `gpu` overlay, with `gpus` GPUs per pod.
    fn use_gpus(&mut self, gpus: u32) -> Result<(), ManifestError> {
        if gpus == 0 {
            return Err(ManifestError::Options(
                "--gpus-per-pod must be at least 1 with --profile gpu".into(),
            ));
        }
        let pod = self.pod_spec_mut();
        pod.node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(GPU_NODE_LABEL.0.into(), GPU_NODE_LABEL.1.into());
        pod.tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: Some(GPU_RESOURCE.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            });
        let c = self.container_mut();
        let env = c.env.get_or_insert_with(Vec::new);
        match env.iter_mut().find(|e| e.name == "TORCHSHIP_DEVICE") {
            Some(e) => e.value = Some("cuda".into()),
            None => env.push(EnvVar {
                name: "TORCHSHIP_DEVICE".into(),
                value: Some("cuda".into()),
                ..Default::default()
            }),
        }
        c.resources
            .get_or_insert_with(Default::default)
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert(GPU_RESOURCE.into(), Quantity(gpus.to_string()));
        Ok(())
    }

    fn override_scaling(&mut self, o: &RenderOptions) -> Result<(), ManifestError> {
        let spec = self.hpa.spec.get_or_insert_with(Default::default);
        if let Some(min) = o.min_replicas {
            spec.min_replicas = Some(min);
        }
        if let Some(max) = o.max_replicas {
            spec.max_replicas = max;
        }
        let min = spec.min_replicas.unwrap_or(1);
        if min < 1 || spec.max_replicas < min {
            return Err(ManifestError::Options(format!(
                "replicas: need 1 <= --min-replicas ({min}) <= --max-replicas ({})",
                spec.max_replicas
            )));
        }
        if let Some(target) = o.cpu_target {
            if !(1..=100).contains(&target) {
                return Err(ManifestError::Options(format!(
                    "--cpu-target {target} is not a percentage in 1..=100"
                )));
            }
            for m in spec.metrics.iter_mut().flatten() {
                if let Some(r) = m.resource.as_mut().filter(|r| r.name == "cpu") {
                    r.target.average_utilization = Some(target);
                }
            }
        }
        Ok(())
    }

    /// Every object as JSON, in apply order (what server-side apply sends); the list is
    /// [`Bundle::resources`].
    pub fn objects(&self) -> Vec<serde_json::Value> {
        self.resources().into_iter().map(|o| o.value).collect()
    }

    /// Multi-document YAML, for GitOps (`deployer render`).
    pub fn to_yaml(&self) -> String {
        self.objects()
            .iter()
            .map(|o| serde_saphyr::to_string(o).expect("JSON values serialise as YAML"))
            .collect::<Vec<_>>()
            .join("---\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_parses_and_leaves_replicas_to_the_hpa() {
        let b = Bundle::base().unwrap();
        assert!(b.deployment.spec.as_ref().unwrap().replicas.is_none());
        let hpa = b.hpa.spec.as_ref().unwrap();
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 10));
        let c = &b.pod_spec().unwrap().containers[0];
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert!(requests.contains_key("cpu"), "the HPA needs CPU requests");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
    }

    #[test]
    fn overrides_act_on_typed_fields_and_are_checked() {
        let o = RenderOptions {
            namespace: "ml".into(),
            image: Some("registry.example/torchship:1".into()),
            profile: Profile::Gpu,
            pinned: true,
            min_replicas: Some(4),
            max_replicas: Some(6),
            cpu_target: Some(55),
            gpus_per_pod: 2,
            ..Default::default()
        };
        let b = Bundle::render(&o).unwrap();
        assert!(b
            .objects()
            .iter()
            .skip(1)
            .all(|o| o["metadata"]["namespace"] == "ml"));
        let pod = b.pod_spec().unwrap();
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.example/torchship:1")
        );
        let limits = pod.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits[GPU_RESOURCE], Quantity("2".into()));
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 2);
        let hpa = b.hpa.spec.as_ref().unwrap();
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(4), 6));
        assert_eq!(
            hpa.metrics.as_ref().unwrap()[0]
                .resource
                .as_ref()
                .unwrap()
                .target
                .average_utilization,
            Some(55)
        );

        for bad in [
            RenderOptions {
                min_replicas: Some(0),
                ..Default::default()
            },
            RenderOptions {
                min_replicas: Some(5),
                max_replicas: Some(4),
                ..Default::default()
            },
            RenderOptions {
                cpu_target: Some(150),
                ..Default::default()
            },
            RenderOptions {
                profile: Profile::Gpu,
                gpus_per_pod: 0,
                ..Default::default()
            },
        ] {
            assert!(Bundle::render(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn yaml_round_trips() {
        let b = Bundle::render(&RenderOptions {
            custom_metrics: true,
            ..Default::default()
        })
        .unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&b.to_yaml()).unwrap();
        assert_eq!(docs, b.objects());
    }
}
