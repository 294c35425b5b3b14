//! Class labels for the classification extension: an output's `label_filename` names a file in
//! the model's folder (beside `config.toml`, as in Triton) with one label per line; line N names
//! class N. Read with the model, so a missing or oversized file is that model's load error.

use std::path::Path;

use super::ModelConfig;

/// Most bytes a labels file may hold (ImageNet's 21k labels are under 1 MiB).
const MAX_LABEL_BYTES: u64 = 16 << 20;

/// Fills each output's `labels` from its `label_filename`; `dir` is the model's folder as named,
/// `real_dir` the same resolved (what the file must stay inside).
pub fn read_labels(dir: &Path, real_dir: &Path, config: &mut ModelConfig) -> Result<(), String> {
    for spec in &mut config.outputs {
        let Some(file) = &spec.label_filename else {
            continue;
        };
        let outside = || {
            format!(
                "output '{}': label_filename '{file}' must name a file in the model's folder",
                spec.name
            )
        };
        super::validate_name(file).map_err(|_| outside())?;
        let path = dir.join(file);
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !real.starts_with(real_dir) {
            return Err(outside());
        }
        let size = std::fs::metadata(&real)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if size > MAX_LABEL_BYTES {
            return Err(format!(
                "{}: {size} bytes; a labels file may hold at most {MAX_LABEL_BYTES}",
                path.display()
            ));
        }
        let text =
            std::fs::read_to_string(&real).map_err(|e| format!("{}: {e}", path.display()))?;
        spec.labels = text.lines().map(str::to_string).collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[[inputs]]\nname='x'\ndatatype='FP32'\nshape=[4]\n[[outputs]]\nname='y'\ndatatype='FP32'\nshape=[3]\nlabel_filename='labels.txt'\n";

    #[test]
    fn labels_are_lines_of_a_file_in_the_model_folder() {
        let dir = std::env::temp_dir().join(format!("torchship-labels-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.canonicalize().unwrap();
        let mut config = ModelConfig::parse(CONFIG).unwrap();
        let err = read_labels(&dir, &real, &mut config).unwrap_err();
        assert!(err.contains("labels.txt"), "{err}");
        std::fs::write(dir.join("labels.txt"), "cat\r\ndog\n\nbird\n").unwrap();
        read_labels(&dir, &real, &mut config).unwrap();
        assert_eq!(config.outputs[0].labels, ["cat", "dog", "", "bird"]);
        for bad in ["../labels.txt", "/etc/passwd", "a/b"] {
            config.outputs[0].label_filename = Some(bad.into());
            let err = read_labels(&dir, &real, &mut config).unwrap_err();
            assert!(
                err.contains("must name a file in the model's folder"),
                "{err}"
            );
        }
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        config.outputs[0].label_filename = Some("link".into());
        let err = read_labels(&dir, &real, &mut config).unwrap_err();
        assert!(
            err.contains("must name a file in the model's folder"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inputs_take_no_labels() {
        let text = CONFIG.replace("shape=[4]\n", "shape=[4]\nlabel_filename='x.txt'\n");
        let err = ModelConfig::parse(&text).unwrap_err();
        assert!(
            err.contains("input 'x': label_filename is for outputs"),
            "{err}"
        );
    }
}
