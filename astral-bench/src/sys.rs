//! Process CPU time, memory, load and CPU affinity. The memory and affinity
//! figures come from Linux (`/proc`, `sched_setaffinity`); elsewhere they
//! are reported as unavailable, never as zeros.

/// CPU time and peak memory of the whole process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// user + sys seconds, whole process.
    pub cpu_s: f64,
    /// ru_maxrss: peak resident set, KiB (Linux units), process lifetime.
    pub maxrss_kib: u64,
}

/// The process's CPU time and peak RSS so far.
#[cfg(unix)]
pub fn usage() -> Usage {
    // SAFETY: getrusage only writes the struct we hand it; all-zero is a
    // valid `rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live `rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Usage {
        cpu_s: secs(ru.ru_utime) + secs(ru.ru_stime),
        maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
    }
}

/// The process's CPU time and peak RSS so far (not measured here).
#[cfg(not(unix))]
pub fn usage() -> Usage {
    Usage {
        cpu_s: f64::NAN,
        maxrss_kib: 0,
    }
}

/// Reset the kernel's peak-RSS mark (VmHWM) so the next workload's own peak
/// can be read. `false` if the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// VmHWM (peak resident set since the last reset), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// VmRSS (current resident set), KiB.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// The CPU model name (`/proc/cpuinfo`), or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// 1, 5 and 15 minute load averages.
pub fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Returns free heap pages to the kernel (glibc `malloc_trim`; a no-op
/// elsewhere).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(target_os = "linux")]
mod affinity {
    /// The calling thread's CPU affinity mask.
    fn affinity() -> std::io::Result<libc::cpu_set_t> {
        // SAFETY: all-zero is a valid (empty) `cpu_set_t`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a live `cpu_set_t` of the size passed.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(set)
    }

    fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> std::io::Result<()> {
        // SAFETY: valid pointer to a live `cpu_set_t` of the size passed.
        let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sets `set` on every thread of the process: first the calling thread, so
    /// threads started from now on inherit it, then each of /proc/self/task,
    /// until a pass finds no thread it has not seen (threads may start
    /// meanwhile). Threads that exit before they are reached are skipped.
    fn set_process_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
        set_affinity(0, set)?;
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut new = false;
            for entry in std::fs::read_dir("/proc/self/task")? {
                let Some(tid) = entry?
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<libc::pid_t>().ok())
                else {
                    continue;
                };
                if !seen.insert(tid) {
                    continue;
                }
                new = true;
                match set_affinity(tid, set) {
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    r => r?,
                }
            }
            if !new {
                return Ok(());
            }
        }
    }

    /// The lowest-numbered CPU the calling thread may run on.
    pub fn first_cpu() -> Option<usize> {
        let set = affinity().ok()?;
        let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
        // SAFETY: `cpu < CPU_SETSIZE`, within the set.
        (0..max).find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
    }

    /// The whole process pinned to one CPU; dropping it restores the affinity
    /// mask the calling thread had before, on every thread.
    pub struct Pinned {
        saved: libc::cpu_set_t,
    }

    /// Pins every thread of the process (and threads started later from any of
    /// them) to `cpu`.
    pub fn pin_process(cpu: usize) -> std::io::Result<Pinned> {
        let saved = affinity()?;
        // SAFETY: all-zero is a valid (empty) `cpu_set_t`.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        if cpu >= usize::try_from(libc::CPU_SETSIZE).unwrap_or(0) {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu < CPU_SETSIZE`, within the set.
        unsafe { libc::CPU_SET(cpu, &mut one) };
        let pinned = Pinned { saved };
        // On error `pinned` drops and restores whatever was already pinned.
        set_process_affinity(&one)?;
        Ok(pinned)
    }

    impl Drop for Pinned {
        fn drop(&mut self) {
            if let Err(e) = set_process_affinity(&self.saved) {
                eprintln!("astral-bench: restoring the CPU affinity mask: {e}");
            }
        }
    }
}

#[cfg(target_os = "linux")]
pub use affinity::{first_cpu, pin_process, Pinned};

/// Pinning is not supported here: no CPU to pin to.
#[cfg(not(target_os = "linux"))]
pub fn first_cpu() -> Option<usize> {
    None
}

/// Stands for a pinned process where pinning is not supported.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub struct Pinned;

/// Pinning is not supported here.
#[cfg(not(target_os = "linux"))]
pub fn pin_process(_cpu: usize) -> std::io::Result<Pinned> {
    Err(std::io::ErrorKind::Unsupported.into())
}
