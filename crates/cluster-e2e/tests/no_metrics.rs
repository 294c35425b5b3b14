//! Without metrics.k8s.io (its APIService removed, as on a cluster where nobody installed
//! metrics-server), the real HPA shows `<unknown>` with ScalingActive=False /
//! FailedGetResourceMetric; preflight warns before applying and `deployer status` says why and
//! what to install. The APIService is put back at the end.

use std::time::Duration;

use cluster_e2e::{clean, env, eventually, kubectl, kubectl_json, kubectl_ok, lock};

/// A kwok node: these pods must not land on the real node, where they would start containers of
/// an image nobody built for this test.
const KWOK_NODE: &str = "kwok-cpu-2";
const NS: &str = "ts-nometrics";

#[test]
fn without_metrics_the_hpa_is_unknown_and_the_deployer_says_why() {
    let Some(env) = env() else { return };
    let _turn = lock();
    clean(NS);
    let apiservice = env.root.join("scripts/cluster/metrics-apiservice.yaml");
    kubectl_ok(&["delete", "apiservice", "v1beta1.metrics.k8s.io"]);

    let applied = env.deployer(NS, &["apply", "--node", KWOK_NODE]);
    let text = applied.text();
    let restore = || {
        kubectl_ok(&["apply", "-f", apiservice.to_str().unwrap()]);
        kubectl_ok(&[
            "wait",
            "--for",
            "condition=Available",
            "apiservice/v1beta1.metrics.k8s.io",
            "--timeout",
            "90s",
        ]);
    };
    if applied.code != 0 {
        restore();
    }
    let applied = applied.expect_code(0, "apply without metrics (a warning, not an error)");
    assert!(
        text.contains("WARNING metrics.k8s.io is not served")
            && text.contains("Install metrics-server"),
        "preflight warns:\n{}",
        applied.text()
    );

    let hpa = eventually("ScalingActive=False", Duration::from_secs(60), || {
        let h = kubectl_json(&["get", "hpa", "torchship-server", "-n", NS]);
        let c = h["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ScalingActive")?
            .clone();
        (c["status"] == "False").then_some(c)
    });
    assert_eq!(hpa["reason"], "FailedGetResourceMetric", "{hpa}");
    let table = kubectl(&["get", "hpa", "torchship-server", "-n", NS]).stdout;
    assert!(
        table.contains("<unknown>/70%"),
        "kubectl shows <unknown>:\n{table}"
    );

    let status = env
        .deployer(NS, &["status"])
        .expect_code(0, "status")
        .text();
    restore();
    assert!(status.contains("<unknown> / 70%"), "{status}");
    assert!(
        status.contains("the HPA gets no CPU metrics") && status.contains("metrics-server"),
        "status explains the <unknown> and the fix:\n{status}"
    );
    env.deployer(NS, &["delete", "--node", KWOK_NODE])
        .expect_code(0, "delete");
}
