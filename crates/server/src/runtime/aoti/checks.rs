//! What the runtime checks about an AOTInductor package before serving it, from its metadata and
//! call spec. Each check's message says what the package is, what this process or config.toml
//! expects, and what to change.

use std::collections::HashMap;

use tch::Device;

/// The metadata key holding the device the kernels were compiled for (`cpu`, `cuda`).
const DEVICE_KEY: &str = "AOTI_DEVICE_KEY";
/// The metadata key holding the CPU vector ISA of a CPU package (`avx2`, `avx512 avx512_vnni`, ...).
const CPU_ISA_KEY: &str = "AOTI_CPU_ISA";

/// The package's device matches the device the model runs on: kernels compiled for CUDA cannot run
/// on CPU tensors, nor CPU kernels on CUDA tensors.
pub fn device(metadata: &HashMap<String, String>, device: Device) -> Result<(), String> {
    let key = metadata.get(DEVICE_KEY).map(|k| k.to_ascii_lowercase());
    let want = if device.is_cuda() { "cuda" } else { "cpu" };
    match key.as_deref() {
        Some(k) if k == want => Ok(()),
        Some("cuda") => Err(format!(
            "the package was compiled for CUDA ({DEVICE_KEY}=cuda) but this model runs on {} \
             (no CUDA device, or device/--device says cpu); run it on a GPU node or export it \
             again on CPU",
            name(device)
        )),
        Some(k) => Err(format!(
            "the package was compiled for {k} ({DEVICE_KEY}={k}) but this model runs on {}; set \
             device = \"{k}\" in its config.toml or export it again for {}",
            name(device),
            name(device)
        )),
        None => Err(format!(
            "the package's metadata has no {DEVICE_KEY}: not an AOTInductor package of a supported \
             torch version"
        )),
    }
}

fn name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    }
}

/// A CPU package's kernels use the vector instructions of the machine that compiled them; on a CPU
/// without them the first run dies of SIGILL, so the package is refused at load instead.
pub fn cpu_isa(metadata: &HashMap<String, String>, cpu_flags: &[&str]) -> Result<(), String> {
    let Some(isa) = metadata.get(CPU_ISA_KEY) else {
        return Ok(());
    };
    let missing: Vec<&str> = isa
        .split_whitespace()
        .flat_map(|token| required_flags(&token.to_ascii_lowercase()))
        .filter(|flag| !cpu_flags.contains(flag))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the package's kernels were compiled for {isa} ({CPU_ISA_KEY}) but this CPU lacks {}; export \
         it again on (or for) a machine like this one, or schedule the pod onto nodes that have them",
        missing.join(", ")
    ))
}

/// The /proc/cpuinfo flags inductor's ISA names stand for (its `-m` flags in `cpu_vec_isa.py`).
fn required_flags(token: &str) -> Vec<&'static str> {
    match token {
        "avx2" => vec!["avx2", "fma"],
        "avx512" => vec!["avx512f", "avx512dq", "avx512vl", "avx512bw", "fma"],
        "avx512_vnni" => vec!["avx512_vnni"],
        "amx_tile" => vec!["amx_tile"],
        _ => vec![], // another architecture's name (asimd, vsx, ...): nothing to check on x86
    }
}

/// This CPU's feature flags (the `flags` line of /proc/cpuinfo); empty where there is none.
pub fn host_cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// How many tensors a pytree spec (the call spec's JSON, `[version, tree]`) flattens to.
pub fn leaves(spec: &str) -> Result<usize, String> {
    fn count(node: &serde_json::Value) -> Result<usize, String> {
        let children = node
            .get("children_spec")
            .and_then(|c| c.as_array())
            .ok_or("a pytree node without children_spec")?;
        if node.get("type").is_some_and(|t| t.is_null()) {
            return Ok(1);
        }
        children.iter().map(count).sum()
    }
    let value: serde_json::Value =
        serde_json::from_str(spec).map_err(|e| format!("the call spec is not JSON: {e}"))?;
    let tree = value.get(1).ok_or("the call spec has no tree")?;
    count(tree).map_err(|e| format!("unreadable call spec: {e}"))
}

