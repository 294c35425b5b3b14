//! The in-cluster Job (k8s/loadtest) must run: its arguments parse with this CLI, its scenario is
//! one the image ships (loadtest/scenarios -> /scenarios), it targets the Service and watches the
//! HPA that k8s/base defines, and its Role grants reads of exactly what `--watch-hpa` watches.
//! (Schema validation of the same files runs with every manifest in the deployer's tests.)

use std::path::PathBuf;

use clap::Parser;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

#[test]
fn the_job_targets_the_service_and_watches_the_hpa() {
    let job = &docs("k8s/loadtest/job.yaml")[0];
    let spec = &job["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let mut argv = vec!["loadtest".to_string()];
    argv.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    let args = loadtest::Args::try_parse_from(&argv).unwrap();

    let scenario = args.scenario.as_ref().unwrap();
    let shipped = root()
        .join("loadtest/scenarios")
        .join(scenario.strip_prefix("/scenarios").unwrap());
    assert!(shipped.exists(), "{} is not shipped", shipped.display());
    loadtest::Args::try_parse_from(["loadtest", "--scenario", shipped.to_str().unwrap()])
        .unwrap()
        .with_scenario()
        .unwrap();

    let service = &docs("k8s/base/service.yaml")[0];
    let (name, ns) = (
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap(),
    );
    let port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .unwrap()["port"]
        .as_i64()
        .unwrap();
    assert_eq!(
        args.url,
        format!("http://{name}.{ns}.svc.cluster.local:{port}")
    );

    let hpa = &docs("k8s/base/hpa.yaml")[0];
    assert_eq!(args.watch_hpa.as_deref(), hpa["metadata"]["name"].as_str());
    assert_eq!(
        Some(args.namespace.as_str()),
        hpa["metadata"]["namespace"].as_str()
    );
    assert_eq!(job["metadata"]["namespace"], ns);
    assert_eq!(
        container["image"],
        format!("torchship/loadtest:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn the_role_grants_reads_of_what_is_watched_and_nothing_else() {
    let rbac = docs("k8s/loadtest/rbac.yaml");
    let role = rbac.iter().find(|d| d["kind"] == "Role").unwrap();
    let rules: Vec<(String, String, Vec<String>)> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let verbs: Vec<String> = r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            let groups = r["apiGroups"].as_array().unwrap().clone();
            let resources = r["resources"].as_array().unwrap().clone();
            groups.into_iter().flat_map(move |g| {
                let verbs = verbs.clone();
                resources.clone().into_iter().map(move |res| {
                    (
                        g.as_str().unwrap().to_string(),
                        res.as_str().unwrap().to_string(),
                        verbs.clone(),
                    )
                })
            })
        })
        .collect();
    let read = vec!["get".to_string(), "list".into(), "watch".into()];
    assert_eq!(
        rules,
        [
            (
                "autoscaling".into(),
                "horizontalpodautoscalers".into(),
                read.clone()
            ),
            ("apps".into(), "deployments".into(), read),
        ]
    );
    let binding = rbac.iter().find(|d| d["kind"] == "RoleBinding").unwrap();
    let job = &docs("k8s/loadtest/job.yaml")[0];
    assert_eq!(
        binding["subjects"][0]["name"],
        job["spec"]["template"]["spec"]["serviceAccountName"]
    );
}
