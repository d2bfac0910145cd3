//! What this process has used so far (CPU time, peak memory), from `/proc/self`, for the
//! figures `gitvps apply` logs and the bench reports.

use std::time::Duration;

/// This process's CPU time so far, all threads, in nanoseconds precision
/// (the sum of `/proc/self/task/*/schedstat`; threads that already ended are not counted,
/// so measure while the runtime's worker threads are alive).
pub fn cpu_time() -> Duration {
    let mut ns = 0u64;
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for t in rd.flatten() {
            let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += text
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// This process's CPU time so far, user and system, every thread including those that ended
/// (`/proc/self/stat`; the kernel counts in clock ticks, 10 ms here).
pub fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ticks: u64 = f.iter().sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time, user and system, of this process's children that ended and were waited for
/// (`/proc/self/stat`'s `cutime` and `cstime`, in 10 ms clock ticks): a child's whole CPU
/// time once it is reaped.
pub fn children_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(13)
        .take(2)
        .filter_map(|x| x.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Peak resident memory of this process, from /proc/self/status.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
