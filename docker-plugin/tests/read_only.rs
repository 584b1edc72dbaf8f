//! The plugin's only read-only commands, `--help` and `--version`, write nothing: not the
//! state directory (absent or empty), not its socket's directory.

use std::path::Path;
use std::process::Command;

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        out.push(p.display().to_string());
        if let Ok(entries) = std::fs::read_dir(&p) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn help_and_version_leave_an_absent_or_empty_state_directory_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let before = listing(tmp.path());
    for state in [tmp.path().join("absent"), empty] {
        for arg in ["--help", "--version"] {
            let out = Command::new(env!("CARGO_BIN_EXE_ciao-docker-plugin"))
                .arg("--state-dir")
                .arg(&state)
                .arg("--socket")
                .arg(tmp.path().join("plugins/ciao.sock"))
                .arg(arg)
                .current_dir(tmp.path())
                .output()
                .expect("run the plugin");
            assert!(out.status.success(), "{arg}: {out:?}");
            assert!(!out.stdout.is_empty(), "{arg} printed nothing");
            assert_eq!(listing(tmp.path()), before, "{arg} with {state:?} wrote");
        }
    }
}
