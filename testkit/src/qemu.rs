//! A real QEMU guest for the VM tests and the QEMU benchmark.
//!
//! `scripts/qemu-guest.sh` downloads Debian's QEMU, kernel and busybox-static (unpacked, never
//! installed) and builds a busybox initramfs, cached under `target/qemu-guest/`. The guest's
//! `/init` configures eth0 (DHCP, or `ciao.ip=`), pings the `ciao.ping=` targets and powers off,
//! printing `CIAO-GUEST ...` lines on its serial port, which [`Guest`] reads from a file.
//! QEMU runs under TCG: KVM guests do not run on these machines although `/dev/kvm` exists
//! (reference/qemu-hooks.md §2: the guest aborts or hangs), so there is no KVM path.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{Tenant, NN_IP};
use crate::{skip, vm_hook, workspace_root, ComputeNode};

/// QEMU and the guest, as `scripts/qemu-guest.sh` made them.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub qemu: PathBuf,
    /// `LD_LIBRARY_PATH` for the unpacked QEMU.
    pub libdir: String,
    /// `-L` directories (firmware, option ROMs).
    pub datadirs: Vec<PathBuf>,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Why there is no guest image.
#[derive(Debug, Clone)]
pub enum ImageError {
    /// Cannot be fetched on this machine (no network, no apt): tests skip with this reason.
    Unavailable(String),
    /// The script failed otherwise: a real failure.
    Failed(String),
}

/// Runs `scripts/qemu-guest.sh` once per process (it caches across processes and locks).
pub fn guest_image() -> Result<GuestImage, ImageError> {
    static IMAGE: OnceLock<Result<GuestImage, ImageError>> = OnceLock::new();
    IMAGE.get_or_init(build_image).clone()
}

/// The guest image, or `None` after a "skipped: `test`" line when it cannot be fetched here; a
/// failed build panics (a real failure).
pub fn image_or_skip(test: &str) -> Option<GuestImage> {
    match guest_image() {
        Ok(image) => Some(image),
        Err(ImageError::Unavailable(why)) => {
            skip(
                test,
                &format!("QEMU and the guest cannot be fetched here: {why}"),
            );
            None
        }
        Err(ImageError::Failed(why)) => panic!("building the QEMU guest failed: {why}"),
    }
}

