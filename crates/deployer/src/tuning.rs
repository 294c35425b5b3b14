//! Overrides of the server container and the HPA's scale-down that no overlay carries: CPU and
//! memory requests (how many replicas fit on a node), the CPU limit (what one replica can serve), the image pull policy, extra environment
//! variables (server flags, or a value whose change rolls every pod), and the scale-down
//! stabilization window. Each is checked here, so a bad value is refused before any request.

use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::manifests::{Bundle, ManifestError};

/// `--image-pull-policy`: as the pod spec's `imagePullPolicy`, spelled as Kubernetes (and
/// `kubectl run --image-pull-policy`) spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Only an image already on the node (imported into its runtime); never contact a registry.
    #[value(name = "Never")]
    Never,
    /// Pull when the node lacks the image (the manifests' default).
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    /// Ask the registry on every pod start.
    #[value(name = "Always")]
    Always,
}

impl PullPolicy {
    fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Never => "Never",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
        }
    }
}

/// What this module changes; all `None`/empty leaves `k8s/base/` as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuning {
    pub cpu_request: Option<String>,
    /// The container's CPU limit (`--cpu-limit`), what one pod can serve at most.
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub pull_policy: Option<PullPolicy>,
    /// `NAME=VALUE` pairs, already split; a name the manifest sets is replaced in place.
    pub env: Vec<(String, String)>,
    pub scale_down_window: Option<Duration>,
}

