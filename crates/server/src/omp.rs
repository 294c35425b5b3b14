//! OpenMP's wait policy for a server. libgomp reads `OMP_WAIT_POLICY` once, when the process loads
//! it, and by default spins after every parallel region; on a small pod that spinning takes the
//! core the HTTP workers need (perf under digits at 32 clients: 55 % of the server's CPU time in
//! libgomp, and 1.7× the req/s with `PASSIVE`; BENCHMARKS.md). Nothing can change it once the
//! process runs, so the binary starts itself again with the variable set. A value the operator set
//! (`ACTIVE`, `PASSIVE`) is kept as it is.

use std::ffi::OsStr;

/// The variable libgomp reads.
pub const VAR: &str = "OMP_WAIT_POLICY";
/// The server's policy: idle OpenMP threads sleep instead of spinning.
pub const SERVER_POLICY: &str = "PASSIVE";

/// Whether the process must start again to give libgomp the server's policy: only when the
/// operator left the variable unset.
pub fn needs_restart(current: Option<&OsStr>) -> bool {
    current.is_none()
}

/// Replaces this process (same pid, arguments and environment) with one that has
/// `OMP_WAIT_POLICY=PASSIVE`, when the variable is unset. Returns only when nothing was to be done
/// (`None`) or the exec failed (`Some(error)`, for the caller to report; serving goes on with
/// libgomp's default). Call it first in `main`, while the process has one thread.
pub fn ensure_server_policy() -> Option<std::io::Error> {
    if !needs_restart(std::env::var_os(VAR).as_deref()) {
        return None;
    }
    restart()
}

#[cfg(unix)]
fn restart() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Some(e),
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    Some(command.args(args).env(VAR, SERVER_POLICY).exec())
}

#[cfg(not(unix))]
fn restart() -> Option<std::io::Error> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_only_when_the_operator_left_the_policy_unset() {
        assert!(needs_restart(None));
        assert!(!needs_restart(Some(OsStr::new("ACTIVE"))));
        assert!(!needs_restart(Some(OsStr::new("PASSIVE"))));
        // Set but empty is still the operator's choice (libgomp then uses its default).
        assert!(!needs_restart(Some(OsStr::new(""))));
    }
}
