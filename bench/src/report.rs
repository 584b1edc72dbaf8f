//! The results: one serialisable record (written as JSON) and its markdown rendering.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use testkit::stats::{ms, ratio, Summary};

/// Timings of one plugin's ADDs and DELs in one phase, with the raw samples for later analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Ops {
    pub add: Summary,
    pub del: Summary,
    pub add_samples_ms: Vec<f64>,
    pub del_samples_ms: Vec<f64>,
}

impl Ops {
    pub fn new(add: &[Duration], del: &[Duration]) -> Self {
        Ops {
            add: Summary::of(add),
            del: Summary::of(del),
            add_samples_ms: add.iter().map(|d| ms(*d)).collect(),
            del_samples_ms: del.iter().map(|d| ms(*d)).collect(),
        }
    }
}

/// ours / reference for the headline percentiles.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    pub add_p50: f64,
    pub add_p99: f64,
    pub del_p50: f64,
    pub del_p99: f64,
}

impl Ratios {
    pub fn of(ours: &Ops, reference: &Ops) -> Self {
        Ratios {
            add_p50: ratio(ours.add.p50_ms, reference.add.p50_ms),
            add_p99: ratio(ours.add.p99_ms, reference.add.p99_ms),
            del_p50: ratio(ours.del.p50_ms, reference.del.p50_ms),
            del_p99: ratio(ours.del.p99_ms, reference.del.p99_ms),
        }
    }
}

/// Requirement 1: sequential ADD of every container, then DEL of every container.
#[derive(Debug, Clone, Serialize)]
pub struct Sequential {
    pub containers: usize,
    pub ours: Ops,
    pub reference: Ops,
    pub ratio: Ratios,
    /// The goal: our ADD p50 at most half the reference's.
    pub goal_add_p50_at_most_half_met: bool,
}

/// One plugin at one attachment count: the pre-attach ADDs (0 → N) and the measured rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleOps {
    pub preattach: Summary,
    pub preattach_samples_ms: Vec<f64>,
    pub rounds: Ops,
}

/// Requirement 2, one N: ADD+DEL rounds on top of N existing attachments.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub existing: usize,
    pub ours: ScaleOps,
    pub reference: Option<ScaleOps>,
}

/// ADD p50 at the largest N over ADD p50 at the smallest.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub from: usize,
    pub to: usize,
    pub ours_add_p50: f64,
    pub reference_add_p50: Option<f64>,
    /// The goal: ours grows less than 1.5x.
    pub goal_ours_below_1_5x_met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Startup {
    pub binary: String,
    pub exec: Summary,
}

/// How busy the machine was just before a phase began (after waiting for it to go quiet).
#[derive(Debug, Clone, Serialize)]
pub struct QuietCheck {
    pub phase: String,
    /// Share of all CPUs busy over the last half second, 0..1.
    pub cpu_busy: f64,
}

impl QuietCheck {
    pub fn new(phase: &str, cpu_busy: f64) -> Self {
        QuietCheck {
            phase: phase.to_string(),
            cpu_busy: (cpu_busy * 1e3).round() / 1e3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub kernel: String,
    pub cpus: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub containers: usize,
    pub scale: Vec<usize>,
    pub rounds: usize,
    pub reference_in_scale: bool,
    pub ours: String,
    pub reference: String,
    pub git_rev: Option<String>,
    pub node_sysctl: Vec<String>,
    /// Where node state lives ($TMPDIR): its filesystem matters to both plugins.
    pub state_parent: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub tool: &'static str,
    pub unix_time: u64,
    pub wall_seconds: f64,
    pub host: Host,
    pub settings: Settings,
    pub quiet: Vec<QuietCheck>,
    /// Cost of a bare fork/exec of each binary (`CNI_COMMAND=VERSION`): the floor under ADD/DEL.
    pub startup: Vec<Startup>,
    pub sequential: Sequential,
    pub scale: Vec<Scale>,
    pub growth: Option<Growth>,
}

fn f(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "n/a".into()
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**NOT met**"
    }
}

impl Results {
    /// The human-readable table printed at the end of a run.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = self.write_markdown(&mut s);
        s
    }

