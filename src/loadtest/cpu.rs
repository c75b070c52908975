//! Where the CPU went during one measured side of a run. Pages per second on these shared cores move with
//! what else the machine is doing (other processes, and steal: time the hypervisor gives another guest),
//! so each side also reports this process's CPU time (generator, origin and proxy together, since they
//! share it), how many cores that kept busy, and the machine's steal and other processes' share meanwhile.
//! CPU time per page moves far less with the machine than pages per second, and says whether a missed
//! throughput figure was the code or the machine.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The readings at the start of a measured window.
pub(super) struct CpuMark {
    at: Instant,
    process: Duration,
    machine: Option<MachineTicks>,
}

/// What one measured window used.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// This process's CPU time, all threads, in seconds.
    pub process_s: f64,
    /// Cores this process kept busy on average: its CPU time over the wall-clock time.
    pub cores: f64,
    /// The machine's CPU time the hypervisor gave elsewhere (steal), percent of all of it.
    pub steal_pct: f64,
    /// The machine's CPU time other processes here used, percent of all of it.
    pub others_pct: f64,
}

/// The machine-wide `cpu` line of `/proc/stat`, in clock ticks: all of them, the busy ones and steal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MachineTicks {
    total: u64,
    busy: u64,
    steal: u64,
}

impl CpuMark {
    pub(super) fn now() -> CpuMark {
        CpuMark {
            at: Instant::now(),
            process: process_cpu(),
            machine: machine_ticks(),
        }
    }

    /// What was used since this mark.
    pub(super) fn used(&self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let process_s = process_cpu().saturating_sub(self.process).as_secs_f64();
        let (steal_pct, others_pct) = match (self.machine, machine_ticks()) {
            (Some(before), Some(after)) => shares(
                before,
                after,
                process_s,
                rustix::param::clock_ticks_per_second(),
            ),
            _ => (0.0, 0.0),
        };
        CpuUse {
            process_s,
            cores: process_s / wall,
            steal_pct,
            others_pct,
        }
    }
}

impl CpuUse {
    /// Several windows as one, each weighted by its wall-clock time.
    pub(super) fn pooled(windows: impl Iterator<Item = (CpuUse, Duration)>) -> CpuUse {
        let (mut process_s, mut wall, mut steal, mut others) = (0.0, 0.0, 0.0, 0.0);
        for (used, took) in windows {
            let took = took.as_secs_f64();
            process_s += used.process_s;
            wall += took;
            steal += used.steal_pct * took;
            others += used.others_pct * took;
        }
        let per_wall = |x: f64| if wall > 0.0 { x / wall } else { 0.0 };
        CpuUse {
            process_s,
            cores: per_wall(process_s),
            steal_pct: per_wall(steal),
            others_pct: per_wall(others),
        }
    }
}

/// Steal and other processes' busy time between two readings, as percentages of the machine's time.
/// Other processes' time is the machine's busy time less ours (never below zero: ticks are coarse).
fn shares(before: MachineTicks, after: MachineTicks, ours_s: f64, hz: u64) -> (f64, f64) {
    let total = after.total.saturating_sub(before.total);
    if total == 0 || hz == 0 {
        return (0.0, 0.0);
    }
    let pct = |ticks: f64| 100.0 * ticks / total as f64;
    let steal = after.steal.saturating_sub(before.steal) as f64;
    let busy = after.busy.saturating_sub(before.busy) as f64;
    let others = (busy - ours_s * hz as f64).max(0.0);
    (pct(steal), pct(others))
}

fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

/// `cpu user nice system idle iowait irq softirq steal [guest guest_nice]`; guest time is already
/// counted in user and nice, so it is not added again.
fn parse_cpu_line(line: &str) -> Option<MachineTicks> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] =
        <[u64; 8]>::try_from(values).ok()?;
    let busy = user + nice + system + irq + softirq;
    Some(MachineTicks {
        total: busy + idle + iowait + steal,
        busy,
        steal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_windows_by_their_wall_time() {
        let window = |process_s, steal_pct| CpuUse {
            process_s,
            cores: 0.0,
            steal_pct,
            others_pct: 0.0,
        };
        let pooled = CpuUse::pooled(
            [
                (window(1.0, 0.0), Duration::from_secs(1)),
                (window(3.0, 4.0), Duration::from_secs(3)),
            ]
            .into_iter(),
        );
        assert_eq!(pooled.process_s, 4.0);
        assert_eq!(pooled.cores, 1.0);
        assert_eq!(pooled.steal_pct, 3.0);
        assert_eq!(CpuUse::pooled(std::iter::empty()).cores, 0.0);
    }

    #[test]
    fn reads_the_machine_line() {
        let t = parse_cpu_line("cpu  3070140 1573 192336 6170150 9043 0 15768 273296 0 0").unwrap();
        assert_eq!(t.steal, 273_296);
        assert_eq!(t.busy, 3_070_140 + 1_573 + 192_336 + 15_768);
        assert_eq!(t.total, t.busy + 6_170_150 + 9_043 + 273_296);
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8 0 0"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 3"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 x 4 5 6 7 8"), None);
    }

    #[test]
    fn splits_the_machine_time() {
        let before = MachineTicks {
            total: 1_000,
            busy: 500,
            steal: 100,
        };
        // 200 ticks at 100 Hz: 2 s of machine time; 1.5 s busy of which 1 s ours; 0.2 s stolen.
        let after = MachineTicks {
            total: 1_200,
            busy: 650,
            steal: 120,
        };
        let (steal, others) = shares(before, after, 1.0, 100);
        assert!((steal - 10.0).abs() < 1e-9, "{steal}");
        assert!((others - 25.0).abs() < 1e-9, "{others}");
        // Coarse ticks can put our own time above the machine's busy time: others is then zero.
        assert_eq!(shares(before, after, 5.0, 100).1, 0.0);
        assert_eq!(shares(after, after, 1.0, 100), (0.0, 0.0));
    }

    #[test]
    fn counts_this_process() {
        let mark = CpuMark::now();
        let spin_until = Instant::now() + Duration::from_millis(30);
        let mut x = 0u64;
        while Instant::now() < spin_until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = mark.used();
        assert!(used.process_s > 0.0 && used.cores > 0.0, "{used:?}");
    }
}
