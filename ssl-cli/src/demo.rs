//! `ssl demo` (what `cargo xtask demo` runs): CW-RGP on the built-in
//! synthetic dataset (`ssl_data::synthetic`: the class is a shape; colour,
//! brightness, position, scale and background are nuisances) with a thin
//! ResNet-18 on the CPU, a few minutes on 2 cores. It evaluates the randomly
//! initialised encoder, trains, evaluates the trained one with the same
//! protocols (5-NN and the linear probe of docs/reference.md §7), and
//! prints both side by side.
//!
//! `ssl demo --paper` ([`crate::demo_paper`]) trains the paper's methods
//! side by side on the same data instead and writes the table of its
//! qualitative claims.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::Args;

use ssl_train::{evaluate, open_splits, Config, Networks, Splits};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Override a key of the demo preset (configs/synthetic/cw-rgp-demo.toml);
    /// with --paper, of every method's run.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The paper's qualitative claims at toy scale: CW-RGP, W-MSE, PCA
    /// whitening, Shuffled-DBN and plain at the same budget on the same data,
    /// and CW-RGP vs W-MSE at a batch smaller than the embedding; writes a
    /// table (Markdown + CSV + JSON) and plots into --out.
    #[arg(long)]
    pub paper: bool,
    /// Where --paper writes its table, plots and runs.
    #[arg(long, default_value = "demo-paper")]
    pub out: PathBuf,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    if args.paper {
        return crate::demo_paper::run(args);
    }
    let mut overrides = vec![format!("run.device={}", args.device)];
    overrides.extend(args.overrides.iter().cloned());
    let cfg = crate::presets::resolve(Some("synthetic/cw-rgp-demo"), &overrides)?;
    let device = ssl_train::parse_device(&cfg.run.device)?;
    println!(
        "demo | CW-RGP (g {}, {} views) on synthetic 32x32 shapes, ResNet-18 x{} on {device:?}, {} epochs",
        match &cfg.method {
            ssl_train::Method::CwRgp(p) => p.groups,
            _ => 0,
        },
        cfg.data.views,
        cfg.model.width,
        cfg.optim.epochs
    );
    let before = {
        let (random, splits) = random_start(&cfg)?;
        evaluate(&cfg, &random, &splits, device)?.summary
    };
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

/// The randomly initialised networks a run of `cfg` starts from (seeded by
/// `run.seed`), with the run's splits.
pub fn random_start(cfg: &Config) -> Result<(Networks, Splits)> {
    let device = ssl_train::parse_device(&cfg.run.device)?;
    tch::manual_seed(cfg.run.seed as i64);
    let random = Networks::new(cfg, device)?;
    Ok((random, open_splits(cfg)?))
}
