//! The shipped RBAC (k8s/rbac/deployer.yaml) is enough, and no more is assumed: the deployer runs
//! with a real ServiceAccount token bound only to it and can apply (with a pinned node), diff,
//! status and delete; with one verb taken away, the real API server's 403 comes back as an error
//! that names the verb and the resource.

use std::time::Duration;

use cluster_e2e::{clean, env, eventually, kubectl, kubectl_ok, lock};

const NS: &str = "torchship"; // the namespace k8s/rbac/deployer.yaml grants
const NODE: &str = "kwok-cpu-2";

/// A kubeconfig for the ServiceAccount's token, with the cluster's CA.
fn token_kubeconfig() -> std::path::PathBuf {
    let token = kubectl_ok(&[
        "create",
        "token",
        "torchship-deployer",
        "-n",
        NS,
        "--duration",
        "1h",
    ]);
    let ca = kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let server = kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "deployer",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "deployer", "user": {"token": token.trim()}}],
        "contexts": [{"name": "deployer", "context": {"cluster": "local", "user": "deployer"}}]
    });
    let path = std::env::temp_dir().join(format!(
        "torchship-deployer-sa-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[test]
fn the_shipped_role_is_enough_and_a_missing_verb_is_named() {
    let Some(env) = env() else { return };
    let _turn = lock();
    clean(NS);
    let rbac = env.root.join("k8s/rbac/deployer.yaml");
    kubectl_ok(&["create", "namespace", NS]);
    kubectl_ok(&["apply", "-f", rbac.to_str().unwrap()]);
    let kubeconfig = token_kubeconfig();
    let as_sa = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
        all.extend(args);
        env.deployer(NS, &all)
    };

    as_sa(&["apply", "--node", NODE]).expect_code(0, "apply as the deployer ServiceAccount");
    as_sa(&["diff", "--node", NODE]).expect_code(0, "diff as the ServiceAccount");
    as_sa(&["status"]).expect_code(0, "status as the ServiceAccount");

    // Take `patch` on HPAs away (rule 3 of the Role): server-side apply of the HPA is a PATCH.
    let patch =
        r#"[{"op": "replace", "path": "/rules/3/verbs", "value": ["get", "create", "delete"]}]"#;
    assert_eq!(
        kubectl_ok(&[
            "get",
            "role",
            "torchship-deployer",
            "-n",
            NS,
            "-o",
            "jsonpath={.rules[3].resources[0]}"
        ]),
        "horizontalpodautoscalers"
    );
    kubectl_ok(&[
        "patch",
        "role",
        "torchship-deployer",
        "-n",
        NS,
        "--type",
        "json",
        "-p",
        patch,
    ]);
    let refused = eventually(
        "the narrowed Role takes effect",
        Duration::from_secs(30),
        || {
            let r = as_sa(&["apply", "--node", NODE]);
            (r.code != 0).then_some(r)
        },
    );
    let text = refused.text();
    assert!(
        text.contains("403 Forbidden")
            && text.contains("cannot patch resource \"horizontalpodautoscalers\""),
        "the error names the verb and the resource:\n{text}"
    );
    kubectl_ok(&["apply", "-f", rbac.to_str().unwrap()]);

    let deleted = eventually(
        "the restored Role takes effect",
        Duration::from_secs(30),
        || {
            let r = as_sa(&["delete", "--node", NODE]);
            (r.code == 0).then_some(r)
        },
    );
    assert!(
        deleted
            .text()
            .contains(&format!("node/{NODE} label and taint removed")),
        "{}",
        deleted.text()
    );
    std::fs::remove_file(&kubeconfig).ok();
    let _ = kubectl(&[
        "delete",
        "clusterrolebinding,clusterrole",
        "torchship-deployer",
    ]);
}
