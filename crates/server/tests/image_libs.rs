//! The runtime image's libraries are derived from the built binary (docker/collect-libs.sh, run by
//! docker/Dockerfile), not listed by hand. Run here on the server binary: every library ldd
//! resolves outside the base system is collected, with the companions they dlopen, and with only
//! the collected folder on the library path the loader finds everything there (none from the
//! torch wheel the binary was linked against), and the binary runs.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ldd(env_path: Option<&std::path::Path>) -> Vec<(String, String)> {
    let mut cmd = Command::new("ldd");
    cmd.arg(env!("CARGO_BIN_EXE_server"));
    if let Some(p) = env_path {
        cmd.env("LD_LIBRARY_PATH", p);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 3 && w[1] == "=>").then(|| (w[0].to_string(), w[2].to_string()))
        })
        .collect()
}

fn system(path: &str) -> bool {
    ["/lib/", "/usr/lib/", "/lib64/"]
        .iter()
        .any(|p| path.starts_with(p))
}

#[test]
fn collected_libraries_are_what_the_binary_loads() {
    let dest =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("libs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    let out = Command::new(root().join("docker/collect-libs.sh"))
        .arg(env!("CARGO_BIN_EXE_server"))
        .arg(&dest)
        .env("COLLECT_LINK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = std::fs::read_to_string(dest.join("LIBRARIES.txt")).unwrap();

    // Every non-system library ldd resolves is collected, under the name the loader asks for.
    let needed: Vec<(String, String)> = ldd(None).into_iter().filter(|(_, p)| !system(p)).collect();
    assert!(
        needed.iter().any(|(n, _)| n == "libtorch_cpu.so"),
        "{needed:?}"
    );
    for (name, _) in &needed {
        assert!(dest.join(name).exists(), "{name} not collected");
        assert!(list.contains(&format!("{name} <- ")), "{name} not listed");
    }
    // cuDNN's dlopened sub-libraries come with it (the GPU build links cuDNN).
    if needed.iter().any(|(n, _)| n == "libcudnn.so.9") {
        assert!(list.contains("libcudnn_ops.so.9 <- "), "{list}");
        assert!(list.contains("(opened by libcudnn.so.9)"), "{list}");
    }

    // With the collected folder first on the path, nothing comes from the wheel any more.
    for (name, path) in ldd(Some(&dest)) {
        assert!(
            system(&path) || path.starts_with(dest.to_str().unwrap()),
            "{name} resolved to {path}, outside the collected libraries"
        );
    }
    let run = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--healthcheck", "--port", "1"])
        .env("LD_LIBRARY_PATH", &dest)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("unhealthy"));
    std::fs::remove_dir_all(&dest).unwrap();
}
