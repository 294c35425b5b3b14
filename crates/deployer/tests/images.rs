//! The container images (docker/) agree with everything else, and pass hadolint:
//! - the Dockerfile's libtorch is the version tch expects (torch-sys's TORCH_VERSION, read from the
//!   resolved torch-sys sources) and the version local set-up pins (scripts/requirements.txt);
//! - the CUDA major of its runtime base image is the CUDA major of that torch build (the installed
//!   wheel's torch/version.py);
//! - the image names and tags that the README's build commands produce are the ones k8s/ and the
//!   deployer's default render use (server: k8s/base; load tester: the k8s/loadtest Job).
//!
//! - the Dockerfile's dependency layer copies every workspace member.
//!
//! No Docker engine runs here or in CI; the image is built with BuildKit by scripts/image.sh and run
//! on the local cluster's real node (crates/cluster-e2e/tests/real_node.rs). What can be checked
//! without building is checked here, and the ldd-derived library list in the server's tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use deployer::manifests::{Bundle, RenderOptions};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The default of `ARG NAME=value` in a Dockerfile.
fn arg(dockerfile: &str, name: &str) -> String {
    let prefix = format!("ARG {name}=");
    let values: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .collect();
    assert!(!values.is_empty(), "no ARG {name}=...");
    assert!(
        values.iter().all(|v| *v == values[0]),
        "ARG {name} has different defaults in different stages: {values:?}"
    );
    values[0].to_string()
}

/// What `docker build -f FILE -t TAG .` in the README tags.
fn readme_tag(dockerfile: &str) -> String {
    let readme = read("README.md");
    let tags: Vec<String> = readme
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("docker build ") && l.contains(&format!("-f {dockerfile} "))
        })
        .filter(|l| !l.contains("--build-arg"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "-t")?;
            words.get(i + 1).map(|t| t.to_string())
        })
        .collect();
    assert_eq!(
        tags.len(),
        1,
        "one plain `docker build -f {dockerfile} -t ...` in the README: {tags:?}"
    );
    tags[0].clone()
}

/// tch's expected libtorch version: TORCH_VERSION in the build script of the torch-sys that
/// Cargo.lock resolved.
///
/// `--filter-platform` with the host triple keeps `cargo metadata` to the packages a build for this
/// machine uses (a plain `cargo metadata` resolves every platform and needs the sources of
/// Windows-only crates that no Linux build downloads). No `--offline`: what the build already
/// fetched is read from the local cache, and anything else comes from crates.io, never from
/// whatever an earlier build happened to leave there.
fn tch_expected_libtorch() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "torch-sys")
        .expect("torch-sys in the dependency graph")["manifest_path"]
        .as_str()
        .unwrap()
        .to_string();
    let build_rs =
        std::fs::read_to_string(Path::new(&manifest).with_file_name("build.rs")).unwrap();
    build_rs
        .lines()
        .find_map(|l| l.trim().strip_prefix("const TORCH_VERSION: &str = \""))
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("TORCH_VERSION in torch-sys's build.rs")
        .to_string()
}

/// The triple rustc builds for by default (`host:` in `rustc -vV`).
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().unwrap();
    assert!(out.status.success(), "rustc -vV failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names its host")
        .trim()
        .to_string()
}

/// The CUDA version the installed torch wheel was built with ("13.0").
fn torch_cuda() -> String {
    let lib = root().join(".venv/lib");
    let python = std::fs::read_dir(&lib)
        .expect(".venv missing: run scripts/setup.sh")
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("python3")
        })
        .unwrap();
    let version = std::fs::read_to_string(python.join("site-packages/torch/version.py")).unwrap();
    version
        .lines()
        .find_map(|l| l.strip_prefix("cuda: Optional[str] = '"))
        .and_then(|v| v.strip_suffix('\''))
        .expect("torch/version.py names its CUDA")
        .to_string()
}