fn build_image() -> Result<GuestImage, ImageError> {
    let script = workspace_root().join("scripts/qemu-guest.sh");
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ImageError::Failed(format!("run {}: {e}", script.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.status.code() {
        Some(0) => {}
        Some(2) => return Err(ImageError::Unavailable(stderr)),
        _ => {
            return Err(ImageError::Failed(format!(
                "{} failed ({}): {stderr}",
                script.display(),
                out.status
            )))
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
            .ok_or_else(|| ImageError::Failed(format!("qemu-guest.sh printed no {key}=")))
    };
    Ok(GuestImage {
        qemu: get("qemu")?.into(),
        libdir: get("libdir")?,
        datadirs: get("datadirs")?.split(':').map(PathBuf::from).collect(),
        kernel: get("kernel")?.into(),
        initrd: get("initrd")?.into(),
    })
}

/// How to run one guest.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// The network namespace QEMU (and so its tap and hooks) runs in.
    pub netns: PathBuf,
    pub tap: String,
    /// The guest's MAC (`-device virtio-net-pci,mac=`).
    pub mac: String,
    /// `script=`.
    pub ifup: PathBuf,
    /// `downscript=` (`None`: `no`).
    pub ifdown: Option<PathBuf>,
    /// QEMU's environment besides `PATH` and `LD_LIBRARY_PATH` (what the hooks read).
    pub env: Vec<(String, String)>,
    /// Extra kernel command line: `ciao.ping=...`, `ciao.ip=...`, `ciao.tries=...`.
    pub append: String,
    /// Directory for `<tap>.serial` and `<tap>.qemu.log`.
    pub log_dir: PathBuf,
}

/// A VM of a cluster tenant, as a launcher describes it to `ciao-qemu-ifup`.
#[derive(Debug, Clone)]
pub struct HookedVm<'a> {
    pub subnet: &'a str,
    /// Its address: the tenant's CNCI leases it to `mac` by DHCP.
    pub ip: &'a str,
    pub mac: &'a str,
    pub tap: &'a str,
    /// Extra kernel command line ([`GuestSpec::append`]).
    pub append: &'a str,
}

/// Starts `vm` of tenant `t` on `node` with `ciao-qemu-ifup`/`ciao-qemu-ifdown` as QEMU's
/// `script=`/`downscript=` (the VM ID is `vm-under-test`).
pub fn start_hooked(
    image: &GuestImage,
    node: &ComputeNode,
    t: &Tenant,
    vm: &HookedVm,
) -> Result<Guest> {
    let state = node.state.path().display().to_string();
    let env = [
        ("CIAO_TENANT", t.tenant.as_str()),
        ("CIAO_SUBNET", vm.subnet),
        ("CIAO_CNCI_UUID", t.cnci.as_str()),
        ("CIAO_CNCI_IP", NN_IP),
        ("CIAO_VM_IP", vm.ip),
        ("CIAO_VM_MAC", vm.mac),
        ("CIAO_VM_ID", "vm-under-test"),
        ("CIAO_STATE_DIR", state.as_str()),
        ("CIAO_VNIC_DIR", "/nonexistent/ciao-vnics"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let spec = GuestSpec {
        netns: node.ns.path(),
        tap: vm.tap.into(),
        mac: vm.mac.into(),
        ifup: vm_hook("ciao-qemu-ifup"),
        ifdown: Some(vm_hook("ciao-qemu-ifdown")),
        env,
        append: vm.append.into(),
        log_dir: log_dir("qemu-test"),
    };
    Guest::start(image, &spec)
}

/// A running (or finished) QEMU guest; on drop QEMU gets SIGTERM (so its downscript runs),
/// then SIGKILL after 5 s, by its PID.
pub struct Guest {
    child: Option<std::process::Child>,
    pub serial: PathBuf,
    pub qemu_log: PathBuf,
    /// When QEMU was started.
    pub started: Instant,
}

impl Guest {
    /// Starts QEMU inside `spec.netns` (with `nsenter --net`, which execs QEMU under its own
    /// PID) in its own process group.
    pub fn start(image: &GuestImage, spec: &GuestSpec) -> Result<Guest> {
        std::fs::create_dir_all(&spec.log_dir).context("guest log dir")?;
        let serial = spec.log_dir.join(format!("{}.serial", spec.tap));
        let qemu_log = spec.log_dir.join(format!("{}.qemu.log", spec.tap));
        let _ = std::fs::remove_file(&serial);
        let log = File::create(&qemu_log).context("qemu log")?;
        let log2 = log.try_clone().context("dup qemu log")?;
        let downscript = spec
            .ifdown
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "no".into());
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", spec.netns.display()))
            .arg(&image.qemu)
            .args([
                "-machine",
                "q35,accel=tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                "256",
            ])
            .args(["-display", "none", "-nodefaults", "-no-reboot"]);
        for dir in &image.datadirs {
            cmd.arg("-L").arg(dir);
        }
        cmd.arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 quiet loglevel=3 panic=-1 {}",
                spec.append
            ))
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script={},downscript={downscript}",
                spec.tap,
                spec.ifup.display()
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n0,mac={},romfile=",
                spec.mac
            ))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LD_LIBRARY_PATH", &image.libdir)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let started = Instant::now();
        let child = cmd.spawn().context("start qemu")?;
        Ok(Guest {
            child: Some(child),
            serial,
            qemu_log,
            started,
        })
    }

    /// What the guest printed on its serial port so far.
    pub fn serial_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// What QEMU (and the hooks, which share its stderr) printed.
    pub fn qemu_text(&self) -> String {
        std::fs::read_to_string(&self.qemu_log).unwrap_or_default()
    }

    fn context(&self) -> String {
        format!(
            "serial:\n{}\nqemu and hooks:\n{}",
            self.serial_text(),
            self.qemu_text()
        )
    }

    /// Waits for a serial line containing `needle`; returns it and the time since QEMU started.
    /// A line counts only once its newline has arrived (the guest writes the serial port a few
    /// bytes at a time, and a busy host reads it between them). Fails early if QEMU exits first.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> Result<(String, Duration)> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.serial_text();
            if let Some(line) = complete_lines(&text).lines().find(|l| l.contains(needle)) {
                return Ok((line.trim().to_string(), self.started.elapsed()));
            }
            if let Some(status) = self.try_status()? {
                // The line may have landed between the read and the exit; the output is final
                // now, so a last line without its newline counts too.
                if let Some(line) = self.serial_text().lines().find(|l| l.contains(needle)) {
                    return Ok((line.trim().to_string(), self.started.elapsed()));
                }
                bail!(
                    "qemu exited ({status}) before the guest printed {needle:?}\n{}",
                    self.context()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the guest printed no {needle:?} within {timeout:?}\n{}",
                    self.context()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => c.try_wait().context("wait qemu"),
            None => bail!("qemu was already reaped"),
        }
    }

    /// Waits for QEMU to exit (after the guest's poweroff QEMU runs the downscript, then exits).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("qemu did not exit within {timeout:?}\n{}", self.context());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SIGTERM first: QEMU then runs the downscript, as when a launcher stops a VM.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// A directory for guest logs under `target/qemu-guest/runs/<unique>` (kept for post-mortems;
/// each run's files are small).
pub fn log_dir(name: &str) -> PathBuf {
    workspace_root()
        .join("target/qemu-guest/runs")
        .join(crate::unique(name))
}

/// The part of `text` up to and including its last newline: the lines that are complete.
fn complete_lines(text: &str) -> &str {
    text.rfind('\n').map_or("", |end| &text[..=end])
}

#[cfg(test)]
mod tests {
    use super::complete_lines;

    #[test]
    fn a_line_without_its_newline_is_not_complete() {
        let partial = "boot\r\nCIAO-GUEST dhcp ok ip=172.16.1.32/24 router=172.";
        assert_eq!(complete_lines(partial), "boot\r\n");
        assert!(!complete_lines(partial).contains("CIAO-GUEST"));
        let whole = "CIAO-GUEST dhcp ok ip=172.16.1.32/24 router=172.16.1.1\r\n";
        assert_eq!(complete_lines(whole), whole);
        assert_eq!(complete_lines(""), "");
    }
}
