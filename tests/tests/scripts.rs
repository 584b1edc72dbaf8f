//! The scripts' own promises, run for real on made-up inputs (no root, no cargo run):
//! `scripts/test-summary.sh` prints its summary and skip list whether the tests passed, failed
//! or did not build, counting each skipped test once; `scripts/check-rust.sh` fails with how to
//! get Rust when cargo or rustc is missing or older than the workspace's rust-version.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script(name: &str) -> PathBuf {
    testkit::workspace_root().join("scripts").join(name)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn summary(output_log: &str, skip_log: Option<&str>, status: i32) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("test-output.log");
    std::fs::write(&out, output_log).expect("write output log");
    let skips = dir.path().join("test-skips.log");
    if let Some(s) = skip_log {
        std::fs::write(&skips, s).expect("write skip log");
    }
    Command::new(script("test-summary.sh"))
        .arg(&out)
        .arg(&skips)
        .arg(status.to_string())
        .output()
        .expect("run test-summary.sh")
}

const PASSED: &str = "\
test result: ok. 10 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";

#[test]
fn the_summary_prints_when_everything_passed_and_nothing_skipped() {
    let out = summary(PASSED, None, 0);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, "tests: 12 passed, 0 failed, 0 skipped\n");
}

#[test]
fn the_summary_and_skip_list_print_after_failures_each_skip_counted_once() {
    let log = "\
test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.00s
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";
    // One test wrote two skip lines (two reasons), another one.
    let skips = "\
skipped: qemu::boots: no KVM
skipped: docker::runs: dockerd did not start
skipped: qemu::boots: no qemu-system-x86_64
";
    let out = summary(log, Some(skips), 101);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(101), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "== tests that could not run here",
            "skipped: docker::runs: dockerd did not start",
            "skipped: qemu::boots: no KVM",
            "tests: 9 passed, 2 failed, 2 skipped",
        ]
    );
}

#[test]
fn a_build_failure_counts_as_a_failure_and_still_prints_the_summary() {
    let out = summary(
        "error[E0425]: cannot find value `x` in this scope\n",
        None,
        101,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(101), "{stdout}{stderr}");
    assert_eq!(stdout, "tests: 0 passed, 1 failed, 0 skipped\n");
}

