//! The architecture, checked: the server's modules depend on each other without loops, the stages
//! below the handlers speak no HTTP, and the codec's crate has neither axum nor libtorch in it.
//! (Read from the sources: `crate::x` paths and `use` lines, test modules left out.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The text of a module: `src/x.rs`, or every file under `src/x/`, without its tests.
fn module_text(name: &str) -> String {
    let file = src().join(format!("{name}.rs"));
    let mut files = vec![];
    if file.exists() {
        files.push(file);
    }
    if let Ok(dir) = std::fs::read_dir(src().join(name)) {
        files.extend(
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs")),
        );
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            // Comments may name anything (a doc link is not a dependency).
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            if f.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("_tests.rs"))
            {
                String::new()
            } else {
                code
            }
        })
        .collect()
}

fn modules() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let all = modules();
    all.iter()
        .map(|m| {
            let text = module_text(m);
            let uses = all
                .iter()
                .filter(|other| *other != m)
                .filter(|other| {
                    text.contains(&format!("crate::{other}::"))
                        || text.contains(&format!("crate::{other};"))
                        || text.contains(&format!("crate::{other}}}"))
                        || text.contains(&format!("crate::{other},"))
                        || text.contains(&format!("crate::{{{other}"))
                })
                .cloned()
                .collect();
            (m.clone(), uses)
        })
        .collect()
}

/// A path from `from` back to itself, if there is one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeSet<String>>,
        target: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &g[at] {
            if next == target {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, target, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_string()];
    walk(g, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn modules_depend_on_each_other_without_loops() {
    let g = graph();
    assert!(g.len() >= 10, "found the modules: {g:?}");
    assert!(
        g["api"].contains("registry") && g["state"].contains("registry"),
        "the reader sees uses: {g:?}"
    );
    for m in g.keys() {
        if let Some(path) = cycle(&g, m) {
            panic!("dependency loop: {}\n{g:#?}", path.join(" -> "));
        }
    }
}

#[test]
fn the_stages_below_the_handlers_speak_no_http() {
    for m in [
        "registry",
        "runtime",
        "repository",
        "metrics",
        "device",
        "config",
    ] {
        let text = module_text(m);
        for http in [
            "axum",
            "ApiError",
            "StatusCode",
            "crate::api",
            "crate::error",
        ] {
            assert!(!text.contains(http), "{m} mentions {http}");
        }
    }
}

#[test]
fn the_codec_crate_has_no_http_and_no_libtorch() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/Cargo.toml"),
    )
    .unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("[dependencies]");
    for heavy in ["axum", "hyper", "tch", "torch-sys", "tokio"] {
        assert!(
            !deps.lines().any(|l| l.starts_with(heavy)),
            "protocol depends on {heavy}"
        );
    }
}

/// README's request-path paragraph names one file per stage; each must exist.
#[test]
fn the_readme_names_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let para = readme
        .split("The request path, one file per stage:")
        .nth(1)
        .expect("README has the request-path paragraph");
    let para = para.split("\n\n").next().unwrap();
    let paths: Vec<&str> = para
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|p| p.starts_with("crates/"))
        .collect();
    assert!(paths.len() >= 5, "{paths:?}");
    for p in paths {
        assert!(
            root.join(p).exists(),
            "README names {p}, which does not exist"
        );
    }
}
