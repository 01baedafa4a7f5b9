//! One training step of the trainer, timed beside the peer baseline's
//! `step` benchmark (`../shared/peer/torch_baseline.py step`): ResNet-18
//! (CIFAR stem) + head 512→1024→512 with BatchNorm, CW-RGP with 4 groups,
//! 2 views of a batch of 64, w_size 64, forward + backward + Adam. Median
//! of `--reps` steps (default 5, as the peer) after `--warm` warm-up steps
//! (default 1, as the peer), on fixed random images (no data loader, as the
//! peer). Prints `ours | <the peer's label> | images/s | bs / t`.
//! `--breakdown` also prints the median milliseconds of the parts of a
//! step (forward + loss, backward, optimiser update), for profiling;
//! `--set KEY=VALUE` overrides a setting as `ssl train --set` does (e.g.
//! `--set run.channels_last=false` for the NCHW layout).
//!
//! ```sh
//! cargo run --release -p ssl-cli --example bench_train -- --threads 2
//! ```
//!
//! It runs the trainer's own code: `Config::resolve` of the settings above,
//! `Networks::new` (train/networks.rs), `Networks::forward` (all views in
//! one pass), `Method::loss`, and ssl-models' `Optimizer` (zero_grad +
//! backward_step) — the modules are compiled in from the `ssl` binary's
//! sources, since ssl-cli has no library target.

use std::time::Instant;

use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

#[allow(dead_code)] // The example uses only Config::resolve of it.
#[path = "../src/config.rs"]
mod config;
#[allow(dead_code)] // The example uses Networks::new and forward.
#[path = "../src/train/networks.rs"]
mod networks;

const BS: i64 = 64;
const VIEWS: i64 = 2;

fn flag_value<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .ok_or_else(|| format!("{flag} needs a value")),
    }
}

fn parsed<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match flag_value(args, flag)? {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e| format!("{flag} {v}: {e}")),
    }
}

fn median(mut ts: Vec<f64>) -> f64 {
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `ssl` binary does (may re-execute this program).
    let tuning = whitening_core::process::tune_process();
    println!("ours | process: {tuning} | - | -");
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = flag_value(&args, "--threads")? {
        tch::set_num_threads(n.parse().map_err(|e| format!("--threads {n}: {e}"))?);
    }
    let reps: usize = parsed(&args, "--reps", 5)?;
    let warm: usize = parsed(&args, "--warm", 1)?;
    let device = match flag_value(&args, "--device")? {
        None | Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda(0),
        Some(other) => return Err(format!("--device {other}: expected cpu or cuda").into()),
    };

    let overrides: Vec<String> = [
        "data.dataset=cifar10",
        "data.batch_size=64",
        "data.views=2",
        "model.arch=resnet18",
        "model.emb=512",
        "model.head_size=1024",
        "model.head_layers=2",
        "method.name=cw-rgp",
        "method.groups=4",
        "method.w_size=64",
        "optim.lr=3e-3",
        "optim.weight_decay=1e-6",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        args.windows(2)
            .filter(|w| w[0] == "--set")
            .map(|w| w[1].clone()),
    )
    .collect();
    let cfg = config::Config::resolve(None, &overrides)?;
    println!(
        "ours | libtorch, {} threads, {device:?} | - | -",
        tch::get_num_threads()
    );
    tch::manual_seed(0);
    let nets = networks::Networks::new(&cfg, device)?;
    let mut opt = ssl_models::Optimizer::new(
        ssl_models::OptimizerKind::adam(),
        cfg.optim.lr,
        cfg.optim.weight_decay,
        &[("", &nets.vs)],
    )?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let views: Vec<Tensor> = (0..VIEWS)
        .map(|_| Tensor::randn([BS, 3, 32, 32], (Kind::Float, device)))
        .collect();
    let step = |opt: &mut ssl_models::Optimizer,
                rng: &mut rand_chacha::ChaCha8Rng|
     -> Result<(), Box<dyn std::error::Error>> {
        let outputs = nets.forward(&views, true);
        let loss = cfg.method.loss(&outputs.as_method_outputs(&nets), 0, rng)?;
        opt.zero_grad();
        opt.backward_step(&loss);
        // The trainer reads the loss every step (finiteness check): so do we,
        // which also waits for the device to finish.
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(format!("non-finite loss {value}").into());
        }
        Ok(())
    };
    for _ in 0..warm {
        step(&mut opt, &mut rng)?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        step(&mut opt, &mut rng)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let t = median(times);
    println!(
        "ours | ResNet-18 CW-RGP train step, bs {BS} x {VIEWS} views (fwd+bwd+Adam) | images/s | {:.1}",
        BS as f64 / t
    );
    if args.iter().any(|a| a == "--breakdown") {
        let (mut fwd, mut bwd, mut upd) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            let outputs = nets.forward(&views, true);
            let loss = cfg
                .method
                .loss(&outputs.as_method_outputs(&nets), 0, &mut rng)?;
            let _ = loss.double_value(&[]);
            fwd.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            opt.zero_grad();
            loss.backward();
            bwd.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            opt.step();
            upd.push(t.elapsed().as_secs_f64());
        }
        for (part, ts) in [
            ("forward + loss", fwd),
            ("backward", bwd),
            ("Adam update", upd),
        ] {
            println!(
                "ours | train step part: {part} | ms | {:.1}",
                1e3 * median(ts)
            );
        }
    }
    Ok(())
}
