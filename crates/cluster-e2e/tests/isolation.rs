//! The cluster cannot send a packet off the machine: these tests run in its network namespace,
//! which has only loopback, the real node's veth pair (tsnode0, with its address 10.200.0.1, and tsnode1), the pods'
//! bridge and the pods' veths, and no default route: every route leads to one of those. Every TCP
//! listener in it (etcd, the API server, the controllers, kwok, metrics-server, Prometheus, KEDA,
//! containerd, kube-proxy) is bound to 127.0.0.1, but for the real kubelet on the node's address
//! and the KEDA adapter's /metrics, on every address but fenced to loopback by iptables. Read from the
//! kernel's own tables (/proc/net is per network namespace), not from what the processes were told.

use cluster_e2e::{env, kubectl_json};

/// scripts/cluster/pipeline.sh's keda_adapter_metrics_port.
const KEDA_ADAPTER_METRICS: u16 = 9022;

/// (local address, port) of every listening socket in /proc/net/FILE.
fn listeners(file: &str) -> Vec<(String, u16)> {
    let table = std::fs::read_to_string(format!("/proc/net/{file}")).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // TCP state 0A is LISTEN; for UDP, 07 (unconnected) is a bound socket.
            let listening = cols
                .get(3)
                .is_some_and(|s| *s == "0A" || (file.starts_with("udp") && *s == "07"));
            let (addr, port) = cols.get(1)?.split_once(':')?;
            listening.then(|| (addr.to_string(), u16::from_str_radix(port, 16).unwrap()))
        })
        .collect()
}

#[test]
fn no_route_out_and_every_listener_on_127_0_0_1_or_the_node() {
    let Some(_env) = env() else { return };
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for link in &links {
        assert!(
            ["lo", "tsnode0", "tsnode1", "tspod0"].contains(&link.as_str())
                || link.starts_with("veth"),
            "an interface that is not the cluster's own: {link} (all: {links:?})"
        );
    }
    assert!(
        links.iter().any(|l| l == "tsnode0"),
        "the real node's interface: {links:?}"
    );
    // Iface, Destination, Gateway, Flags, ..., Mask: no default route, no gateway, and every route
    // to the node's veth or the pods' bridge.
    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    for r in routes.lines().skip(1) {
        let cols: Vec<&str> = r.split_whitespace().collect();
        assert!(
            ["tsnode0", "tspod0"].contains(&cols[0]),
            "a route through {}:\n{routes}",
            cols[0]
        );
        assert_ne!(cols[1], "00000000", "a default route:\n{routes}");
        assert_eq!(cols[2], "00000000", "a route through a gateway:\n{routes}");
    }

    let v4 = listeners("tcp");
    // 0100007F is 127.0.0.1 in the kernel's little-endian hex.
    let ports: Vec<u16> = v4.iter().map(|(_, p)| *p).collect();
    // etcd, API server, controller-manager, scheduler, kwok, metrics-server, kube-proxy.
    for port in [2379, 6443, 10257, 10259, 10250, 4443, 10249, 10256] {
        assert!(ports.contains(&port), "nothing listens on {port}: {v4:?}");
    }
    // 0100C80A is the real node's 10.200.0.1: only its kubelet (10250) listens there.
    assert!(
        v4.contains(&("0100C80A".into(), 10250)),
        "the real kubelet: {v4:?}"
    );
    for (addr, port) in &v4 {
        assert!(
            addr == "0100007F" || (addr == "0100C80A" && *port == 10250),
            "port {port} listens on {addr}, not 127.0.0.1"
        );
    }
    // Prometheus, the KEDA operator's gRPC metrics service and its probes, the KEDA adapter.
    for port in [9090, 9666, 9667, 6444] {
        assert!(ports.contains(&port), "nothing listens on {port}: {v4:?}");
    }
    // The one exception: the KEDA adapter's own /metrics (9022), which KEDA binds to the wildcard
    // address (`:port`, dual-stack, so in tcp6). Only loopback may reach it: an INPUT rule of
    // iptables and of ip6tables drops it on every other interface.
    let v6 = listeners("tcp6");
    assert_eq!(
        v6,
        [("0".repeat(32), KEDA_ADAPTER_METRICS)],
        "listeners in /proc/net/tcp6"
    );
    for iptables in ["iptables", "ip6tables"] {
        let port = KEDA_ADAPTER_METRICS.to_string();
        let rule = [
            "-C", "INPUT", "!", "-i", "lo", "-p", "tcp", "--dport", &port, "-j", "DROP",
        ];
        let ok = std::process::Command::new(iptables)
            .args(rule)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "{iptables}: no rule drops port {port} off loopback"
        );
    }
    for file in ["udp", "udp6"] {
        assert!(
            listeners(file).is_empty(),
            "listeners in /proc/net/{file}: {:?}",
            listeners(file)
        );
    }

    // Every kwok node's address is loopback (metrics-server scrapes kwok there); the real node's is
    // its own address in this namespace.
    let nodes = kubectl_json(&["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        let internal = n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .unwrap();
        let name = n["metadata"]["name"].as_str().unwrap();
        let want = if name == "real-cpu-1" {
            "10.200.0.1"
        } else {
            "127.0.0.1"
        };
        assert_eq!(internal["address"], want, "{name}");
    }
    let version = kubectl_json(&["version"]);
    assert_eq!(
        version["serverVersion"]["gitVersion"], "v1.36.3",
        "/version carries the ldflags"
    );
}
