//! `ssl whiten`: BW/CW whitening of an embedding matrix stored as `.npy`.
//!
//! PCA/ZCA whitening of descriptors is a standard retrieval post-process:
//! fit on a database, apply the same transform to queries. With the batch
//! axis the transform (mean and `Φ` per group, docs/reference.md §2) is fitted on the
//! input matrix and can be applied to other matrices with `--apply`; with
//! the channel axis every row is whitened against the others of its own
//! matrix, so there is nothing to carry over.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use tch::{Device, Kind, Tensor};
use whitening_core::{
    diagnostics::rank_diagnostics, whiten_with_permutations, BatchWhiteningRunningStats,
    WhiteningAxis, WhiteningConfig, WhiteningKind,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AxisArg {
    /// Batch whitening: decorrelate the channels over the rows (fit/apply).
    Batch,
    /// Channel whitening: decorrelate the rows over their channels.
    Channel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Zca,
    Pca,
    Cholesky,
    NewtonSchulz,
}

#[derive(Debug, Args)]
pub struct WhitenArgs {
    /// Input matrix `[n, d]` (float32 or float64 .npy): rows are examples.
    input: PathBuf,
    /// Output .npy (same shape and dtype).
    #[arg(short, long)]
    output: PathBuf,
    /// Whitening axis.
    #[arg(long, value_enum, default_value = "batch")]
    axis: AxisArg,
    /// Whitening matrix.
    #[arg(long, value_enum, default_value = "zca")]
    kind: KindArg,
    /// Channel groups (each whitened on its own); must divide d.
    #[arg(long, default_value_t = 1)]
    groups: i64,
    /// Shrinkage: Σ ← (1 − eps)Σ + eps·I.
    #[arg(long, default_value_t = 0.0)]
    eps: f64,
    /// Newton–Schulz iterations.
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// Batch axis only: apply the transform fitted on INPUT to these
    /// matrices as well, written next to them as NAME.whitened.npy.
    #[arg(long = "apply", value_name = "NPY")]
    apply: Vec<PathBuf>,
}

fn read_matrix(path: &Path) -> Result<Tensor> {
    let t = Tensor::read_npy(path).with_context(|| format!("reading {}", path.display()))?;
    if t.dim() != 2 {
        bail!(
            "{}: expected a 2-D matrix [n, d], found shape {:?}",
            path.display(),
            t.size()
        );
    }
    if !matches!(t.kind(), Kind::Float | Kind::Double) {
        bail!(
            "{}: expected float32 or float64, found {:?}",
            path.display(),
            t.kind()
        );
    }
    Ok(t)
}

fn write_matrix(t: &Tensor, path: &Path) -> Result<()> {
    ssl_files::replace_with(path, |tmp| t.write_npy(tmp).map_err(std::io::Error::other))
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: &WhitenArgs) -> Result<()> {
    let x = read_matrix(&args.input)?;
    let kind = x.kind();
    let (n, d) = (x.size()[0], x.size()[1]);
    let cfg = WhiteningConfig {
        groups: args.groups,
        eps: args.eps,
        ..WhiteningConfig::new(
            match args.axis {
                AxisArg::Batch => WhiteningAxis::Batch,
                AxisArg::Channel => WhiteningAxis::Channel,
            },
            match args.kind {
                KindArg::Zca => WhiteningKind::Zca,
                KindArg::Pca => WhiteningKind::Pca,
                KindArg::Cholesky => WhiteningKind::Cholesky,
                KindArg::NewtonSchulz => WhiteningKind::NewtonSchulz {
                    iterations: args.iterations,
                },
            },
        )
    };
    // f64 throughout: a one-off transform, where precision matters more than speed.
    let x64 = x.to_kind(Kind::Double);
    let out = match cfg.axis {
        WhiteningAxis::Batch => {
            let mut stats =
                BatchWhiteningRunningStats::new(d, cfg.clone(), (Kind::Double, Device::Cpu))
                    .with_context(|| format!("{}", args.input.display()))?;
            // Momentum 1: the running statistics become this matrix's own.
            stats.momentum = 1.0;
            let out = stats
                .forward_train(&x64)
                .with_context(|| format!("whitening {}", args.input.display()))?;
            for other in &args.apply {
                let y = read_matrix(other)?;
                if y.size()[1] != d {
                    bail!(
                        "{}: {} channels, but the transform was fitted on {} with {d}",
                        other.display(),
                        y.size()[1],
                        args.input.display()
                    );
                }
                let z = stats
                    .forward_eval(&y.to_kind(Kind::Double))
                    .with_context(|| format!("whitening {}", other.display()))?;
                let target = other.with_extension("whitened.npy");
                write_matrix(&z.to_kind(y.kind()), &target)?;
                println!("whiten | {} -> {}", other.display(), target.display());
            }
            out
        }
        WhiteningAxis::Channel => {
            if !args.apply.is_empty() {
                bail!("--apply needs --axis batch: channel whitening has no fitted transform");
            }
            whiten_with_permutations(&x64.unsqueeze(0), &cfg, None)
                .with_context(|| format!("whitening {}", args.input.display()))?
                .squeeze_dim(0)
        }
    };
    write_matrix(&out.to_kind(kind), &args.output)?;
    let before = rank_diagnostics(&x64)?;
    let after = rank_diagnostics(&out)?;
    println!(
        "whiten | {} [{n} x {d}] -> {} | {} {} g={} | normalised stable rank {:.1}% -> {:.1}%",
        args.input.display(),
        args.output.display(),
        cfg.axis,
        cfg.kind,
        cfg.groups,
        100.0 * before.normalised_stable_rank,
        100.0 * after.normalised_stable_rank
    );
    Ok(())
}
