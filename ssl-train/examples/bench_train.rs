//! One training step of the trainer, timed beside the peer baseline's
//! `step` benchmark: ResNet-18 (CIFAR stem) + head 512→1024→512 with
//! BatchNorm, CW-RGP with 4 groups, 2 views of a batch of 64, w_size 64,
//! forward + backward + Adam. Median of `--reps` steps (default 5, as the
//! peer) after `--warm` warm-up steps (default 1, as the peer), on fixed
//! random images (no data loader, as the peer). Prints
//! `ours | <the peer's label> | images/s | bs / t`. `--breakdown` also
//! prints the median milliseconds of the parts of a step (forward + loss,
//! backward, optimiser update), for profiling; `--set KEY=VALUE` overrides a
//! setting as `ssl train --set` does (e.g. `--set run.channels_last=false`
//! for the NCHW layout).
//!
//! ```sh
//! cargo run --release -p ssl-train --example bench_train -- --threads 2
//! ```
//!
//! It runs the trainer's own step through the public API:
//! [`Trainer::step_on`] (forward of every view, the method's loss, the
//! finiteness check, backward, the optimiser and schedule), on a trainer
//! built over a tiny in-memory dataset whose loader is never read.

use std::time::Instant;

use clap::Parser;
use ssl_data::{DatasetKind, InMemoryDataset, Pipeline, RgbImage, Sample};
use ssl_train::{Config, Override, Splits, Trainer};
use tch::{Device, Kind, Tensor};

const BS: i64 = 64;
const VIEWS: i64 = 2;

#[derive(Debug, Parser)]
#[command(about = "Time one training step of ResNet-18 + CW-RGP 4 (batch 64 x 2 views)")]
struct Args {
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Timed steps (the median is printed).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 1)]
    warm: usize,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also time forward + loss, backward and the optimiser update apart.
    #[arg(long)]
    breakdown: bool,
    /// Override a setting, as `ssl train --set` does.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn median(mut ts: Vec<f64>) -> f64 {
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `ssl` binary does (may re-execute this program).
    let tuning = whitening_core::process::tune_process();
    println!("ours | process: {tuning} | - | -");
    let args = Args::parse();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => return Err(format!("--device {other}: expected cpu or cuda").into()),
    };
    let out = std::env::temp_dir().join(format!("bench-train-{}", std::process::id()));
    let mut overrides: Vec<Override> = [
        ("data.dataset", "cifar10"),
        ("data.batch_size", "64"),
        ("data.views", "2"),
        ("model.arch", "resnet18"),
        ("model.emb", "512"),
        ("model.head_size", "1024"),
        ("model.head_layers", "2"),
        ("method.name", "cw-rgp"),
        ("method.groups", "4"),
        ("method.w_size", "64"),
        ("optim.lr", "3e-3"),
        ("optim.weight_decay", "1e-6"),
        ("optim.epochs", "1"),
        ("run.seed", "0"),
        ("run.device", &args.device),
        ("run.out_dir", &out.display().to_string()),
        ("run.name", "bench"),
    ]
    .into_iter()
    .map(|(k, v)| Override::new(k, v))
    .collect();
    for item in &args.set {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("--set {item}: expected KEY=VALUE"))?;
        overrides.push(Override::new(k, v));
    }
    let cfg = Config::resolve(None, &overrides)?;
    println!(
        "ours | libtorch, {} threads, {device:?} | - | -",
        tch::get_num_threads()
    );
    // The loader is built but never read: the steps take fixed random views.
    let images: Vec<Sample> = (0..BS)
        .map(|_| Sample {
            image: RgbImage::zeros(32, 32),
            label: None,
        })
        .collect();
    let splits = Splits::custom(
        InMemoryDataset::new(images, 1)?,
        None,
        Pipeline::ssl_small(DatasetKind::Cifar10),
        Pipeline::eval(DatasetKind::Cifar10),
    );
    // As the `ssl` binary chooses.
    let mut trainer = Trainer::builder(cfg)
        .data(splits)
        .cpu_threads(ssl_losses::CpuThreads::SingleWhileRunning)
        .build()?;
    let views: Vec<Tensor> = (0..VIEWS)
        .map(|_| Tensor::randn([BS, 3, 32, 32], (Kind::Float, device)))
        .collect();
    for _ in 0..args.warm {
        trainer.step_on(&views)?;
    }
    let mut times = Vec::with_capacity(args.reps);
    for _ in 0..args.reps.max(1) {
        let t = Instant::now();
        trainer.step_on(&views)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let t = median(times);
    println!(
        "ours | ResNet-18 CW-RGP train step, bs {BS} x {VIEWS} views (fwd+bwd+Adam) | images/s | {:.1}",
        BS as f64 / t
    );
    if args.breakdown {
        // The parts of the same step, through the same networks and loss.
        let cfg = trainer.config().clone();
        let nets = trainer.networks();
        let mut opt = ssl_models::Optimizer::new(
            ssl_models::OptimizerKind::adam(),
            cfg.optim.lr,
            cfg.optim.weight_decay,
            &[("", &nets.vs)],
        )?;
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let (mut fwd, mut bwd, mut upd) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.reps.max(1) {
            let t = Instant::now();
            let outputs = nets.forward(&views, true);
            let loss = cfg
                .method
                .loss(&outputs.as_method_outputs(nets), 0, &mut rng)?;
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
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}
