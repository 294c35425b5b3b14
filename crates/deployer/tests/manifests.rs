//! The YAML in k8s/ and what the deployer renders can never drift apart: real `kubectl kustomize`
//! (v1.33, kustomize v5, installed by scripts/setup.sh) against `deployer render`, as parsed objects;
//! and every manifest and render variant through `kubernetes-validate --strict` for Kubernetes 1.33
//! and 1.37 (the newest it knows); and every render variant through checkov's Kubernetes policies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use deployer::manifests::{Bundle, Profile, RenderOptions};
use deployer::tuning::{PullPolicy, Tuning};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(path: &str) -> PathBuf {
    let p = root().join(path);
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// Objects keyed by kind/namespace/name.
fn by_key(docs: Vec<Value>) -> BTreeMap<String, Value> {
    docs.into_iter()
        .map(|d| {
            let key = format!(
                "{}/{}/{}",
                d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]
            );
            (key, d)
        })
        .collect()
}

fn kustomize(dir: &str) -> BTreeMap<String, Value> {
    let out = Command::new(tool(".tools/kubectl"))
        .args(["kustomize", dir])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    by_key(serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap())
}

fn variants() -> Vec<(&'static str, RenderOptions)> {
    vec![
        ("k8s/base", RenderOptions::default()),
        (
            "k8s/overlays/pinned",
            RenderOptions {
                pinned: true,
                ..Default::default()
            },
        ),
        (
            "k8s/overlays/gpu",
            RenderOptions {
                profile: Profile::Gpu,
                ..Default::default()
            },
        ),
        (
            "k8s/overlays/custom-metrics",
            RenderOptions {
                custom_metrics: true,
                ..Default::default()
            },
        ),
    ]
}

#[test]
fn kubectl_kustomize_equals_deployer_render_for_every_overlay() {
    for (dir, options) in variants() {
        let want = kustomize(dir);
        // Through the YAML text, as a GitOps pipeline would read `deployer render`.
        let yaml = Bundle::render(&options).unwrap().to_yaml();
        let got = by_key(serde_saphyr::from_multiple(&yaml).unwrap());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{dir}: objects"
        );
        for (key, w) in &want {
            assert_eq!(
                &got[key], w,
                "{dir}: {key} differs between kubectl kustomize and deployer render"
            );
        }
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

/// Files whose kinds have no Kubernetes schema (they are not cluster objects).
const NOT_OBJECTS: &[&str] = &["kustomization.yaml", "kind-cluster.yaml"];
/// kubernetes-validate knows Kubernetes' own kinds only: KEDA's ScaledObject is checked against
/// KEDA's own CRD schema by the real API server instead, when the cluster tests apply it
/// (crates/cluster-e2e/tests/queue.rs).
const KEDA: &str = "kind ScaledObject with api version keda.sh/v1alpha1";

fn validate(files: &[PathBuf]) {
    for version in ["1.33.0", "1.37.0"] {
        let out = Command::new(tool(".venv/bin/kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .args(files)
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate {version}:\n{log}"
        );
        for line in log.lines().filter(|l| l.contains("Couldn't find schema")) {
            assert!(
                NOT_OBJECTS.iter().any(|n| line.contains(n)) || line.contains(KEDA),
                "an object with no schema: {line}"
            );
        }
    }
}

#[test]
fn every_manifest_passes_strict_schema_validation() {
    let mut files = Vec::new();
    yaml_files(&root().join("k8s"), &mut files);
    assert!(files.len() >= 12, "{files:?}");
    validate(&files);
}

#[test]
fn every_render_variant_passes_strict_schema_validation() {
    let dir = std::env::temp_dir().join(format!("torchship-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    let mut all = variants();
    all.push((
        "everything",
        RenderOptions {
            profile: Profile::Gpu,
            pinned: true,
            custom_metrics: true,
            queue: deployer::queue::QueueOptions {
                prometheus_url: Some("http://prometheus.monitoring.svc.cluster.local:9090".into()),
                target: Some("4".into()),
            },
            namespace: "ml-serving".into(),
            image: Some("registry.example/torchship/server:0.1.0".into()),
            min_replicas: Some(2),
            max_replicas: Some(20),
            cpu_target: Some(60),
            gpus_per_pod: 2,
            tuning: Tuning {
                cpu_request: Some("150m".into()),
                cpu_limit: Some("500m".into()),
                memory_request: Some("768Mi".into()),
                pull_policy: Some(PullPolicy::Never),
                env: vec![("TORCHSHIP_MAX_BATCH_SIZE".into(), "16".into())],
                scale_down_window: Some(std::time::Duration::from_secs(30)),
            },
        },
    ));
    for (i, (_, options)) in all.iter().enumerate() {
        let path = dir.join(format!("render-{i}.yaml"));
        std::fs::write(&path, Bundle::render(options).unwrap().to_yaml()).unwrap();
        files.push(path);
    }
    validate(&files);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The production form of `--image`: pinned by digest.
const DIGEST_IMAGE: &str =
    "registry.example/torchship/server@sha256:ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

/// (check id, file) pairs.
type Findings = Vec<(String, String)>;

/// checkov (installed by set-up in .tools/checkov) on the files in `dir`: (failed, skipped) check ids
/// with their files. `--skip-download`: it must not call its vendor's API (nothing leaves the machine).
fn checkov(dir: &Path) -> (Findings, Findings) {
    let out = Command::new(tool(".tools/checkov/bin/checkov"))
        .args([
            "--directory",
            dir.to_str().unwrap(),
            "--framework",
            "kubernetes",
        ])
        .args(["--skip-download", "--output", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let ids = |key: &str| -> Findings {
        report["results"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let file = c["file_path"].as_str().unwrap().trim_start_matches('/');
                (
                    c["check_id"].as_str().unwrap().to_string(),
                    file.to_string(),
                )
            })
            .collect()
    };
    (ids("failed_checks"), ids("skipped_checks"))
}

#[test]
fn checkov_finds_nothing_unjustified_in_any_render_variant() {
    let dir = std::env::temp_dir().join(format!("torchship-checkov-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let variants = variants();
    for (i, (_, options)) in variants.iter().enumerate() {
        let options = RenderOptions {
            image: Some(DIGEST_IMAGE.into()),
            ..options.clone()
        };
        let yaml = Bundle::render(&options).unwrap().to_yaml();
        std::fs::write(dir.join(format!("digest-{i}.yaml")), yaml).unwrap();
    }
    let tag = Bundle::render(&RenderOptions::default()).unwrap().to_yaml();
    std::fs::write(dir.join("tag.yaml"), tag).unwrap();
    let (failed, skipped) = checkov(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    // Pinned by digest, every variant passes; the local-build tag is flagged for exactly that.
    assert_eq!(
        failed,
        [("CKV_K8S_43".to_string(), "tag.yaml".to_string())],
        "{failed:?}"
    );
    // The one suppression, justified in k8s/base/deployment.yaml, on every render's Deployment.
    assert_eq!(skipped.len(), variants.len() + 1, "{skipped:?}");
    assert!(
        skipped.iter().all(|(id, _)| id == "CKV_K8S_15"),
        "{skipped:?}"
    );
}
