//! Whole-loss forward + backward on the peer baseline's three cases
//! (`xtask/peer/torch_peer.py loss`): `h = randn(views·256, d)`
//! with gradient, median of 10 runs after 2 warm-ups. Prints one line per
//! case, `ours | <the peer's case label> | ms | <median>`, to set beside
//! the peer's `peer | ... | ms | ...` lines.
//!
//! ```sh
//! cargo run --release -p ssl-losses --example bench_losses -- --threads 2
//! ```
//!
//! `cargo xtask bench losses` builds this, runs it and the peer's `loss`
//! benchmark in one invocation and prints them side by side with the
//! ratio. `--threads N` sets libtorch's intra-op threads (the peer's flag of
//! the same name); by default both use libtorch's default.

use std::time::Instant;

use clap::Parser;
use rand::SeedableRng;
use ssl_losses::{CpuThreads, WhiteningLoss};
use tch::{Device, Kind, Tensor};
use whitening_core::WhiteningConfig;

/// The peer's batch size.
const BS: i64 = 256;

fn median_ms(mut f: impl FnMut(), reps: usize, warm: usize) -> f64 {
    for _ in 0..warm {
        f();
    }
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

#[derive(Debug, Parser)]
#[command(about = "Time the whole-loss forward + backward on the peer's three cases")]
struct Args {
    /// libtorch intra-op threads (the peer's flag of the same name; default:
    /// libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Measure the peak memory of case I alone (the program runs itself
    /// with it, one fresh process per case).
    #[arg(long, value_name = "I", hide = true)]
    peak_memory_of: Option<usize>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `ssl` binary does (may re-execute this program).
    let tuning = whitening_core::process::tune_process();
    let args = Args::parse();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }

    if let Some(case) = args.peak_memory_of {
        return peak_memory_of(case);
    }
    println!("ours | process: {tuning} | - | -");
    println!(
        "ours | libtorch, {} threads | - | -",
        tch::get_num_threads()
    );
    tch::manual_seed(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for (i, (label, views, d, loss)) in cases().into_iter().enumerate() {
        let h = Tensor::randn([views * BS, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut failure = None;
        let ms = median_ms(
            || match loss.loss(&h.view([views, BS, d]), 0, &mut rng) {
                Ok(l) => l.backward(),
                Err(e) => failure = Some(e),
            },
            10,
            2,
        );
        if let Some(e) = failure {
            return Err(format!("{label}: {e}").into());
        }
        println!("ours | {label} | ms | {ms:.2}");
        // Memory in a fresh process, so that nothing an earlier case
        // allocated (and glibc kept) hides this one's peak.
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["--peak-memory-of", &i.to_string()])
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "{label}: memory run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}

/// The peer's three cases: label, views, d, loss.
fn cases() -> [(&'static str, i64, i64, WhiteningLoss); 3] {
    [
        (
            "CW-RGP 4 loss fwd+bwd (bs 256, 4 views, d 512, w_size 64, 4 groups)",
            4,
            512,
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(4), 64)
                .with_cpu_threads(CpuThreads::SingleWhileRunning),
        ),
        (
            "CW-RGP 2 loss fwd+bwd (bs 256, 2 views, d 512, w_size 64, 4 groups)",
            2,
            512,
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(4), 64)
                .with_cpu_threads(CpuThreads::SingleWhileRunning),
        ),
        (
            "W-MSE 4 loss fwd+bwd (bs 256, 4 views, d 64, w_size 128, BW Cholesky)",
            4,
            64,
            WhiteningLoss::whitened(WhiteningConfig::w_mse(), 128)
                .with_cpu_threads(CpuThreads::SingleWhileRunning),
        ),
    ]
}

/// Runs case `i` once for warm-up and once measured: the growth of the
/// resident set (`VmHWM` after `clear_refs` reset it to the current
/// size) over one forward + backward, against the input's size, with
/// glibc returning freed memory at once (so the resident set follows the
/// live allocations).
fn peak_memory_of(i: usize) -> Result<(), Box<dyn std::error::Error>> {
    if !whitening_core::process::return_freed_memory() {
        return Err("cannot make glibc return freed memory: no measurement".into());
    }
    let (label, views, d, loss) = cases().into_iter().nth(i).ok_or("no such case")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let h = Tensor::randn([views * BS, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    loss.loss(&h.view([views, BS, d]), 0, &mut rng)?.backward();
    let before = status_kib("VmRSS:").ok_or("no /proc/self/status")?;
    std::fs::write("/proc/self/clear_refs", "5")?;
    loss.loss(&h.view([views, BS, d]), 0, &mut rng)?.backward();
    let peak = status_kib("VmHWM:").ok_or("no /proc/self/status")?;
    let input_mib = (views * BS * d * 4) as f64 / (1 << 20) as f64;
    let label = label
        .replace(" fwd+bwd", " peak memory growth")
        .replace(')', &format!("; input {input_mib:.1} MiB)"));
    println!(
        "ours | {label} | MiB | {:.1}",
        peak.saturating_sub(before) as f64 / 1024.0
    );
    Ok(())
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
