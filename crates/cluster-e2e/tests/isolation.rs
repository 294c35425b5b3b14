//! The cluster cannot send a packet off the machine: these tests run in its network namespace,
//! which has only `lo` and no route, and every TCP listener in it (etcd, the API server, the
//! controllers, kwok, metrics-server) is bound to 127.0.0.1. Read from the kernel's own tables
//! (/proc/net is per network namespace), not from what the processes were told.

use cluster_e2e::{env, kubectl_json};

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
fn only_loopback_and_every_listener_on_127_0_0_1() {
    let Some(_env) = env() else { return };
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(links, ["lo"], "the namespace has only loopback");
    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    assert_eq!(
        routes.lines().count(),
        1,
        "no IPv4 route besides loopback's own:\n{routes}"
    );

    let v4 = listeners("tcp");
    // 0100007F is 127.0.0.1 in the kernel's little-endian hex.
    let ports: Vec<u16> = v4.iter().map(|(_, p)| *p).collect();
    for port in [2379, 6443, 10257, 10259, 10250, 4443] {
        assert!(ports.contains(&port), "nothing listens on {port}: {v4:?}");
    }
    for (addr, port) in &v4 {
        assert_eq!(
            addr, "0100007F",
            "port {port} listens on {addr}, not 127.0.0.1"
        );
    }
    for file in ["tcp6", "udp", "udp6"] {
        assert!(
            listeners(file).is_empty(),
            "listeners in /proc/net/{file}: {:?}",
            listeners(file)
        );
    }

    // Every node's address is loopback: metrics-server scrapes kwok there, nowhere else.
    let nodes = kubectl_json(&["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        let internal = n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .unwrap();
        assert_eq!(
            internal["address"], "127.0.0.1",
            "{}",
            n["metadata"]["name"]
        );
    }
    let version = kubectl_json(&["version"]);
    assert_eq!(
        version["serverVersion"]["gitVersion"], "v1.36.3",
        "/version carries the ldflags"
    );
}