#[test]
fn hadolint_passes_on_both_dockerfiles() {
    let hadolint = root().join(".venv/bin/hadolint");
    assert!(
        hadolint.exists(),
        "{} missing: run scripts/setup.sh",
        hadolint.display()
    );
    for file in ["docker/Dockerfile", "docker/loadtest.Dockerfile"] {
        let out = Command::new(&hadolint)
            .args(["--no-color", file])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hadolint {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every ignore must be of one rule and explained by the comment just above it.
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(rules) = l.trim().strip_prefix("# hadolint ignore=") {
                assert!(
                    !rules.contains(','),
                    "{file}:{}: one rule per ignore",
                    i + 1
                );
                // The comment block right above the ignore must name the rule and say why.
                let above: Vec<&str> = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| l.trim().starts_with('#'))
                    .copied()
                    .collect();
                assert!(
                    above.iter().any(|l| l.contains(rules)) && above.len() >= 2,
                    "{file}:{}: the ignore of {rules} needs a comment above it saying why",
                    i + 1
                );
            }
            assert!(
                !l.contains("hadolint global ignore"),
                "{file}: no blanket ignores"
            );
        }
    }
}

/// Cargo refuses to build a workspace with a member missing, so the dependency layer of each
/// Dockerfile must copy every member's manifest and make a stub for each (found when the server
/// image was first really built: four members added since had been left out of both files).
#[test]
fn each_dockerfiles_dependency_layer_has_every_workspace_member() {
    let cargo = read("Cargo.toml");
    let list = cargo
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = ["))
        .and_then(|l| l.strip_suffix(']'))
        .expect("members = [...] on one line of Cargo.toml");
    let mut members: Vec<String> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .collect();
    members.sort();
    for file in ["docker/Dockerfile", "docker/loadtest.Dockerfile"] {
        let dockerfile = read(file);
        let mut copied: Vec<String> = dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix("COPY "))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.strip_suffix("/Cargo.toml"))
            .map(str::to_string)
            .collect();
        copied.sort();
        assert_eq!(
            copied, members,
            "{file}: COPY <member>/Cargo.toml lines vs Cargo.toml's members"
        );
        let stubs = dockerfile
            .split("RUN for d in ")
            .nth(1)
            .and_then(|rest| rest.split("; do").next())
            .expect("the stub loop");
        let mut stubbed: Vec<String> = stubs
            .split_whitespace()
            .filter(|w| *w != "\\")
            .map(str::to_string)
            .collect();
        stubbed.sort();
        assert_eq!(
            stubbed, members,
            "{file}: the stub loop vs Cargo.toml's members"
        );
    }
}

#[test]
fn the_dockerfile_uses_the_libtorch_tch_expects_and_a_matching_cuda() {
    let dockerfile = read("docker/Dockerfile");
    let torch = arg(&dockerfile, "TORCH_VERSION");
    assert_eq!(torch, tch_expected_libtorch(), "docker/Dockerfile vs tch");
    assert!(
        read("scripts/requirements.txt")
            .lines()
            .any(|l| l.trim() == format!("torch=={torch}")),
        "scripts/requirements.txt pins another torch than docker/Dockerfile ({torch})"
    );

    let cuda_image = arg(&dockerfile, "CUDA_IMAGE");
    let tag = cuda_image
        .strip_prefix("nvidia/cuda:")
        .expect("the CUDA runtime stage is NVIDIA's nvidia/cuda image");
    assert!(tag.contains("-runtime-"), "a runtime image: {cuda_image}");
    let image_major = tag.split('.').next().unwrap();
    let torch_cuda = torch_cuda();
    assert_eq!(
        image_major,
        torch_cuda.split('.').next().unwrap(),
        "base image {cuda_image} vs torch built for CUDA {torch_cuda}"
    );
    // The label says the same.
    assert!(dockerfile.contains(&format!("io.torchship.cuda.version=\"{torch_cuda}\"")));
}

#[test]
fn image_names_agree_between_readme_k8s_and_the_deployer() {
    let server = readme_tag("docker/Dockerfile");
    let rendered = Bundle::render(&RenderOptions::default()).unwrap().objects();
    let deployment = rendered.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"], server,
        "the deployer's default image"
    );
    let base: Value = serde_saphyr::from_str(&read("k8s/base/deployment.yaml")).unwrap();
    assert_eq!(
        base["spec"]["template"]["spec"]["containers"][0]["image"], server,
        "k8s/base"
    );
    assert!(
        server.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
        "{server} is tagged with the workspace version"
    );
    assert_eq!(
        arg(&read("docker/Dockerfile"), "VERSION"),
        env!("CARGO_PKG_VERSION")
    );

    let loadtest = readme_tag("docker/loadtest.Dockerfile");
    let job: Value = serde_saphyr::from_str(&read("k8s/loadtest/job.yaml")).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        loadtest
    );
}