/// The package takes and returns as many tensors as config.toml declares.
pub fn arity(
    (in_spec, out_spec): (&str, &str),
    inputs: usize,
    outputs: usize,
) -> Result<(), String> {
    for (kind, spec, declared) in [("input", in_spec, inputs), ("output", out_spec, outputs)] {
        let n = leaves(spec)?;
        if n != declared {
            let s = if n == 1 { "" } else { "s" };
            return Err(format!(
                "the package takes {n} {kind}{s} (its call spec), config.toml declares {declared}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn device_must_match_the_package() {
        let cpu = meta(&[(DEVICE_KEY, "cpu")]);
        let cuda = meta(&[(DEVICE_KEY, "cuda")]);
        assert!(device(&cpu, Device::Cpu).is_ok());
        assert!(device(&cuda, Device::Cuda(1)).is_ok());
        let e = device(&cuda, Device::Cpu).unwrap_err();
        assert!(
            e.contains("compiled for CUDA") && e.contains("runs on cpu"),
            "{e}"
        );
        let e = device(&cpu, Device::Cuda(0)).unwrap_err();
        assert!(
            e.contains("device = \"cpu\"") && e.contains("cuda:0"),
            "{e}"
        );
        assert!(device(&meta(&[]), Device::Cpu)
            .unwrap_err()
            .contains("no AOTI_DEVICE_KEY"));
    }

    #[test]
    fn cpu_isa_needs_every_flag() {
        let avx512 = meta(&[(CPU_ISA_KEY, "AVX512 AVX512_VNNI")]);
        let full = [
            "fma",
            "avx2",
            "avx512f",
            "avx512dq",
            "avx512vl",
            "avx512bw",
            "avx512_vnni",
        ];
        assert!(cpu_isa(&avx512, &full).is_ok());
        let e = cpu_isa(&avx512, &["fma", "avx2"]).unwrap_err();
        assert!(
            e.contains("AVX512 AVX512_VNNI") && e.contains("avx512f"),
            "{e}"
        );
        assert!(e.contains("avx512_vnni"), "{e}");
        assert!(cpu_isa(&meta(&[(CPU_ISA_KEY, "avx2")]), &["avx2", "fma"]).is_ok());
        assert!(cpu_isa(&meta(&[(CPU_ISA_KEY, "")]), &[]).is_ok());
        assert!(cpu_isa(&meta(&[]), &[]).is_ok());
    }

    /// The call spec's format, as `torch.utils._pytree.treespec_dumps` writes it for
    /// `((x, y), {"a": z})`.
    #[test]
    fn counts_the_leaves_of_a_call_spec() {
        let leaf = r#"{"type": null, "context": null, "children_spec": []}"#;
        let spec = format!(
            r#"[1, {{"type": "builtins.tuple", "context": "null", "children_spec": [
                {{"type": "builtins.tuple", "context": "null", "children_spec": [{leaf}, {leaf}]}},
                {{"type": "builtins.dict", "context": "[\"a\"]", "children_spec": [{leaf}]}}]}}]"#
        );
        assert_eq!(leaves(&spec).unwrap(), 3);
        assert_eq!(leaves(&format!("[1, {leaf}]")).unwrap(), 1);
        assert!(arity((&spec, leaf), 3, 1).is_err()); // not a [version, tree] pair
        assert!(arity((&spec, &format!("[1, {leaf}]")), 3, 1).is_ok());
        let e = arity((&spec, &format!("[1, {leaf}]")), 1, 1).unwrap_err();
        assert_eq!(
            e,
            "the package takes 3 inputs (its call spec), config.toml declares 1"
        );
        assert!(leaves("not json").unwrap_err().contains("not JSON"));
        assert!(leaves("[1, {}]").unwrap_err().contains("unreadable"));
    }

    #[test]
    fn reads_this_machines_cpu_flags() {
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            // Every x86-64 CPU has SSE2; an empty or garbled read would not.
            assert!(host_cpu_flags().iter().any(|f| f == "sse2"));
        }
    }
}