/// A directory holding only the tools `check-rust.sh` needs besides Rust, plus `extra` scripts,
/// to use as the whole PATH: no real cargo or rustc can be found through it.
fn bare_path(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tools dir");
    for tool in ["bash", "sed", "head", "awk", "cat", "dirname"] {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} not found in /usr/bin or /bin"));
        std::os::unix::fs::symlink(found, dir.path().join(tool)).expect("symlink");
    }
    for (name, body) in extra {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

fn check_rust(path: &Path, args: &[&str]) -> Output {
    Command::new(script("check-rust.sh"))
        .args(args)
        .env("PATH", path)
        .output()
        .expect("run check-rust.sh")
}

/// The workspace's rust-version, read the way a reader of Cargo.toml would.
fn rust_version() -> String {
    let toml = std::fs::read_to_string(testkit::workspace_root().join("Cargo.toml"))
        .expect("read Cargo.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version in Cargo.toml")
        .to_string()
}

#[test]
fn missing_rust_is_reported_with_how_to_get_it() {
    let tools = bare_path(&[]);
    let out = check_rust(tools.path(), &["--for", "scripts/test.sh"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cargo not found"), "{stderr}");
    assert!(
        stderr.contains(&format!("Rust {} or newer is needed", rust_version())),
        "{stderr}"
    );
    assert!(stderr.contains("https://sh.rustup.rs"), "{stderr}");
    assert!(
        stderr.contains("sudo env \"PATH=$PATH\" scripts/test.sh"),
        "{stderr}"
    );
}

#[test]
fn a_rustc_older_than_the_workspace_is_refused_and_a_new_enough_one_passes() {
    let old = bare_path(&[
        ("cargo", "exit 0"),
        ("rustc", "echo 'rustc 1.63.0 (4b91a6ea7 2022-08-08)'"),
    ]);
    let out = check_rust(old.path(), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is 1.63.0"), "{stderr}");
    assert!(stderr.contains("rustup update stable"), "{stderr}");

    let exact = format!("echo 'rustc {}.0 (f6e511eec 2024-10-15)'", rust_version());
    let new = bare_path(&[("cargo", "exit 0"), ("rustc", &exact)]);
    let out = check_rust(new.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // The tests also need clippy and rustfmt.
    let no_clippy = bare_path(&[
        ("cargo", "[ \"$1\" = clippy ] && exit 1; exit 0"),
        ("rustc", &exact),
    ]);
    let out = check_rust(no_clippy.path(), &["--lints"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rustup component add clippy rustfmt"),
        "{stderr}"
    );
}

#[test]
fn a_skip_names_its_test_not_only_its_file() {
    assert_eq!(
        testkit::test_name!(),
        "scripts::a_skip_names_its_test_not_only_its_file"
    );
    let from_a_closure = || testkit::test_name!();
    assert_eq!(
        from_a_closure(),
        "scripts::a_skip_names_its_test_not_only_its_file"
    );
}

fn summary_with_lane(
    output_log: &str,
    skip_log: &str,
    status: i32,
    lane_results: Option<&str>,
    lane_status: i32,
) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("test-output.log");
    std::fs::write(&out, output_log).expect("write output log");
    let skips = dir.path().join("test-skips.log");
    std::fs::write(&skips, skip_log).expect("write skip log");
    let lane = dir.path().join("kernel-lane-results.txt");
    if let Some(r) = lane_results {
        std::fs::write(&lane, r).expect("write lane results");
    }
    Command::new(script("test-summary.sh"))
        .arg(&out)
        .arg(&skips)
        .arg(status.to_string())
        .arg(&lane)
        .arg(lane_status.to_string())
        .output()
        .expect("run test-summary.sh")
}

/// On the host, two tests lack a kernel feature and one lacks docker.
const HOST_SKIPS: &str = "\
skipped: gretap_attributes_read_back: kernel lacks gretap (create link gt0)
skipped: point_to_point_hubs_over_gretap: kernel lacks gretap (Error: Unknown device type.)
skipped: docker::runs: dockerd did not start
";

#[test]
fn tests_that_passed_in_the_kernel_lane_are_not_skipped_and_count_once() {
    let lane = "passed: gretap_attributes_read_back\npassed: point_to_point_hubs_over_gretap\n";
    let out = summary_with_lane(PASSED, HOST_SKIPS, 0, Some(lane), 0);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("kernel lacks"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "== tests that could not run here",
            "skipped: docker::runs: dockerd did not start",
            "tests: 11 passed, 0 failed, 1 skipped (2 in the kernel lane)",
        ]
    );
}

#[test]
fn a_test_that_failed_in_the_kernel_lane_fails_the_run_by_name() {
    let lane = "passed: gretap_attributes_read_back\nfailed: point_to_point_hubs_over_gretap\n";
    let out = summary_with_lane(PASSED, HOST_SKIPS, 0, Some(lane), 1);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "== tests that could not run here",
            "skipped: docker::runs: dockerd did not start",
            "== failed in the kernel lane (output above and in target/kernel-lane-output.log)",
            "point_to_point_hubs_over_gretap",
            "tests: 10 passed, 1 failed, 1 skipped (1 in the kernel lane)",
        ]
    );
}

#[test]
fn a_kernel_lane_that_hung_or_crashed_without_results_is_a_failure() {
    let out = summary_with_lane(PASSED, HOST_SKIPS, 0, None, 1);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.ends_with("tests: 9 passed, 1 failed, 3 skipped (0 in the kernel lane)\n"),
        "{stdout}"
    );
}

#[test]
fn where_the_kernel_lane_cannot_run_each_lane_test_is_skipped_by_name_with_why() {
    let lane = "\
skipped: gretap_attributes_read_back: kernel lane unavailable: apt-get download failed
skipped: point_to_point_hubs_over_gretap: kernel lane unavailable: apt-get download failed
";
    let out = summary_with_lane(PASSED, HOST_SKIPS, 0, Some(lane), 2);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "== tests that could not run here",
            "skipped: gretap_attributes_read_back: kernel lane unavailable: apt-get download failed",
            "skipped: point_to_point_hubs_over_gretap: kernel lane unavailable: apt-get download failed",
            "skipped: docker::runs: dockerd did not start",
            "tests: 9 passed, 0 failed, 3 skipped (0 in the kernel lane)",
        ]
    );
}
