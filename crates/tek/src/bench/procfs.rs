//! CPU time and memory of a process, read from `/proc` (Linux only).

use anyhow::{bail, Context};
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux architecture
/// this runs on (the kernel ABI fixes it for x86 and arm).
const USER_HZ: f64 = 100.0;

/// User + system CPU time consumed so far by `pid` (all its threads).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) else {
        bail!("{path}: no command field");
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {}", i + 3))
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{path}: no VmRSS line"))
}

/// Bytes `pid` has written so far: through write system calls (`wchar`: the database's log
/// and pages, a little HTTP) and to storage (`write_bytes`), from `/proc/<pid>/io`.
pub fn written(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("{path}: no {name} line"))
    };
    Ok((field("wchar:")?, field("write_bytes:")?))
}

/// What a process writes over an interval ([`written`]), as [`CpuMeter`] measures its CPU.
pub struct WriteMeter {
    pid: u32,
    start: (u64, u64),
    at: Instant,
}

impl WriteMeter {
    /// Starts measuring now.
    pub fn start(pid: u32) -> anyhow::Result<WriteMeter> {
        Ok(WriteMeter {
            pid,
            start: written(pid)?,
            at: Instant::now(),
        })
    }

    /// Bytes written since [`start`](Self::start): (through write calls, to storage).
    pub fn bytes(&self) -> anyhow::Result<(u64, u64)> {
        let now = written(self.pid)?;
        Ok((
            now.0.saturating_sub(self.start.0),
            now.1.saturating_sub(self.start.1),
        ))
    }

    /// [`bytes`](Self::bytes) per wall second.
    pub fn per_second(&self) -> anyhow::Result<(f64, f64)> {
        let (calls, storage) = self.bytes()?;
        let secs = self.at.elapsed().as_secs_f64().max(1e-6);
        Ok((calls as f64 / secs, storage as f64 / secs))
    }
}

/// Datagrams the kernel dropped for the IPv4 UDP socket bound to `addr` because its receive
/// buffer was full (the `drops` column of `/proc/net/udp`).
pub fn udp_drops(addr: std::net::SocketAddr) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").context("cannot read /proc/net/udp")?;
    let port = format!(":{:04X}", addr.port());
    text.lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1)?.ends_with(&port)).then(|| f.last()?.parse().ok())?
        })
        .with_context(|| format!("no UDP socket on port {} in /proc/net/udp", addr.port()))
}

/// CPU use of a process over an interval, as a fraction of one core.
pub struct CpuMeter {
    pid: u32,
    cpu: Duration,
    at: Instant,
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn start(pid: u32) -> anyhow::Result<CpuMeter> {
        Ok(CpuMeter {
            pid,
            cpu: cpu_time(pid)?,
            at: Instant::now(),
        })
    }

    /// CPU seconds per wall second since [`start`](Self::start) (1.0 = one core busy).
    pub fn cores(&self) -> anyhow::Result<f64> {
        let cpu = cpu_time(self.pid)?.saturating_sub(self.cpu);
        let wall = self.at.elapsed().as_secs_f64().max(1e-6);
        Ok(cpu.as_secs_f64() / wall)
    }
}

/// The machine's CPU time by kind, from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    /// User time, niced or not.
    pub user: u64,
    /// Kernel time: system calls, interrupts and softirqs (where loopback packets are handled).
    pub kernel: u64,
    /// Everything, idle included.
    pub total: u64,
}

impl MachineCpu {
    /// Reads `/proc/stat` now.
    pub fn now() -> anyhow::Result<MachineCpu> {
        let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        let line = text
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("/proc/stat: no cpu line")?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().context("/proc/stat: a cpu field is not a number"))
            .collect::<anyhow::Result<_>>()?;
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal ...
        Ok(MachineCpu {
            user: at(0) + at(1),
            kernel: at(2) + at(5) + at(6),
            total: f.iter().take(8).sum(),
        })
    }

    /// Cores busy in user and in kernel code between `self` and `later`, on a machine of
    /// `cores` cores.
    pub fn cores_until(&self, later: &MachineCpu, cores: usize) -> (f64, f64) {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let share = |a: u64, b: u64| b.saturating_sub(a) as f64 / total * cores as f64;
        (
            share(self.user, later.user),
            share(self.kernel, later.kernel),
        )
    }
}

/// The machine's load average over the last minute (other work sharing the cores).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 100);
        let t0 = cpu_time(me).unwrap();
        // Burn a little CPU; the counter must not go backwards.
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_time(me).unwrap() >= t0);
        assert!(rss_kib(u32::MAX).is_err());
        let (wchar, _) = written(me).unwrap();
        assert!(written(me).unwrap().0 >= wchar);
        let w = WriteMeter::start(me).unwrap();
        std::fs::write(
            std::env::temp_dir().join(format!("tek-procfs-{me}")),
            [0u8; 4096],
        )
        .unwrap();
        assert!(w.bytes().unwrap().0 >= 4096);
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("tek-procfs-{me}")));
        let a = MachineCpu::now().unwrap();
        let b = MachineCpu::now().unwrap();
        let (user, kernel) = a.cores_until(&b, 2);
        assert!(b.total >= a.total && (0.0..=2.0).contains(&user) && (0.0..=2.0).contains(&kernel));
    }
}
