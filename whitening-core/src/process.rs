//! Process-wide CPU runtime settings for the project's **binaries** (the
//! `ssl` command and the benchmark programs). The library crates never
//! call this: how a process allocates memory and how its OpenMP threads
//! wait is the program's decision, not a loss function's.
//!
//! Two settings, each measured on the CW-RGP 4 loss (forward + backward,
//! `[4, 256, 512]`, 2 cores; medians of 40 runs in one session):
//!
//! - **OpenMP waits passively.** After every parallel region libgomp's
//!   workers spin (~300 000 polls, milliseconds) before they sleep, and
//!   a spinning worker takes a core away from the threads the CPU losses
//!   start themselves (`ssl-losses`' ZCA loss runs its matrices on one
//!   thread per core). `OMP_WAIT_POLICY` is read once, when libgomp is
//!   loaded, so [`tune_process`] sets it by re-executing the program with
//!   the variable set (same pid, arguments and streams), unless the user
//!   already set it: `OMP_WAIT_POLICY=active ssl …` keeps libgomp's
//!   default. Effect: 55–60 → 47–50 ms.
//! - **glibc keeps freed memory.** libtorch frees every intermediate
//!   after use; with glibc's default trim threshold the top of the heap
//!   goes back to the kernel and the next allocation faults it in again
//!   page by page (kernel page clearing was 20% of the loss's CPU time).
//!   `M_TRIM_THRESHOLD` = 1 GiB and `M_MMAP_THRESHOLD` = 32 MiB (glibc's
//!   maximum) keep up to 1 GiB of freed memory in the process. Effect,
//!   on top of the first: 47–50 → 30–31 ms.

use std::ffi::OsString;

/// The environment variable that marks a process [`tune_process`] has
/// already re-executed (so an `exec` that keeps failing cannot loop).
const REEXECUTED: &str = "WHITENING_SSL_REEXECUTED";

/// glibc's `mallopt` parameters (malloc.h).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    pub const M_TRIM_THRESHOLD: i32 = -1;
    pub const M_MMAP_THRESHOLD: i32 = -3;
    #[allow(unsafe_code)]
    unsafe extern "C" {
        pub fn mallopt(param: i32, value: i32) -> i32;
    }
}

/// What [`tune_process`] settled, for the program's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessTuning {
    /// `OMP_WAIT_POLICY` in effect (`None`: unset, libgomp's default).
    pub omp_wait_policy: Option<String>,
    /// Whether glibc accepted the trim and mmap thresholds.
    pub malloc_retains_memory: bool,
}

impl std::fmt::Display for ProcessTuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OMP_WAIT_POLICY={}, malloc {}",
            self.omp_wait_policy.as_deref().unwrap_or("(default)"),
            if self.malloc_retains_memory {
                "keeps up to 1 GiB of freed memory"
            } else {
                "defaults"
            }
        )
    }
}

/// Applies the module's settings; call it first thing in `main`, before
/// anything else runs (it may re-execute the program, which restarts
/// `main` with the same arguments). Returns what is in effect.
pub fn tune_process() -> ProcessTuning {
    if std::env::var_os("OMP_WAIT_POLICY").is_none() && std::env::var_os(REEXECUTED).is_none() {
        reexecute_with(&[("OMP_WAIT_POLICY", "PASSIVE"), (REEXECUTED, "1")]);
        // Only reached when exec failed: go on with libgomp's default.
    }
    ProcessTuning {
        omp_wait_policy: std::env::var("OMP_WAIT_POLICY").ok(),
        malloc_retains_memory: retain_freed_memory(),
    }
}

/// Replaces this process with a fresh run of the same program, the same
/// arguments (`argv[0]` included) and `vars` added to the environment.
/// Returns only if `exec` failed.
#[cfg(unix)]
fn reexecute_with(vars: &[(&str, &str)]) {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from(&exe));
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg0(arg0).args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let _failed = cmd.exec();
}

#[cfg(not(unix))]
fn reexecute_with(_vars: &[(&str, &str)]) {}

/// The opposite of [`tune_process`]'s memory setting, for measuring peak
/// memory: every allocation of 64 KiB or more gets its own mapping and
/// goes back to the kernel when freed, so the resident set follows the
/// live allocations. Returns whether glibc accepted it.
pub fn return_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: as in `retain_freed_memory`; 64 KiB is within range.
        #[allow(unsafe_code)]
        unsafe {
            glibc::mallopt(glibc::M_MMAP_THRESHOLD, 64 << 10) == 1
                && glibc::mallopt(glibc::M_TRIM_THRESHOLD, 64 << 10) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn retain_freed_memory() -> bool {
    // SAFETY: mallopt only changes allocator parameters; both values are
    // within glibc's documented ranges (the mmap threshold's maximum is
    // 32 MiB on 64-bit systems).
    #[allow(unsafe_code)]
    unsafe {
        glibc::mallopt(glibc::M_TRIM_THRESHOLD, 1 << 30) == 1
            && glibc::mallopt(glibc::M_MMAP_THRESHOLD, 32 << 20) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn retain_freed_memory() -> bool {
    false
}
