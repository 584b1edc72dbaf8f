//! Where the project's binaries come from.
//!
//! Tests and benchmarks build them on first use (`cargo build`, debug), unless `CIAO_BIN_DIR`
//! names a directory that holds them. A program that ships next to the binaries (the
//! `ciao-cluster` demo) calls [`only_from`] first: from then on every binary is taken from that
//! directory, and a missing one is an error naming the cargo command that builds it; nothing
//! ever runs cargo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Set by [`only_from`]: the one directory binaries come from; cargo is never run.
static ONLY_FROM: OnceLock<PathBuf> = OnceLock::new();

/// Each binary of the project and the package that builds it.
pub const PACKAGES: [(&str, &str); 12] = [
    ("ciao", "ciao-cni"),
    ("ciao-node", "ciao-node"),
    ("ciao-scheduler", "ciao-scheduler"),
    ("ciao-cert", "ciao-scheduler"),
    ("ciao-cnci-agent", "ciao-cnci-agent"),
    ("ciao-nn", "ciao-cnci-agent"),
    ("ciao-controller", "ciao-controller"),
    ("ciao-net", "ciao-controller"),
    ("ciao-qemu-ifup", "ciao-vm-hooks"),
    ("ciao-qemu-ifdown", "ciao-vm-hooks"),
    ("ciao-docker-plugin", "ciao-docker-plugin"),
    ("ciao-cluster", "ciao-cluster"),
];

/// The package that builds the binary `name` (the name itself if unknown).
pub fn package_of(name: &str) -> &str {
    PACKAGES
        .iter()
        .find(|(bin, _)| *bin == name)
        .map_or(name, |(_, package)| package)
}

/// The command that builds the release binaries `names`, for error messages.
pub fn build_command(names: &[&str]) -> String {
    let mut packages: Vec<&str> = names.iter().map(|n| package_of(n)).collect();
    packages.sort_unstable();
    packages.dedup();
    let mut cmd = String::from("cargo build --release");
    for p in packages {
        cmd.push_str(" -p ");
        cmd.push_str(p);
    }
    cmd
}

/// Takes every binary from `dir` from now on and never builds one. Fails, naming each missing
/// binary of `needed` and the command that builds them, unless all are there. Call it before
/// the first lookup; a second call keeps the first directory.
pub fn only_from(dir: &Path, needed: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|n| !dir.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing in {}: {}; build {} with `{}` (or name their directory with --bin-dir / CIAO_BIN_DIR)",
            dir.display(),
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            build_command(&missing)
        ));
    }
    let _ = ONLY_FROM.set(dir.to_path_buf());
    Ok(())
}

/// A binary that ships next to the running executable (`explicit` overrides), for programs that
/// never build anything; the error says which is missing and how to build it.
pub fn sibling(explicit: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let bin = match explicit {
        Some(p) => p,
        None => {
            let exe =
                std::env::current_exe().map_err(|e| anyhow::anyhow!("locate this binary: {e}"))?;
            exe.with_file_name(name)
        }
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it with `{}`",
        bin.display(),
        build_command(&[name])
    );
    Ok(bin)
}

/// The workspace this crate was built in (tests and benchmarks build and cache there).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

pub(crate) fn cargo_build(package: &str, extra: &[&str]) {
    assert!(
        try_cargo_build(package, extra),
        "cargo build -p {package} {extra:?} failed"
    );
}

