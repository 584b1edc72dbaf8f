//! `ciao-cnci-agent show` writes nothing: run against an absent, an empty and a recorded state
//! directory (whose tenant namespace does not exist), the directory is exactly as before.
//! Needs no root.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every entry under `root` with its kind, size, mode and modification time (ns).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (bool, u64, u32, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        out.insert(
            path.clone(),
            (
                meta.is_dir(),
                meta.len(),
                meta.mode(),
                meta.mtime(),
                meta.mtime_nsec(),
            ),
        );
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                todo.push(entry.expect("entry").path());
            }
        }
    }
    out
}

fn show(state_dir: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ciao-cnci-agent"));
    cmd.arg("--state-dir").arg(state_dir).arg("show");
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run ciao-cnci-agent show")
}

fn assert_reports_nothing(out: &Output, dir: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "show succeeded on {}", dir.display());
    assert!(
        stderr.contains(&format!("no CNCI recorded in {}", dir.display())),
        "{stderr}"
    );
}

#[test]
fn show_on_an_absent_state_dir_says_so_and_creates_nothing() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("absent");
    let before = snapshot(parent.path());
    for json in [false, true] {
        assert_reports_nothing(&show(&dir, json), &dir);
    }
    assert!(!dir.exists(), "show created {}", dir.display());
    assert_eq!(snapshot(parent.path()), before);
}

#[test]
fn show_on_an_empty_state_dir_says_so_and_leaves_it_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = snapshot(dir.path());
    for json in [false, true] {
        assert_reports_nothing(&show(dir.path(), json), dir.path());
    }
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
}

#[test]
fn show_of_a_recorded_cnci_without_its_namespace_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = r#"{"uuid":"6f1d4c36-8a3b-4a5e-9d6e-2c1b0a9f8e7d",
        "tenant":"0e6ad3a8-1c9f-4e7b-b5d2-3f4a5b6c7d8e","netns":"cnci-showtest-absent",
        "underlay_ip":"10.99.0.3","external_dev":null,"uplink":"100.64.0.0/31","dns":[]}"#;
    std::fs::write(dir.path().join("agent.json"), agent).expect("agent.json");
    let before = snapshot(dir.path());
    let out = show(dir.path(), true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(view["netns"], "cnci-showtest-absent");
    assert_eq!(view["subnets"], serde_json::json!([]));
    assert_eq!(view["connected"], false);
    let text = show(dir.path(), false);
    assert!(String::from_utf8_lossy(&text.stdout)
        .starts_with("CNCI 6f1d4c36-8a3b-4a5e-9d6e-2c1b0a9f8e7d (tenant"));
    assert_eq!(snapshot(dir.path()), before);
}
