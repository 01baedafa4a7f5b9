//! `ssl analyze all`: every analysis in turn, each into `OUT/<name>/`.
//! The checkpoint analyses (spectrum, whitened-output, similarity) use
//! `--run`, or else a run of the base preset trained first (under
//! `OUT/runs/checkpoint`). `--smoke` runs everything at toy scale.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use super::{
    cw_vs_bw, gradient, pca_vs_zca, similarity, spectrum, whitened_output, CheckpointArgs, OutArgs,
    TrainingArgs,
};

#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub training: TrainingArgs,
    /// A trained run for the checkpoint analyses (default: train the base preset).
    #[arg(long)]
    pub run: Option<PathBuf>,
}

pub fn run(args: &AllArgs) -> Result<()> {
    let root = super::out_dir(&args.training.out)?;
    let sub = |name: &str| TrainingArgs {
        out: OutArgs {
            out: root.join(name),
            device: args.training.out.device.clone(),
        },
        ..args.training.clone()
    };
    let mut timings = Vec::new();
    let mut timed = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        eprintln!("analyze all | {name}");
        let t = Instant::now();
        f().with_context(|| format!("analyze {name}"))?;
        timings.push((name.to_string(), t.elapsed().as_secs_f64()));
        Ok(())
    };
    timed("gradient", &mut || {
        gradient::run(&gradient::GradientArgs {
            training: sub("gradient"),
            run: None,
            f32: false,
        })
        .map(drop)
    })?;
    timed("pca-vs-zca", &mut || {
        pca_vs_zca::run(&pca_vs_zca::PcaVsZcaArgs {
            training: sub("pca-vs-zca"),
            variants: vec!["pca-cw".into(), "zca-cw".into(), "cw-rgp".into()],
            w_size: None,
            bw_size: None,
            probe: 256,
            every: 1,
        })
        .map(drop)
    })?;
    timed("cw-vs-bw", &mut || {
        cw_vs_bw::run(&cw_vs_bw::CwVsBwArgs {
            training: sub("cw-vs-bw"),
            batch_sizes: None,
            groups: None,
        })
        .map(drop)
    })?;
    let run = match &args.run {
        Some(r) => r.clone(),
        None => {
            let mut run = PathBuf::new();
            timed(
                "train (checkpoint for the checkpoint analyses)",
                &mut || {
                    let cfg = sub("").config("checkpoint", &[])?;
                    let outcome =
                        crate::train::train(&cfg, false, &AtomicBool::new(false), None, None)?;
                    run = outcome.run_dir;
                    Ok(())
                },
            )?;
            run
        }
    };
    // The checkpoint's stored config already has the data location; only
    // the user's data keys are passed on.
    let data_sets: Vec<String> = args
        .training
        .overrides
        .iter()
        .filter(|s| s.trim_start().starts_with("data.path="))
        .cloned()
        .collect();
    let ck = |name: &str| CheckpointArgs {
        run: run.clone(),
        out: OutArgs {
            out: root.join(name),
            device: args.training.out.device.clone(),
        },
        overrides: data_sets.clone(),
    };
    timed("spectrum", &mut || spectrum::run(&ck("spectrum")).map(drop))?;
    timed("whitened-output", &mut || {
        whitened_output::run(&whitened_output::WhitenedOutputArgs {
            checkpoint: ck("whitened-output"),
            linear_epochs: args.training.smoke.then_some(100),
        })
        .map(drop)
    })?;
    timed("similarity", &mut || {
        similarity::run(&similarity::SimilarityArgs {
            checkpoint: ck("similarity"),
            steps: 11,
        })
        .map(drop)
    })?;
    for (name, secs) in &timings {
        println!("analyze all | {name}: {secs:.1} s");
    }
    println!("analyze all | wrote {}", root.display());
    Ok(())
}
