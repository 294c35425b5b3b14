//! The binary extension's wire keys are spelled, as quoted literals, in `crates/protocol/src/wire.rs`
//! only: everything else (server, load tester, tests, benchmarks, scripts) names the constants, so
//! a client and the server cannot drift apart. Prose (`*.md`) may name them freely.

use std::path::{Path, PathBuf};

use torchship_protocol::wire;

const TEXT: &[&str] = &[
    "rs", "py", "sh", "toml", "yaml", "yml", "json", "js", "html",
];

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        // Hidden folders (.git, .venv, .tools, .libtorch) and build output are not the project's text.
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else if path
            .extension()
            .is_some_and(|e| TEXT.contains(&e.to_string_lossy().as_ref()))
        {
            files.push(path);
        }
    }
}

#[test]
fn wire_keys_live_in_one_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    walk(&root, &mut files);
    assert!(
        files.len() > 50,
        "the walk found the workspace: {} files",
        files.len()
    );
    let mut holders: Vec<String> = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = text.to_ascii_lowercase();
        if wire::EXTENSION_KEYS
            .iter()
            .any(|k| text.contains(&format!("\"{k}\"")))
        {
            let shown = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            holders.push(shown);
        }
    }
    assert_eq!(holders, vec!["crates/protocol/src/wire.rs".to_string()]);
}
