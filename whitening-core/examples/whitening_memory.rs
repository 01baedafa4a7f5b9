//! Peak memory of the whitening forward + backward at the peer baseline's
//! three shapes (issue #3: "no intermediate larger than the batched
//! covariances"), one case per process so allocator caches don't mix.
//!
//! ```sh
//! cargo run --release -p whitening-core --example whitening_memory            # every case
//! cargo run --release -p whitening-core --example whitening_memory -- 0       # one case
//! ```
//!
//! Method (Linux): the libraries are initialised by a small warm-up call of
//! another shape, the kernel's peak-RSS mark is reset (`/proc/self/clear_refs`
//! ← 5), then one forward + backward runs; `VmHWM − VmRSS before` is the
//! peak extra memory. Large tensors are `mmap`ed by the allocator and given
//! back on free (the runner fixes glibc's mmap threshold at 128 KiB for the
//! child processes), so RSS follows them. Prints, per case, the peak and its
//! ratio to the input tensor and to the batched covariances
//! `[views·(m/w)·g, k, k]` (`k` the whitened dimension: `w` for CW, `d/g`
//! for BW).

use std::process::Command;

use clap::{CommandFactory, Parser};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};
use whitening_core::{whiten_sub_batches, WhiteningAxis, WhiteningConfig};

struct Case {
    name: &'static str,
    views: i64,
    d: i64,
    w: i64,
    cfg: WhiteningConfig,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "CW-RGP g4 w64 [4,256,512]",
            views: 4,
            d: 512,
            w: 64,
            cfg: WhiteningConfig::cw_rgp(4),
        },
        Case {
            name: "CW-RGP g4 w64 [2,256,512]",
            views: 2,
            d: 512,
            w: 64,
            cfg: WhiteningConfig::cw_rgp(4),
        },
        Case {
            name: "BW Cholesky w128 [4,256,64]",
            views: 4,
            d: 64,
            w: 128,
            cfg: WhiteningConfig::w_mse(),
        },
    ]
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

fn run_case(case: &Case) {
    tch::manual_seed(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    // Warm-up of a different, small shape: libtorch/LAPACK/OpenMP set-up.
    let small = Tensor::randn([2, 128, 256], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let z = whiten_sub_batches(&small, 64, &WhiteningConfig::cw_rgp(2), &mut rng).expect("warm-up");
    z.sum(Kind::Float).backward();
    drop((z, small));

    let m = 256;
    let h =
        Tensor::randn([case.views, m, case.d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let r = Tensor::randn([case.views, m, case.d], (Kind::Float, Device::Cpu));
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak-RSS mark");
    let before = status_kib("VmRSS:");
    let z = whiten_sub_batches(&h, case.w, &case.cfg, &mut rng).expect("whitening");
    (z * &r).sum(Kind::Float).backward();
    let peak = status_kib("VmHWM:").saturating_sub(before) as f64 / 1024.0;

    let mib = |elems: i64| elems as f64 * 4.0 / (1024.0 * 1024.0);
    let input = mib(case.views * m * case.d);
    let groups = case.cfg.groups;
    let (count, k) = match case.cfg.axis {
        WhiteningAxis::Channel => (case.views * (m / case.w) * groups, case.w),
        WhiteningAxis::Batch => (case.views * (m / case.w) * groups, case.d / groups),
    };
    let covs = mib(count * k * k);
    println!(
        "memory | {} | peak extra {:.2} MiB | input {:.2} MiB ({:.1}x) | batched covariances {:.2} MiB ({:.1}x)",
        case.name,
        peak,
        input,
        peak / input,
        covs,
        peak / covs
    );
}

#[derive(Debug, Parser)]
#[command(
    name = "whitening_memory",
    about = "Peak memory of the whitening forward + backward, one case per process"
)]
struct Args {
    /// Run case CASE (0, 1 or 2) in this process; without it, every case,
    /// each in a fresh process.
    case: Option<usize>,
}

fn main() {
    let args = Args::parse();
    tch::set_num_threads(1);
    let all = cases();
    match args.case {
        Some(i) => run_case(all.get(i).unwrap_or_else(|| {
            Args::command()
                .error(
                    clap::error::ErrorKind::InvalidValue,
                    format!("no case {i}: the cases are 0 to {}", all.len() - 1),
                )
                .exit()
        })),
        None => {
            let exe = std::env::current_exe().expect("own path");
            for i in 0..all.len() {
                // A fixed mmap threshold: every tensor above 128 KiB is its own
                // mapping, returned on free, so RSS follows live tensors (glibc's
                // dynamic threshold would otherwise keep freed ones on the heap).
                let status = Command::new(&exe)
                    .arg(i.to_string())
                    .env("MALLOC_MMAP_THRESHOLD_", "131072")
                    .status()
                    .expect("spawn");
                assert!(status.success(), "case {i} failed");
            }
        }
    }
}
