//! Whole-loss forward + backward on the peer baseline's three cases
//! (`../shared/peer/torch_baseline.py loss`): `h = randn(views·256, d)`
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

use rand::SeedableRng;
use ssl_losses::WhiteningLoss;
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

/// The value following `flag` on the command line, if the flag is there.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .ok_or_else(|| format!("{flag} needs a value")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `ssl` binary does (may re-execute this program).
    let tuning = whitening_core::process::tune_process();
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = flag_value(&args, "--threads")? {
        let n: i32 = n.parse().map_err(|e| format!("--threads {n}: {e}"))?;
        tch::set_num_threads(n);
    }

    println!("ours | process: {tuning} | - | -");
    println!(
        "ours | libtorch, {} threads | - | -",
        tch::get_num_threads()
    );
    tch::manual_seed(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let cases = [
        (
            "CW-RGP 4 loss fwd+bwd (bs 256, 4 views, d 512, w_size 64, 4 groups)",
            4,
            512,
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(4), 64),
        ),
        (
            "CW-RGP 2 loss fwd+bwd (bs 256, 2 views, d 512, w_size 64, 4 groups)",
            2,
            512,
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(4), 64),
        ),
        (
            "W-MSE 4 loss fwd+bwd (bs 256, 4 views, d 64, w_size 128, BW Cholesky)",
            4,
            64,
            WhiteningLoss::whitened(WhiteningConfig::w_mse(), 128),
        ),
    ];
    for (label, views, d, loss) in cases {
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
    }
    Ok(())
}
