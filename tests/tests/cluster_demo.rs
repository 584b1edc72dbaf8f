//! The `ciao-cluster` demo as a product: it never builds anything (a missing sibling binary is
//! named, with the cargo command that builds it), and it keeps its logs after a failure. The
//! full run (matrix as expected, logs removed) is in `cluster_smoke.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::{cluster_demo, require_root};

/// Writes an executable shell script `dir/name`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Runs the demo with `--exit --bin-dir bin_dir` and a `cargo` (also `$CARGO`) that leaves a
/// mark if anything runs it.
fn run_demo(bin_dir: &Path, cargo_mark: &Path) -> Output {
    let tools = tempfile::tempdir().expect("tools dir");
    let cargo = script(
        tools.path(),
        "cargo",
        &format!("touch '{}'; exit 1", cargo_mark.display()),
    );
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(cluster_demo())
        .arg("--exit")
        .arg("--bin-dir")
        .arg(bin_dir)
        .env("PATH", path)
        .env("CARGO", cargo)
        .env_remove("CIAO_BIN_DIR")
        .output()
        .expect("run ciao-cluster")
}

#[test]
fn a_missing_sibling_is_named_with_its_build_command_and_nothing_is_built() {
    let bins = tempfile::tempdir().expect("bin dir");
    // Two of the eight are there; the other six are missing.
    script(bins.path(), "ciao", "exit 1");
    script(bins.path(), "ciao-cert", "exit 1");
    let mark = bins.path().join("cargo-ran");
    let out = run_demo(bins.path(), &mark);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ciao-node, ciao-scheduler, ciao-cnci-agent"),
        "the missing binaries are named: {stderr}"
    );
    assert!(
        stderr.contains(
            "cargo build --release -p ciao-cnci-agent -p ciao-controller -p ciao-node -p ciao-scheduler"
        ),
        "the command that builds them is given: {stderr}"
    );
    assert!(!mark.exists(), "ciao-cluster ran cargo");
    assert!(
        out.stdout.is_empty(),
        "nothing was started: {:?}",
        out.stdout
    );
}

#[test]
fn a_failed_run_keeps_its_logs_and_says_where() {
    require_root!();
    let bins = tempfile::tempdir().expect("bin dir");
    // Certificates "made" (the fake writes none), then a scheduler that refuses to start: the
    // cluster fails while coming up, after its namespaces and log directory exist.
    script(bins.path(), "ciao-cert", "exit 0");
    script(
        bins.path(),
        "ciao-scheduler",
        "echo 'fake scheduler: refusing to start' >&2; exit 1",
    );
    for name in [
        "ciao",
        "ciao-node",
        "ciao-cnci-agent",
        "ciao-nn",
        "ciao-controller",
        "ciao-net",
    ] {
        script(bins.path(), name, "exit 1");
    }
    let mark = bins.path().join("cargo-ran");
    let out = run_demo(bins.path(), &mark);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let kept = stderr
        .lines()
        .find_map(|l| l.strip_prefix("kept logs: "))
        .unwrap_or_else(|| panic!("no `kept logs:` line: {stderr}"));
    let kept = PathBuf::from(kept.trim());
    let log = std::fs::read_to_string(kept.join("scheduler.log"));
    // Remove what the demo kept before asserting on it, so a failure leaves nothing either.
    let _ = std::fs::remove_dir_all(&kept);
    let log = log.expect("the scheduler's log is kept");
    assert!(log.contains("fake scheduler: refusing to start"), "{log}");
    assert!(
        stderr.contains("fake scheduler: refusing to start"),
        "the error shows the log's tail: {stderr}"
    );
    assert!(!mark.exists(), "ciao-cluster ran cargo");
}
