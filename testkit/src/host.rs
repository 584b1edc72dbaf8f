//! What the benches read off the host: process memory and CPU time from `/proc`, machine load
//! (and waiting for a quiet machine), CPU meters over a phase, the scheduler's banner, open-file
//! limits. Shared by the benchmark binaries and the tests.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in {path}"))
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

/// Clock ticks per second (`CLK_TCK`), the unit of `/proc` CPU times.
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64
}

/// User + system CPU time of a process so far (`pid` may be `self`).
pub fn cpu_time(pid: &str) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // Fields after the parenthesised command name start at field 3 (state); utime is 14.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("malformed {path}"))
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// Resident and peak resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// VmRSS and VmHWM of a process.
pub fn mem(pid: u32) -> Result<Mem> {
    Ok(Mem {
        rss_kib: status_kib(pid, "VmRSS")?,
        hwm_kib: status_kib(pid, "VmHWM")?,
    })
}

/// Measures CPU use over a phase: of some processes, of this process and of the whole machine.
pub struct CpuMeter {
    pids: Vec<String>,
    start: Instant,
    processes: Vec<Duration>,
    own: Duration,
    machine: Duration,
}

/// What a [`CpuMeter`] measured, in % of one core (the machine's maximum is 100 % per core),
/// to one decimal.
#[derive(Debug, Clone)]
pub struct CpuUse {
    /// One per process, in the order given to [`CpuMeter::start`].
    pub processes_pct: Vec<f64>,
    /// This process.
    pub own_pct: f64,
    /// The whole machine, kernel softirq work included.
    pub machine_pct: f64,
}

impl CpuMeter {
    /// Starts measuring the processes `pids`, this process and the machine.
    pub fn start(pids: &[u32]) -> Result<Self> {
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let processes = pids.iter().map(|p| cpu_time(p)).collect::<Result<_>>()?;
        Ok(CpuMeter {
            processes,
            own: cpu_time("self")?,
            machine: machine_busy()?,
            pids,
            start: Instant::now(),
        })
    }

    /// CPU use since [`CpuMeter::start`].
    pub fn stop(&self) -> Result<CpuUse> {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let pct = |d: Duration| (d.as_secs_f64() / wall * 1000.0).round() / 10.0;
        let mut processes_pct = Vec::with_capacity(self.pids.len());
        for (pid, then) in self.pids.iter().zip(&self.processes) {
            processes_pct.push(pct(cpu_time(pid)?.saturating_sub(*then)));
        }
        Ok(CpuUse {
            processes_pct,
            own_pct: pct(cpu_time("self")?.saturating_sub(self.own)),
            machine_pct: pct(machine_busy()?.saturating_sub(self.machine)),
        })
    }
}

/// Raises this process's soft open-files limit to its hard limit (children inherit it) and
/// returns that limit.
pub fn raise_nofile_to_hard() -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit")?;
    }
    Ok(hard)
}

/// CPU counters of the whole machine (all cores) from the first line of `/proc/stat`: (busy,
/// total) in clock ticks. Busy is user nice system irq softirq steal (guest time is already in
/// user); total adds idle and iowait.
pub fn cpu_ticks() -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("no cpu line in /proc/stat"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse::<u64>().ok())
        .take(8)
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// Busy CPU time of the whole machine (all cores) from `/proc/stat`, to show how much of a
/// phase's CPU went to something other than what is measured.
pub fn machine_busy() -> Result<Duration> {
    let (busy, _) = cpu_ticks()?;
    Ok(Duration::from_secs_f64(busy as f64 / clock_ticks() as f64))
}

/// How to wait for a quiet machine: below 15 % of all CPUs busy over `sample`, `streak` samples
/// in a row, for at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Quiet {
    pub limit: Duration,
    pub sample: Duration,
    pub streak: u32,
}

/// The busy share below which the machine counts as quiet.
const QUIET_BELOW: f64 = 0.15;

