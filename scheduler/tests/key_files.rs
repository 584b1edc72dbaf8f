//! Every file holding a private key that a binary writes is 0600 from the moment it exists,
//! under the usual umask 022 (and under umask 000): `ciao-cert anchor` and `issue` in both
//! shapes, run as a user runs them; and `ssntp::certs::write_pem`, the one writer that
//! `ciao-cert` and the benchmarks (`ssntp-bench`, `cnci-bench`) share.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ssntp::certs::{write_pem, Secrecy};

/// Runs `ciao-cert <args>` under `umask <mask>` (set by the shell that execs it).
fn ciao_cert(mask: &str, args: &[&str]) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_ciao-cert"))
        .args(args)
        .output()
        .expect("run ciao-cert");
    assert!(
        out.status.success(),
        "ciao-cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The mode of every file in `dir`, by name.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| {
            let mode = e.metadata().expect("stat").permissions().mode() & 0o777;
            (e.file_name().to_string_lossy().into_owned(), mode)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn ciao_cert_writes_every_key_file_0600_whatever_the_umask() {
    for mask in ["022", "000"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path().to_str().expect("utf-8");
        ciao_cert(mask, &["anchor", "--host", "sched", "--out-dir", d]);
        let anchor = format!("{d}/cert-scheduler-sched.pem");
        ciao_cert(
            mask,
            &[
                "issue",
                "--anchor",
                &anchor,
                "--role",
                "agent",
                "--host",
                "cn1",
                "--out-dir",
                d,
            ],
        );
        ciao_cert(
            mask,
            &["anchor", "--shape", "modern", "--host", "m", "--out-dir", d],
        );
        let ca = format!("{d}/ca-m.pem");
        ciao_cert(
            mask,
            &[
                "issue",
                "--shape",
                "modern",
                "--anchor",
                &ca,
                "--role",
                "cnciagent",
                "--host",
                "cnci1",
                "--out-dir",
                d,
            ],
        );
        let got = modes(tmp.path());
        let want: Vec<(String, u32)> = [
            ("CAcert-m.pem", 0o644),
            ("CAcert-sched.pem", 0o644),
            ("ca-m.pem", 0o600),
            ("cert-agent-cn1.pem", 0o600),
            ("cert-cnciagent-cnci1.pem", 0o600),
            ("cert-scheduler-sched.pem", 0o600),
        ]
        .iter()
        .map(|(n, m)| (n.to_string(), *m))
        .collect();
        assert_eq!(got, want, "umask {mask}: no temporary file left, keys 0600");
        for (name, mode) in &got {
            let text = std::fs::read_to_string(tmp.path().join(name)).expect("read");
            assert_eq!(
                text.contains("PRIVATE KEY"),
                *mode == 0o600,
                "{name} (mode {mode:o})"
            );
        }
    }
}

#[test]
fn the_shared_writer_makes_key_files_0600_and_replaces_in_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("made");
    let key = write_pem(
        &dir,
        "k.pem",
        "-----BEGIN PRIVATE KEY-----\n",
        Secrecy::PrivateKey,
    )
    .expect("write key");
    let ca = write_pem(
        &dir,
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\n",
        Secrecy::Public,
    )
    .expect("write ca");
    // Replacing keeps the mode and leaves no temporary file.
    write_pem(
        &dir,
        "k.pem",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        Secrecy::PrivateKey,
    )
    .expect("rewrite key");
    assert_eq!(
        modes(&dir),
        vec![("ca.pem".to_string(), 0o644), ("k.pem".to_string(), 0o600)]
    );
    assert_eq!(key, dir.join("k.pem"));
    assert_eq!(ca, dir.join("ca.pem"));
    assert!(std::fs::read_to_string(&key)
        .expect("read")
        .contains("RSA PRIVATE KEY"));
}

/// `ciao-cert`'s read-only commands (help and version, of the tool and of each command) write
/// nothing, not even into the default output directory (the current one).
#[test]
fn ciao_cert_help_and_version_write_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for args in [
        &["--help"][..],
        &["--version"],
        &["anchor", "--help"],
        &["issue", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ciao-cert"))
            .args(args)
            .current_dir(tmp.path())
            .output()
            .expect("run ciao-cert");
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(modes(tmp.path()), vec![], "{args:?} wrote");
    }
}