    fn write_markdown(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "## ciao-bench: `ciao` vs. reference `bridge` + `host-local`\n"
        )?;
        writeln!(
            s,
            "Kernel {}, {} CPUs, {:.0} s wall. Times are ms per invocation, spawn to exit, as a runtime \
             sees them; both plugins run interleaved in one run, each on its own node namespace.\n",
            self.host.kernel, self.host.cpus, self.wall_seconds
        )?;
        if !self.settings.node_sysctl.is_empty() {
            writeln!(
                s,
                "Node sysctls: `{}`.\n",
                self.settings.node_sysctl.join("`, `")
            )?;
        }
        let busy: Vec<String> = self
            .quiet
            .iter()
            .map(|q| format!("{} {:.0}%", q.phase, q.cpu_busy * 100.0))
            .collect();
        writeln!(s, "CPU busy just before each phase: {}.\n", busy.join(", "))?;

        writeln!(s, "### Process start-up (`CNI_COMMAND=VERSION`)\n")?;
        writeln!(s, "| binary | n | p50 | p99 |\n|---|---:|---:|---:|")?;
        for st in &self.startup {
            writeln!(
                s,
                "| {} | {} | {} | {} |",
                st.binary,
                st.exec.n,
                f(st.exec.p50_ms),
                f(st.exec.p99_ms)
            )?;
        }

        let q = &self.sequential;
        writeln!(
            s,
            "\n### 1. Sequential ADD of {} containers, then DEL of all (0 → {} → 0 attachments)\n",
            q.containers, q.containers
        )?;
        writeln!(
            s,
            "| plugin | ADD p50 | ADD p99 | DEL p50 | DEL p99 |\n|---|---:|---:|---:|---:|"
        )?;
        for (name, o) in [("ciao", &q.ours), ("bridge + host-local", &q.reference)] {
            writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                f(o.add.p50_ms),
                f(o.add.p99_ms),
                f(o.del.p50_ms),
                f(o.del.p99_ms)
            )?;
        }
        writeln!(
            s,
            "| **ratio ciao / reference** | {} | {} | {} | {} |",
            f(q.ratio.add_p50),
            f(q.ratio.add_p99),
            f(q.ratio.del_p50),
            f(q.ratio.del_p99)
        )?;
        writeln!(
            s,
            "\nGoal \"ciao ADD p50 ≤ ½ reference\": {} (ratio {}).",
            met(q.goal_add_p50_at_most_half_met),
            f(q.ratio.add_p50)
        )?;

        if !self.scale.is_empty() {
            writeln!(
                s,
                "\n### 2. ADD+DEL with N attachments already on the bridge ({} rounds each)\n",
                self.settings.rounds
            )?;
            writeln!(
                s,
                "| plugin | N | ADD p50 | ADD p99 | DEL p50 | DEL p99 | pre-attach ADD p50 (0 → N) |\n\
                 |---|---:|---:|---:|---:|---:|---:|"
            )?;
            for sc in &self.scale {
                let rows = [
                    ("ciao", Some(&sc.ours)),
                    ("bridge + host-local", sc.reference.as_ref()),
                ];
                for (name, o) in rows {
                    if let Some(o) = o {
                        writeln!(
                            s,
                            "| {name} | {} | {} | {} | {} | {} | {} |",
                            sc.existing,
                            f(o.rounds.add.p50_ms),
                            f(o.rounds.add.p99_ms),
                            f(o.rounds.del.p50_ms),
                            f(o.rounds.del.p99_ms),
                            f(o.preattach.p50_ms)
                        )?;
                    }
                }
            }
        }
        if let Some(g) = &self.growth {
            let theirs = g
                .reference_add_p50
                .map(|r| format!(", reference {}×", f(r)))
                .unwrap_or_default();
            writeln!(
                s,
                "\nADD p50 growth N={} → N={}: ciao {}×{theirs}. Goal \"ciao < 1.5×\": {}.",
                g.from,
                g.to,
                f(g.ours_add_p50),
                met(g.goal_ours_below_1_5x_met)
            )?;
        }
        Ok(())
    }
}