/// Waits until the machine is quiet as `how` says: the benches share two cores with anything
/// else running (a compile, the kernel still destroying a previous run's namespaces under the
/// RTNL lock). `between` runs before each sample (e.g. to honour Ctrl-C; its error ends the
/// wait). Returns the last busy share seen, 0..1 of all cores; `who` names the bench in its
/// messages.
pub fn wait_quiet_for(
    how: Quiet,
    who: &str,
    mut between: impl FnMut() -> Result<()>,
) -> Result<f64> {
    let deadline = Instant::now() + how.limit;
    let mut in_a_row = 0;
    let mut said = false;
    loop {
        between()?;
        let (b0, t0) = cpu_ticks()?;
        std::thread::sleep(how.sample);
        let (b1, t1) = cpu_ticks()?;
        let busy = b1.saturating_sub(b0) as f64 / t1.saturating_sub(t0).max(1) as f64;
        if busy < QUIET_BELOW {
            in_a_row += 1;
            if in_a_row >= how.streak {
                return Ok(busy);
            }
            continue;
        }
        in_a_row = 0;
        if Instant::now() >= deadline {
            eprintln!(
                "{who}: the machine is still {:.0}% busy; numbers will be noisy",
                busy * 100.0
            );
            return Ok(busy);
        }
        if !said {
            eprintln!(
                "{who}: waiting for the machine to be quiet ({:.0}% busy)",
                busy * 100.0
            );
            said = true;
        }
    }
}

/// [`wait_quiet_for`] one quiet second within `limit`; returns the busy share in % of all
/// cores, rounded.
pub fn wait_quiet(limit: Duration, who: &str, between: impl FnMut() -> Result<()>) -> Result<f64> {
    let how = Quiet {
        limit,
        sample: Duration::from_secs(1),
        streak: 1,
    };
    Ok((wait_quiet_for(how, who, between)? * 100.0).round())
}

/// The address in `ciao-scheduler`'s banner line (`... listening on <addr>`), if it is that line.
pub fn banner_address(line: &str) -> Option<String> {
    line.split_once(" listening on ")
        .map(|(_, addr)| addr.trim().to_string())
}

/// Reads `ciao-scheduler`'s stderr up to its banner (`... listening on <addr>`) and returns the
/// address; the rest of its output is drained on a thread (echoed when `echo`), so the
/// scheduler never blocks on a full pipe.
pub fn scheduler_address(stderr: std::process::ChildStderr, echo: bool) -> Result<String> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => match banner_address(&line) {
                Some(addr) => break addr,
                None => eprintln!("ciao-scheduler: {line}"),
            },
            Some(Err(e)) => return Err(e).context("read the scheduler's stderr"),
            None => anyhow::bail!("ciao-scheduler exited before listening"),
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if echo {
                eprintln!("ciao-scheduler: {line}");
            }
        }
    });
    Ok(addr)
}

/// `YYYYMMDD-HHMMSS` in UTC, for result file names.
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_banners() {
        assert_eq!(utc_stamp().len(), 15);
        assert_eq!(
            banner_address("ciao-scheduler 1f2e listening on 127.0.0.1:8888\n").as_deref(),
            Some("127.0.0.1:8888")
        );
        assert_eq!(banner_address("ciao-scheduler: bad certificate"), None);
    }

    #[test]
    fn reads_its_own_process() {
        assert!(rss_kib(std::process::id()).expect("rss") > 0);
        cpu_time("self").expect("cpu time");
        machine_busy().expect("machine busy");
        let m = mem(std::process::id()).expect("mem");
        assert!(m.hwm_kib >= m.rss_kib);
        let meter = CpuMeter::start(&[std::process::id()]).expect("meter");
        let used = meter.stop().expect("cpu use");
        assert_eq!(used.processes_pct.len(), 1);
        assert!(used.machine_pct >= 0.0);
    }
}
