//! The extracted copies of packages. libtorch's loader unpacks each package into a fresh
//! `$TMPDIR/aotinductor_XXXXXX` and removes it only when the loader is destroyed, which a process
//! that exits or is killed never does: every start would leave a copy behind (mlp-aoti: 98 MB), and
//! a pod's `/tmp` emptyDir outlives container restarts, so they would add up to an eviction. A CPU
//! package needs none of those files once loaded (its kernels' library is mapped, its weights are
//! in memory), so its folder is removed right after the load. Which folder is this load's is read
//! from `/proc/self/maps`: the `aotinductor_` folders mapped after the load and not before, with
//! loads serialised so that two cannot mix. A CUDA package keeps its folder: its kernels' cubin
//! files are read when each kernel first runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static LOADING: Mutex<()> = Mutex::new(());

/// The extraction folders of every package library this process has mapped.
pub fn mapped() -> HashSet<PathBuf> {
    folders(&std::fs::read_to_string("/proc/self/maps").unwrap_or_default())
}

/// Extraction folders of mapped package libraries that still exist (none, unless a CUDA package
/// is loaded); waits for a load in progress to finish its clean-up.
pub fn left_behind() -> Vec<PathBuf> {
    let _no_load_in_progress = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    mapped().into_iter().filter(|d| d.exists()).collect()
}

/// The `aotinductor_*` folders that the mapped files of a `/proc/<pid>/maps` text lie in.
fn folders(maps: &str) -> HashSet<PathBuf> {
    maps.lines()
        // address, permissions, offset, device, inode, then the path (which may hold spaces).
        .filter_map(|line| line.splitn(6, char::is_whitespace).nth(5))
        .filter_map(|path| {
            Path::new(path.trim())
                .ancestors()
                .find(|a| {
                    a.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("aotinductor_"))
                })
                .map(Path::to_path_buf)
        })
        .collect()
}

/// Runs `f` while no load runs. Reading a package's metadata extracts it too (into a folder of its
/// own that it removes): were it to run during a load, that load's "mapped after, not before"
/// could take its folder for the load's and delete it under the reader.
pub(super) fn one_at_a_time<T>(f: impl FnOnce() -> T) -> T {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    f()
}

/// Runs `load`; when `remove`, then deletes the folders it extracted.
pub(super) fn load_then_remove<T>(
    remove: bool,
    load: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let before = if remove { mapped() } else { HashSet::new() };
    let loaded = load()?;
    if remove {
        for dir in mapped().difference(&before) {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an extracted AOTInductor package");
            }
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_extraction_folders_in_maps() {
        let maps = "\
7f0000000000-7f0000001000 r-xp 00000000 fd:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000002000-7f0000003000 r--p 00000000 fd:01 456 /tmp/aotinductor_AbC123/data/aotinductor/model/cxyz.wrapper.so
7f0000003000-7f0000004000 r-xp 00001000 fd:01 456 /tmp/aotinductor_AbC123/data/aotinductor/model/cxyz.wrapper.so
7f0000005000-7f0000006000 r--p 00000000 fd:01 789 /var/tmp/my dir/aotinductor_Zz9/model.so (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00022000-7ffd00023000 rw-p 00000000 00:00 0
";
        let want: HashSet<PathBuf> = ["/tmp/aotinductor_AbC123", "/var/tmp/my dir/aotinductor_Zz9"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(folders(maps), want);
    }
}
