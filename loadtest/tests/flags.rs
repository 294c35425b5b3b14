//! Operator input never panics the load tester: a duration that would overflow the end of the
//! load (`start + --duration`) is refused before anything is sent.

#[test]
fn an_absurd_duration_is_refused_without_a_panic() {
    for flag in ["--duration", "--timeout", "--connection-lifetime"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(["--url", "http://127.0.0.1:9", flag, "18446744073709551615s"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("longer than a year"), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}
