//! The model repository on disk, laid out like Triton's:
//!
//! ```text
//! models/<name>/config.toml
//! models/<name>/<labels file>         (an output's label_filename, for classification)
//! models/<name>/<version>/model.pt     (TorchScript; numeric versions, the highest one serves)
//! models/<name>/<version>/model.pt2    (an AOTInductor package, with platform = "pytorch_aoti")
//! ```
//!
//! Scanning never stops at one broken model: each failure is kept with its reason (naming the file), so
//! the good models still serve and the broken ones can be reported.

pub mod config;
pub mod labels;

use std::path::{Path, PathBuf};

pub use config::{ModelConfig, TensorSpec};

/// Why the repository as a whole cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The folder is missing or unreadable.
    #[error("model repository '{path}' cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One version folder to load.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionSource {
    pub version: u64,
    pub model_path: PathBuf,
}

/// A model found on disk: its config and the versions its policy selects.
#[derive(Clone, Debug)]
pub struct ModelSource {
    pub name: String,
    pub config: ModelConfig,
    pub versions: Vec<VersionSource>,
}

/// A model folder that could not be used, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFailure {
    pub name: String,
    pub reason: String,
}

/// Everything found in a repository.
#[derive(Debug, Default)]
pub struct Scan {
    pub models: Vec<ModelSource>,
    pub failures: Vec<ModelFailure>,
}

/// Reads every model folder under `dir` (sorted by name).
pub fn scan(dir: &Path) -> Result<Scan, RepositoryError> {
    let unreadable = |source| RepositoryError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut scan = Scan::default();
    for name in names {
        match read_model(dir, &name) {
            Ok(source) => scan.models.push(source),
            Err(reason) => scan.failures.push(ModelFailure { name, reason }),
        }
    }
    Ok(scan)
}

/// Model names are single folder names: letters, digits, `_`, `-`, `.`, not starting with `.`, so that
/// no name (`..`, `a/b`, `/etc`) can reach outside the repository.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid model name (letters, digits, '_', '-', '.'; not starting with '.')"
        ))
    }
}

/// Reads one model folder; the error names the file at fault.
pub fn read_model(repo: &Path, name: &str) -> Result<ModelSource, String> {
    validate_name(name)?;
    let dir = repo.join(name);
    // A symlinked folder pointing outside the repository is refused as well.
    let real_dir = match (repo.canonicalize(), dir.canonicalize()) {
        (Ok(r), Ok(d)) if d.starts_with(&r) => d,
        (_, Err(e)) => return Err(format!("{}: {e}", dir.display())),
        _ => {
            return Err(format!(
                "{}: is outside the model repository",
                dir.display()
            ))
        }
    };
    let config_path = dir.join("config.toml");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let mut config =
        ModelConfig::parse(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    labels::read_labels(&dir, &real_dir, &mut config)?;
    let on_disk: Vec<u64> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let versions = config
        .version_policy
        .select(on_disk)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .into_iter()
        .map(|version| VersionSource {
            version,
            model_path: dir
                .join(version.to_string())
                .join(config.platform.file_name()),
        })
        .collect();
    Ok(ModelSource {
        name: name.to_string(),
        config,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[[inputs]]\nname='x'\ndatatype='FP32'\nshape=[4]\n[[outputs]]\nname='y'\ndatatype='FP32'\nshape=[2]\n";

    fn temp_repo(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("torchship-repo-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn picks_the_highest_version_and_reports_broken_models() {
        let dir = temp_repo("scan");
        for v in ["1", "10", "2", "notaversion"] {
            std::fs::create_dir_all(dir.join("good").join(v)).unwrap();
            std::fs::write(dir.join("good").join(v).join("model.pt"), b"x").unwrap();
        }
        std::fs::write(dir.join("good/config.toml"), CONFIG).unwrap();
        std::fs::create_dir_all(dir.join("noweights/1")).unwrap();
        std::fs::write(dir.join("noweights/config.toml"), CONFIG).unwrap();
        std::fs::create_dir_all(dir.join("noconfig/1")).unwrap();
        std::fs::create_dir_all(dir.join("badconfig/1")).unwrap();
        std::fs::write(dir.join("badconfig/config.toml"), "inputs = 3").unwrap();

        std::fs::create_dir_all(dir.join("noversion")).unwrap();
        std::fs::write(dir.join("noversion/config.toml"), CONFIG).unwrap();

        let scan = scan(&dir).unwrap();
        let names: Vec<_> = scan.models.iter().map(|m| m.name.as_str()).collect();
        // A missing model.pt is the runtime's to report (per version), not the scan's.
        assert_eq!(names, ["good", "noweights"]);
        assert_eq!(scan.models[0].versions.len(), 1);
        assert_eq!(scan.models[0].versions[0].version, 10);
        assert!(scan.models[0].versions[0]
            .model_path
            .ends_with("good/10/model.pt"));
        let reasons: Vec<_> = scan
            .failures
            .iter()
            .map(|f| (f.name.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].0 == "badconfig" && reasons[0].1.contains("badconfig/config.toml"));
        assert!(reasons[1].0 == "noconfig" && reasons[1].1.contains("noconfig/config.toml"));
        assert!(reasons[2].0 == "noversion" && reasons[2].1.contains("no numeric version folder"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_cannot_leave_the_repository() {
        for bad in [
            "", "..", ".", "a/b", "/etc", "../x", ".hidden", "a\\b", "sp ace",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["digits", "mlp-v2", "resnet_50", "a.b"] {
            assert!(validate_name(good).is_ok(), "{good:?} refused");
        }
        let dir = temp_repo("escape");
        let outside = temp_repo("outside");
        std::fs::write(outside.join("config.toml"), CONFIG).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        let err = read_model(&dir, "link").unwrap_err();
        assert!(err.contains("outside the model repository"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_missing_repository_is_an_error() {
        let err = scan(Path::new("/nonexistent/torchship")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/torchship"));
    }
}
