//! `scripts/kernel-lane.sh` keeps its promises when the guest misbehaves: a failing guest
//! command fails the lane with its output shown; a hanging guest is killed by the watchdog; and
//! neither leaves a QEMU process or a run directory behind. Boots the real lane (QEMU, TCG) with
//! host commands as the "tests"; skips by name where the lane cannot be fetched.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testkit::{require_root, workspace_root};

/// One lane at a time from this file, so each test sees only its own run directory.
static ONE_LANE: Mutex<()> = Mutex::new(());

fn lane_base() -> PathBuf {
    workspace_root().join("target/kernel-lane")
}

/// The lane's run directories (`target/kernel-lane/run.*`) that exist now.
fn run_dirs() -> BTreeSet<String> {
    std::fs::read_dir(lane_base())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("run."))
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs of QEMU processes booting this workspace's lane kernel.
fn lane_qemus() -> Vec<u32> {
    let cache = lane_base().join("cache").display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("qemu-system-x86_64") && c.contains(&cache)
            })
        })
        .collect()
}

/// Runs the lane with `args`; None (and the test says `skipped:`) if it cannot run here.
fn lane(test: &str, env: &[(&str, &str)], args: &[&str]) -> Option<Output> {
    let out = Command::new(workspace_root().join("scripts/kernel-lane.sh"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run scripts/kernel-lane.sh");
    if out.status.code() == Some(2) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().last().unwrap_or("exit 2").to_string();
        testkit::skip(test, &format!("kernel lane unavailable: {why}"));
        return None;
    }
    Some(out)
}

#[test]
fn a_failing_guest_command_fails_the_lane_with_its_output_and_leaves_nothing() {
    require_root!();
    let _one = ONE_LANE.lock().unwrap_or_else(|e| e.into_inner());
    let before = run_dirs();
    let Some(out) = lane(
        "a_failing_guest_command_fails_the_lane_with_its_output_and_leaves_nothing",
        &[],
        &["/bin/sh", "-c", "echo guest-output-$((6 * 7)); exit 3"],
    ) else {
        return;
    };
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("guest-output-42"), "guest output: {stdout}");
    assert!(stdout.contains("rc=3"), "the command's status: {stdout}");
    assert!(stderr.contains("the tests in the guest failed"), "{stderr}");
    assert_eq!(run_dirs(), before, "a run directory left behind");
    assert!(lane_qemus().is_empty(), "QEMU left running");
}

#[test]
fn a_hanging_guest_is_killed_by_the_watchdog_and_leaves_nothing() {
    require_root!();
    let _one = ONE_LANE.lock().unwrap_or_else(|e| e.into_inner());
    let before = run_dirs();
    let started = Instant::now();
    let Some(out) = lane(
        "a_hanging_guest_is_killed_by_the_watchdog_and_leaves_nothing",
        &[("KERNEL_LANE_TIMEOUT", "15")],
        &["/bin/sleep", "3600"],
    ) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("timeout: QEMU killed after 15 s"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the watchdog took {:?}",
        started.elapsed()
    );
    assert_eq!(run_dirs(), before, "a run directory left behind");
    assert!(lane_qemus().is_empty(), "QEMU left running");
}