/// Builds `package` (debug) in the workspace; false if it fails, or if binaries must come from
/// an [`only_from`] directory (then nothing is built).
fn try_cargo_build(package: &str, extra: &[&str]) -> bool {
    if let Some(dir) = ONLY_FROM.get() {
        eprintln!(
            "a binary of {package} is missing in {}: build it with `cargo build --release -p {package}`",
            dir.display()
        );
        return false;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--quiet", "-p", package];
    args.extend_from_slice(extra);
    Command::new(cargo)
        .args(&args)
        .current_dir(workspace_root())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `<dir>/<name>` if the file exists, `dir` being the [`only_from`] directory if one is set, else
/// `$CIAO_BIN_DIR` if that variable is set: lets tests use prebuilt binaries.
pub fn bin_dir_override(name: &str) -> Option<PathBuf> {
    let dir = match ONLY_FROM.get() {
        Some(dir) => dir.clone(),
        None => PathBuf::from(std::env::var_os("CIAO_BIN_DIR")?),
    };
    let path = dir.join(name);
    path.is_file().then_some(path)
}

/// The `ciao-cnci-agent` binary, built on first use (`CIAO_BIN_DIR` overrides); `None` if it
/// does not build (yet).
pub fn try_cnci_agent_tool() -> Option<PathBuf> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = bin_dir_override("ciao-cnci-agent") {
            return Some(p);
        }
        let path = workspace_root().join("target/debug/ciao-cnci-agent");
        (try_cargo_build("ciao-cnci-agent", &[]) && path.is_file()).then_some(path)
    })
    .clone()
}

/// The `ciao-cnci-agent` binary; panics if it does not build.
pub fn cnci_agent_tool() -> PathBuf {
    try_cnci_agent_tool().expect("cargo build -p ciao-cnci-agent failed")
}

/// Any binary of the workspace by name: from `CIAO_BIN_DIR` if set, else `target/debug`,
/// its package built on first use.
pub fn workspace_tool(name: &str) -> PathBuf {
    if let Some(p) = bin_dir_override(name) {
        return p;
    }
    cargo_build(package_of(name), &[]);
    workspace_root().join("target/debug").join(name)
}

/// The CNI plugin binary, built on first use (`CIAO_CNI_PLUGIN`, then `CIAO_BIN_DIR`, override).
pub fn plugin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(p) = std::env::var("CIAO_CNI_PLUGIN") {
            return PathBuf::from(p);
        }
        if let Some(p) = bin_dir_override("ciao") {
            return p;
        }
        cargo_build("ciao-cni", &[]);
        workspace_root().join("target/debug/ciao")
    })
    .clone()
}

/// The CNI plugin built with crash points (`CIAO_CRASH_AFTER_STEP=N` kills it after step N).
pub fn crash_plugin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = workspace_root().join("target/crash-points");
        let dir_text = dir.display().to_string();
        cargo_build(
            "ciao-cni",
            &["--features", "crash-points", "--target-dir", &dir_text],
        );
        dir.join("debug/ciao")
    })
    .clone()
}

/// The `ciao-node` operator tool, built on first use (`CIAO_BIN_DIR` overrides).
pub fn node_tool() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = bin_dir_override("ciao-node") {
            return p;
        }
        cargo_build("ciao-node", &[]);
        workspace_root().join("target/debug/ciao-node")
    })
    .clone()
}

/// A QEMU hook of the `ciao-vm-hooks` package (`ciao-qemu-ifup`, `ciao-qemu-ifdown`), built on
/// first use (`CIAO_BIN_DIR` overrides).
pub fn vm_hook(name: &str) -> PathBuf {
    if let Some(p) = bin_dir_override(name) {
        return p;
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build("ciao-vm-hooks", &[]));
    workspace_root().join("target/debug").join(name)
}

/// A binary of the `ciao-scheduler` package (`ciao-scheduler`, `ciao-cert`), built on first use
/// (`CIAO_BIN_DIR` overrides).
pub fn scheduler_tool(name: &str) -> PathBuf {
    if let Some(p) = bin_dir_override(name) {
        return p;
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build("ciao-scheduler", &[]));
    workspace_root().join("target/debug").join(name)
}

/// The `ciao-cluster` demo, built on first use (`CIAO_BIN_DIR` overrides). It takes its sibling
/// binaries from its own directory, so callers build those first (debug, like this one).
pub fn cluster_demo() -> PathBuf {
    if let Some(p) = bin_dir_override("ciao-cluster") {
        return p;
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build("ciao-cluster", &[]));
    workspace_root().join("target/debug/ciao-cluster")
}
