//! The model repository on disk, laid out like Triton's:
//!
//! ```text
//! models/<name>/config.toml
//! models/<name>/<version>/model.pt     (numeric versions; the highest one serves)
//! ```
//!
//! Scanning never stops at one broken model: each failure is kept with its reason (naming the file), so
//! the good models still serve and the broken ones can be reported.

pub mod config;

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

/// A model found on disk, ready to be loaded.
#[derive(Clone, Debug)]
pub struct ModelSource {
    pub name: String,
    pub version: u64,
    pub model_path: PathBuf,
    pub config: ModelConfig,
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

/// Reads one model folder; the error names the file at fault.
pub fn read_model(repo: &Path, name: &str) -> Result<ModelSource, String> {
    let dir = repo.join(name);
    let config_path = dir.join("config.toml");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config =
        ModelConfig::parse(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let version = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .ok_or_else(|| {
            format!(
                "{}: no numeric version folder (e.g. {name}/1/model.pt)",
                dir.display()
            )
        })?;
    let model_path = dir.join(version.to_string()).join("model.pt");
    if !model_path.is_file() {
        return Err(format!("{}: file not found", model_path.display()));
    }
    Ok(ModelSource {
        name: name.to_string(),
        version,
        model_path,
        config,
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

        let scan = scan(&dir).unwrap();
        assert_eq!(scan.models.len(), 1);
        assert_eq!(scan.models[0].name, "good");
        assert_eq!(scan.models[0].version, 10);
        let reasons: Vec<_> = scan
            .failures
            .iter()
            .map(|f| (f.name.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3);
        assert!(reasons[0].0 == "badconfig" && reasons[0].1.contains("badconfig/config.toml"));
        assert!(reasons[1].0 == "noconfig" && reasons[1].1.contains("noconfig/config.toml"));
        assert!(
            reasons[2].0 == "noweights"
                && reasons[2]
                    .1
                    .contains("noweights/1/model.pt: file not found")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_repository_is_an_error() {
        let err = scan(Path::new("/nonexistent/torchship")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/torchship"));
    }
}