/// `--env NAME=VALUE`: a C identifier (what a shell and the server's clap can read) and a value.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected NAME=VALUE"))?;
    let ident = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident {
        return Err(format!(
            "'{name}' is not an environment variable name (letters, digits, _)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// A CPU or memory quantity as Kubernetes writes them (`250m`, `0.5`, `512Mi`, `1G`), positive.
fn quantity(flag: &str, v: &str) -> Result<Quantity, ManifestError> {
    let v = v.trim();
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &v[digits.len()..];
    let known = [
        "", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "P", "E",
    ];
    let number = digits.parse::<f64>().ok().filter(|n| n.is_finite());
    match number {
        Some(n) if n > 0.0 && known.contains(&suffix) => Ok(Quantity(v.to_string())),
        _ => Err(ManifestError::Options(format!(
            "{flag} '{v}' is not a positive Kubernetes quantity (e.g. 250m, 0.5, 512Mi, 2Gi)"
        ))),
    }
}

impl Bundle {
    pub(crate) fn tune(&mut self, t: &Tuning) -> Result<(), ManifestError> {
        let requests = [
            ("cpu", "--cpu-request", &t.cpu_request),
            ("memory", "--memory-request", &t.memory_request),
        ];
        let mut parsed = Vec::new();
        for (resource, flag, value) in requests {
            if let Some(v) = value {
                parsed.push((resource, quantity(flag, v)?));
            }
        }
        if let Some(w) = t.scale_down_window {
            // The API server's own bound for stabilizationWindowSeconds.
            if w > Duration::from_secs(3600) {
                return Err(ManifestError::Options(format!(
                    "--scale-down-window {}s: Kubernetes allows at most 3600s",
                    w.as_secs()
                )));
            }
            let spec = self.hpa.spec.get_or_insert_with(Default::default);
            let behavior = spec.behavior.get_or_insert_with(Default::default);
            let down = behavior.scale_down.get_or_insert_with(Default::default);
            down.stabilization_window_seconds = Some(w.as_secs() as i32);
        }
        let c = self.container_mut();
        let resources = c
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        for (resource, q) in parsed {
            resources
                .requests
                .get_or_insert_with(Default::default)
                .insert(resource.to_string(), q);
        }
        if let Some(v) = &t.cpu_limit {
            let limit = quantity("--cpu-limit", v)?;
            let limits = resources.limits.get_or_insert_with(Default::default);
            limits.insert("cpu".into(), limit);
        }
        let cpu = |m: &Option<std::collections::BTreeMap<String, Quantity>>| {
            let q = m.as_ref()?.get("cpu")?;
            torchship_kube::quantity(&q.0)
        };
        if let (Some(request), Some(limit)) = (cpu(&resources.requests), cpu(&resources.limits)) {
            if request > limit {
                return Err(ManifestError::Options(format!(
                    "the CPU request ({request} CPU) exceeds the CPU limit ({limit} CPU): Kubernetes refuses such a pod; lower --cpu-request or raise --cpu-limit"
                )));
            }
        }
        if let Some(p) = t.pull_policy {
            c.image_pull_policy = Some(p.as_str().to_string());
        }
        let env = c.env.get_or_insert_with(Vec::new);
        for (name, value) in &t.env {
            let var = EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                ..Default::default()
            };
            match env.iter_mut().find(|e| e.name == *name) {
                Some(e) => *e = var,
                None => env.push(var),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::RenderOptions;

    fn render(t: Tuning) -> Result<Bundle, ManifestError> {
        Bundle::render(&RenderOptions {
            tuning: t,
            ..Default::default()
        })
    }

    #[test]
    fn requests_pull_policy_env_and_window_land_on_typed_fields() {
        let b = render(Tuning {
            cpu_request: Some("150m".into()),
            cpu_limit: None,
            memory_request: Some("512Mi".into()),
            pull_policy: Some(PullPolicy::Never),
            env: vec![
                ("TORCHSHIP_DRAIN_TIMEOUT".into(), "10s".into()),
                ("ROLL".into(), "2".into()),
            ],
            scale_down_window: Some(Duration::from_secs(30)),
        })
        .unwrap();
        let c = &b.pod_spec().unwrap().containers[0];
        let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["cpu"], Quantity("150m".into()));
        assert_eq!(req["memory"], Quantity("512Mi".into()));
        // Limits stay the manifest's.
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["cpu"], Quantity("2".into()));
        let limited = render(Tuning {
            cpu_request: Some("200m".into()),
            cpu_limit: Some("200m".into()),
            ..Default::default()
        })
        .unwrap();
        let r = limited.pod_spec().unwrap().containers[0]
            .resources
            .clone()
            .unwrap();
        assert_eq!(r.limits.unwrap()["cpu"], Quantity("200m".into()));
        assert_eq!(r.requests.unwrap()["cpu"], Quantity("200m".into()));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
        let env = c.env.as_ref().unwrap();
        let drain: Vec<_> = env
            .iter()
            .filter(|e| e.name == "TORCHSHIP_DRAIN_TIMEOUT")
            .collect();
        assert_eq!(drain.len(), 1, "replaced in place, not added twice");
        assert_eq!(drain[0].value.as_deref(), Some("10s"));
        assert_eq!(env.last().unwrap().name, "ROLL");
        let down = b.hpa.spec.as_ref().unwrap().behavior.as_ref().unwrap();
        assert_eq!(
            down.scale_down
                .as_ref()
                .unwrap()
                .stabilization_window_seconds,
            Some(30)
        );
        // Nothing set: the base as written.
        assert_eq!(
            render(Tuning::default()).unwrap(),
            Bundle::render(&RenderOptions::default()).unwrap()
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag() {
        for (t, flag) in [
            (
                Tuning {
                    cpu_request: Some("0".into()),
                    ..Default::default()
                },
                "--cpu-request",
            ),
            (
                Tuning {
                    cpu_request: Some("-1".into()),
                    ..Default::default()
                },
                "--cpu-request",
            ),
            (
                Tuning {
                    cpu_request: Some("fast".into()),
                    ..Default::default()
                },
                "--cpu-request",
            ),
            (
                Tuning {
                    cpu_limit: Some("0m".into()),
                    ..Default::default()
                },
                "--cpu-limit",
            ),
            (
                Tuning {
                    cpu_request: Some("300m".into()),
                    cpu_limit: Some("0.2".into()),
                    ..Default::default()
                },
                "--cpu-limit",
            ),
            (
                // Above the manifest's limit of 2 CPU.
                Tuning {
                    cpu_request: Some("3".into()),
                    ..Default::default()
                },
                "--cpu-request",
            ),
            (
                Tuning {
                    memory_request: Some("1GB".into()),
                    ..Default::default()
                },
                "--memory-request",
            ),
            (
                Tuning {
                    scale_down_window: Some(Duration::from_secs(7200)),
                    ..Default::default()
                },
                "--scale-down-window",
            ),
        ] {
            let e = render(t).unwrap_err().to_string();
            assert!(e.contains(flag), "{e}");
        }
        assert!(parse_env("A_1=x=y").unwrap() == ("A_1".into(), "x=y".into()));
        for bad in ["noequals", "=v", "1A=v", "A-B=v"] {
            assert!(parse_env(bad).is_err(), "{bad}");
        }
    }
}
