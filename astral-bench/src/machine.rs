//! What a report says about the machine it ran on: CPUs, load, the commit.

use serde_json::{json, Value};

use crate::sys;

/// The commit this crate was built from (`git rev-parse HEAD` at build
/// time), or "unknown" outside a git checkout.
pub const COMMIT: &str = env!("ASTRAL_BENCH_COMMIT");

/// The machine and build a run measured.
#[derive(Clone, Debug)]
pub struct Machine {
    /// CPUs this process may use (`available_parallelism`).
    pub cpus: usize,
    /// CPU model name, or "unknown".
    pub cpu_model: String,
    /// Whether the CPU has AES instructions (AES-GCM runs at hardware speed).
    pub aes: bool,
    /// 1, 5 and 15 minute load averages, if the OS tells.
    pub load: Option<[f64; 3]>,
    /// See [`COMMIT`].
    pub commit: &'static str,
}

impl Machine {
    /// The machine now.
    pub fn probe() -> Machine {
        Machine {
            cpus: cpus(),
            cpu_model: sys::cpu_model(),
            aes: hardware_aes(),
            load: sys::loadavg(),
            commit: COMMIT,
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "hardware_aes": self.aes,
            "loadavg": self.load,
            "commit": self.commit,
        })
    }
}

/// CPUs this process may use (1 if unknown).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether this CPU has AES instructions. The bench decides for itself
/// (astral's record cipher is a config choice, not a probe of the core).
pub fn hardware_aes() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `1.23 0.98 0.80`, or "unknown".
pub fn fmt_load(load: Option<[f64; 3]>) -> String {
    load.map_or("unknown".into(), |l| {
        format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
    })
}
