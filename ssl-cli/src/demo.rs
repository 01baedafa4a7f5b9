//! `ssl demo` (what `cargo xtask demo` runs): CW-RGP on the built-in
//! synthetic dataset with a thin ResNet-18 on the CPU, a few minutes on 2
//! cores. It evaluates the randomly initialised encoder, trains, evaluates
//! the trained one with the same protocols (5-NN and the linear probe of
//! the paper §5), and prints both side by side.

use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::Args;

use ssl_train::{evaluate, open_splits, Networks};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Override a key of the demo preset (configs/synthetic/cw-rgp-demo.toml).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let mut overrides = vec![format!("run.device={}", args.device)];
    overrides.extend(args.overrides.iter().cloned());
    let cfg = crate::presets::resolve(Some("synthetic/cw-rgp-demo"), &overrides)?;
    let device = ssl_train::parse_device(&cfg.run.device)?;
    println!(
        "demo | CW-RGP (g {}, 2 views) on synthetic 32x32 images, ResNet-18 x{} on {device:?}, {} epochs",
        match &cfg.method {
            ssl_train::Method::CwRgp(p) => p.groups,
            _ => 0,
        },
        cfg.model.width,
        cfg.optim.epochs
    );
    // The random encoder: the same initialisation the run starts from.
    tch::manual_seed(cfg.run.seed as i64);
    let random = Networks::new(&cfg, device)?;
    let splits = open_splits(&cfg)?;
    let before = evaluate(&cfg, &random, &splits, device)?.summary;
    drop(random);
    println!(
        "demo | random encoder: k-NN {:.2}%, linear {:.2}%",
        100.0 * before.knn_top1,
        100.0 * before.linear_top1.unwrap_or(f64::NAN)
    );
    let outcome = crate::train::train(&cfg, false, &AtomicBool::new(false), None, None)?;
    let after = outcome
        .last_eval
        .ok_or_else(|| anyhow::anyhow!("the demo run ended without a final evaluation"))?;
    println!(
        "demo | k-NN random {:.2}% trained {:.2}% | linear random {:.2}% trained {:.2}% | run {}",
        100.0 * before.knn_top1,
        100.0 * after.knn_top1,
        100.0 * before.linear_top1.unwrap_or(f64::NAN),
        100.0 * after.linear_top1.unwrap_or(f64::NAN),
        outcome.run_dir.display()
    );
    Ok(())
}
