//! What the benches read off the host: process memory and CPU time from `/proc`, machine load,
//! and small helpers for reporting. Shared by the `*-bench` binaries.

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

/// Busy CPU time of the whole machine (all cores) from `/proc/stat`, to show how much of a
/// phase's CPU went to something other than what is measured.
pub fn machine_busy() -> Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("no cpu line in /proc/stat"))?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse::<u64>().ok())
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(Duration::from_secs_f64(busy as f64 / clock_ticks() as f64))
}

/// Waits (up to `limit`) until the machine's CPUs are below 15 % busy over a second: the
/// benches share two cores with anything else running (a compile, for instance). `between`
/// runs before each second of measuring (e.g. to honour Ctrl-C). Returns the last busy share
/// seen, in % of all cores; `who` names the bench in its messages.
pub fn wait_quiet(
    limit: Duration,
    who: &str,
    mut between: impl FnMut() -> Result<()>,
) -> Result<f64> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let deadline = Instant::now() + limit;
    loop {
        between()?;
        let before = machine_busy()?;
        std::thread::sleep(Duration::from_secs(1));
        let busy = (machine_busy()?.saturating_sub(before).as_secs_f64() / cpus * 100.0).round();
        if busy < 15.0 || Instant::now() >= deadline {
            if busy >= 15.0 {
                eprintln!("{who}: the machine is still {busy}% busy; numbers will be noisy");
            }
            return Ok(busy);
        }
        eprintln!("{who}: waiting for the machine to be quiet ({busy}% busy)");
    }
}

/// Reads `ciao-scheduler`'s stderr up to its banner (`... listening on <addr>`) and returns the
/// address; the rest of its output is drained on a thread (echoed when `echo`), so the
/// scheduler never blocks on a full pipe.
pub fn scheduler_address(stderr: std::process::ChildStderr, echo: bool) -> Result<String> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => match line.split_once(" listening on ") {
                Some((_, addr)) => break addr.trim().to_string(),
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

/// Rounds to three decimals, for reports.
pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// The median (NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
    fn medians_and_rounding() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(round3(1.23456), 1.235);
        assert_eq!(utc_stamp().len(), 15);
    }

    #[test]
    fn reads_its_own_process() {
        assert!(rss_kib(std::process::id()).expect("rss") > 0);
        cpu_time("self").expect("cpu time");
        machine_busy().expect("machine busy");
    }
}
