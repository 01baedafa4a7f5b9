//! `ssl analyze`: the paper's investigation (docs/reference.md §9) as tools. Each
//! sub-command writes a plot (`.svg` + `.png`, [`crate::plot`]), a table
//! (`.md` + `.csv`) and the raw numbers (`.json`) into `--out DIR`:
//!
//! - `spectrum RUN`: spectra and ranks of a checkpoint's features
//!   ([`spectrum`]);
//! - `pca-vs-zca`: short runs with PCA vs ZCA vs CW whitening, the encoder's
//!   stable rank and the step-to-step change of the whitened targets
//!   ([`pca_vs_zca`], docs/reference.md §9.1);
//! - `whitened-output RUN`: accuracy and rank of encoder output vs embedding
//!   vs whitened embedding ([`whitened_output`], §9.2);
//! - `similarity RUN`: class cosine similarity under `Σ^{-p/2}`
//!   ([`similarity`], §9.3);
//! - `cw-vs-bw`: CW vs BW across batch sizes ([`cw_vs_bw`], §9.4);
//! - `gradient`: the whitening loss's gradient vs the stop-gradient proxy's
//!   ([`gradient`], docs/reference.md §2.5, the paper's proposition);
//! - `all`: every one of them (`--smoke`: at toy scale, on the CPU, minutes).
//!
//! The training analyses start from a preset (`--preset`, default the
//! synthetic demo) with `--set` overrides; `--smoke` adds the toy-scale
//! overrides of [`SMOKE_OVERRIDES`]. Full scale: a real preset, `--device
//! cuda`, and no `--smoke`.

pub mod all;
pub mod cw_vs_bw;
pub mod gradient;
pub mod pca_vs_zca;
pub mod similarity;
pub mod spectrum;
pub mod whitened_output;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_eval::Features;
use ssl_losses::ViewTransform;
use tch::nn::ModuleT;
use tch::{Device, Tensor};
use whitening_core::diagnostics::rank_diagnostics;
use whitening_core::WhiteningConfig;

use ssl_files::write_atomic as atomic_write;
use ssl_train::Config;
use ssl_train::Networks;
use ssl_train::{open_splits, split_features, AnyDataset, Splits};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(subcommand)]
    pub cmd: AnalyzeCmd,
}

#[derive(Debug, Subcommand)]
pub enum AnalyzeCmd {
    /// Singular values, covariance spectrum, stable/effective rank of a
    /// checkpoint's encoder output, embedding and whitened embedding.
    Spectrum(CheckpointArgs),
    /// PCA vs ZCA vs CW whitening losses: encoder stable rank over training
    /// and how much the whitened targets move from step to step (docs/reference.md §9.1).
    PcaVsZca(pca_vs_zca::PcaVsZcaArgs),
    /// k-NN/linear accuracy and normalised stable rank of encoder output vs
    /// embedding vs whitened embedding of one checkpoint (docs/reference.md §9.2).
    WhitenedOutput(whitened_output::WhitenedOutputArgs),
    /// Intra- vs inter-class cosine similarity of features whitened with
    /// Σ^{-p/2}, p from 0 to 1 (docs/reference.md §9.3).
    Similarity(similarity::SimilarityArgs),
    /// CW vs BW (W-MSE) across batch sizes, including batches smaller than
    /// the embedding: stability and accuracy (docs/reference.md §9.4).
    CwVsBw(cw_vs_bw::CwVsBwArgs),
    /// The whitening loss's gradient vs the stop-gradient proxy's on a real
    /// batch, w.r.t. the embedding and the encoder parameters.
    Gradient(gradient::GradientArgs),
    /// Every analysis in turn, each into its own folder under --out.
    All(all::AllArgs),
}

pub fn run(args: &AnalyzeArgs) -> Result<()> {
    match &args.cmd {
        AnalyzeCmd::Spectrum(a) => spectrum::run(a).map(drop),
        AnalyzeCmd::PcaVsZca(a) => pca_vs_zca::run(a).map(drop),
        AnalyzeCmd::WhitenedOutput(a) => whitened_output::run(a).map(drop),
        AnalyzeCmd::Similarity(a) => similarity::run(a).map(drop),
        AnalyzeCmd::CwVsBw(a) => cw_vs_bw::run(a).map(drop),
        AnalyzeCmd::Gradient(a) => gradient::run(a).map(drop),
        AnalyzeCmd::All(a) => all::run(a),
    }
}

/// Where an analysis writes, and on which device it computes.
#[derive(Debug, Clone, Args)]
pub struct OutArgs {
    /// Output folder (created); plots, tables and JSON go here.
    #[arg(long, default_value = "analysis")]
    pub out: PathBuf,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Analyses of one trained run.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// A run directory (holding checkpoint.safetensors) or a checkpoint file.
    pub run: PathBuf,
    #[command(flatten)]
    pub out: OutArgs,
    /// Override a key of the run's stored config, e.g. `--set data.path=/data`
    /// (data and evaluation keys; the networks are as trained).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// Analyses that train: a base preset with overrides.
#[derive(Debug, Clone, Args)]
pub struct TrainingArgs {
    /// The base preset (`ssl config list`) or TOML file; each variant changes
    /// the method (and batch) on top of it.
    #[arg(long, default_value = "synthetic/cw-rgp-demo")]
    pub preset: String,
    /// Override a key of the base config, e.g. `--set optim.epochs=50`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Toy scale: a thin network on a few hundred images for a few epochs
    /// (seconds to a minute per run on a CPU); see SMOKE_OVERRIDES.
    #[arg(long)]
    pub smoke: bool,
    #[command(flatten)]
    pub out: OutArgs,
}

/// What `--smoke` sets before the user's `--set`s: 256 images, batches of
/// 64, ResNet-18 ×1/8, emb 64, sub-batches of 16, 3 epochs, k-NN only
/// (for a whitening base preset, such as the default).
pub const SMOKE_OVERRIDES: &[&str] = &[
    "data.subset=256",
    "data.batch_size=64",
    "model.width=0.125",
    "model.emb=64",
    "model.head_size=64",
    "method.w_size=16",
    "optim.epochs=3",
    "optim.warmup_iters=2",
    "optim.drop_epochs=[]",
    "eval.linear=false",
    "run.log_every=1",
];

impl TrainingArgs {
    /// The resolved config of one variant: base preset, `--smoke`
    /// overrides, the user's `--set`s, then the variant's `extra`; the run
    /// goes to `OUT/runs/NAME`.
    pub fn config(&self, name: &str, extra: &[String]) -> Result<Config> {
        let mut overrides: Vec<String> = Vec::new();
        if self.smoke {
            overrides.extend(SMOKE_OVERRIDES.iter().map(|s| s.to_string()));
        }
        overrides.extend(self.overrides.iter().cloned());
        overrides.extend(extra.iter().cloned());
        overrides.push(format!("run.device={}", self.out.device));
        overrides.push(format!(
            "run.out_dir={}",
            self.out.out.join("runs").display()
        ));
        overrides.push(format!("run.name={name}"));
        crate::presets::resolve(Some(&self.preset), &overrides)
            .with_context(|| format!("configuring the `{name}` run"))
    }
}

/// The output folder, created.
pub fn out_dir(out: &OutArgs) -> Result<PathBuf> {
    std::fs::create_dir_all(&out.out)
        .with_context(|| format!("creating the output folder {}", out.out.display()))?;
    Ok(out.out.clone())
}

/// A small table written as Markdown (`STEM.md`) and CSV (`STEM.csv`).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.headers.join(" | "));
        let _ = writeln!(
            s,
            "|{}|",
            self.headers
                .iter()
                .map(|_| "---")
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }

    pub fn csv(&self) -> String {
        let quote = |c: &String| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        };
        let mut s = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let _ = writeln!(s, "{}", r.iter().map(quote).collect::<Vec<_>>().join(","));
        }
        s
    }

    /// Writes `STEM.md` and `STEM.csv`.
    pub fn write(&self, stem: &Path) -> Result<()> {
        atomic_write(&stem.with_extension("md"), self.markdown().as_bytes())?;
        atomic_write(&stem.with_extension("csv"), self.csv().as_bytes())?;
        Ok(())
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    Ok(atomic_write(
        path,
        serde_json::to_string_pretty(value)?.as_bytes(),
    )?)
}

/// A percentage with two decimals, or `-` for NaN.
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}", 100.0 * x)
    } else {
        "-".into()
    }
}

/// A trained run, restored, with its data.
pub struct Checkpointed {
    pub config: Config,
    pub nets: Networks,
    pub splits: Splits,
    pub device: Device,
}

/// Restores the run of `args.run` on `--device`; `--set` overrides are
/// applied to its stored config (kept as `OUT/checkpoint-config.toml`).
pub fn open_checkpoint(args: &CheckpointArgs) -> Result<Checkpointed> {
    let device = ssl_train::parse_device(&args.out.device)?;
    let out = out_dir(&args.out)?;
    let restored = ssl_train::restore(&args.run, device)?;
    eprintln!(
        "analyze | {} ({}, epoch {})",
        restored.checkpoint.display(),
        restored.config.method.name(),
        restored.meta.epoch
    );
    let mut config = restored.config;
    config.run.device = args.out.device.clone();
    // Overrides go through the same resolution as a preset: the stored
    // config, written as a TOML file, then each --set.
    let stored = out.join("checkpoint-config.toml");
    atomic_write(&stored, config.to_toml()?.as_bytes())?;
    if !args.overrides.is_empty() {
        let path = stored.to_string_lossy().into_owned();
        config = crate::presets::resolve(Some(&path), &args.overrides)
            .context("applying --set to the checkpoint's config")?;
    }
    let splits = open_splits(&config)?;
    Ok(Checkpointed {
        config,
        nets: restored.nets,
        splits,
        device,
    })
}

/// Encoder output `h` and embedding `z = head(h)` of a split, in one pass
/// (evaluation transform, networks in eval mode).
pub fn encoder_and_embedding(
    cfg: &Config,
    nets: &Networks,
    dataset: &Arc<AnyDataset>,
    pipeline: &ssl_data::Pipeline,
    device: Device,
    what: &str,
) -> Result<(Features, Features)> {
    let h_dim = nets.encoder.out_dim();
    let both = split_features(
        cfg,
        dataset,
        pipeline,
        device,
        |x| {
            let h = nets.encoder.forward_t(x, false);
            let z = nets.head.forward_t(&h, false);
            Tensor::cat(&[h, z], 1)
        },
        what,
    )?;
    let h = both.x.narrow(1, 0, h_dim);
    let z = both.x.narrow(1, h_dim, both.x.size()[1] - h_dim);
    Ok((
        Features::new(h, both.y.shallow_clone(), what)?,
        Features::new(z, both.y, what)?,
    ))
}

/// How the method whitens its embeddings: the transform and the sub-batch
/// size (`None` for methods that do not whiten).
pub fn method_whitening(cfg: &Config) -> Option<(WhiteningConfig, i64)> {
    let loss = cfg.method.whitening_loss()?;
    match loss.transform {
        ViewTransform::Whiten(w) => Some((w, loss.w_size)),
        _ => None,
    }
}

/// The method's whitening, or an error naming the methods that have one.
pub fn require_whitening(cfg: &Config) -> Result<(WhiteningConfig, i64)> {
    match method_whitening(cfg) {
        Some(w) => Ok(w),
        None => bail!(
            "the run was trained with {}, which has no whitening transform; whitened outputs \
             exist for cw-rgp, cw, cw-gp, w-mse and pca-whitening",
            cfg.method.name()
        ),
    }
}

/// A fixed random order of `n` rows, cut to a multiple of `w` (the rows
/// whitened together are consecutive runs of `w` in this order).
pub fn sub_batch_order(n: i64, w: i64, seed: u64) -> Result<Tensor> {
    if w < 2 || n < w {
        bail!("{n} examples cannot fill one whitening sub-batch of {w}");
    }
    let mut order: Vec<i64> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.truncate((n / w * w) as usize);
    Ok(Tensor::from_slice(&order))
}

/// Rows of `f` in `order`.
pub fn select(f: &Features, order: &Tensor) -> Result<Features> {
    let idx = order.to_device(f.x.device());
    Ok(Features::new(
        f.x.index_select(0, &idx),
        f.y.index_select(0, &idx),
        "selected",
    )?)
}

/// Whitens `x: [n, d]` (`n` a multiple of `w`) in consecutive sub-batches
/// of `w` rows with `cfg`, as the loss whitens during training (random
/// group partitions drawn from `seed`).
pub fn whiten_rows(x: &Tensor, cfg: &WhiteningConfig, w: i64, seed: u64) -> Result<Tensor> {
    let (n, d) = (x.size()[0], x.size()[1]);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let z = tch::no_grad(|| whitening_core::whiten(&x.view([n / w, w, d]), cfg, &mut rng))
        .context("whitening the embeddings")?;
    Ok(z.reshape([n, d]))
}

/// Mean normalised stable rank over consecutive sub-batches of `w` rows
/// (what a whitened batch looks like), and of the whole matrix.
pub fn normalised_stable_ranks(x: &Tensor, w: i64) -> Result<(f64, f64)> {
    let n = x.size()[0];
    let chunks = (n / w).max(1);
    let mut sum = 0.0;
    for c in 0..chunks {
        sum += rank_diagnostics(&x.narrow(0, c * w, w.min(n)))?.normalised_stable_rank;
    }
    let whole = rank_diagnostics(x)?.normalised_stable_rank;
    Ok((sum / chunks as f64, whole))
}

/// One representation of a split: its name and features.
pub struct Representation {
    pub name: &'static str,
    pub features: Features,
}

/// Encoder output `h`, embedding `z` and (for whitening methods) the
/// whitened embedding `Ẑ` of a split, on the same examples in the same
/// order: a fixed random order cut to whole sub-batches of the method's
/// `w_size` (which is what `Ẑ` is whitened in). Without a whitening, the
/// sub-batch size is the configured batch size.
pub fn representations(
    ck: &Checkpointed,
    dataset: &Arc<AnyDataset>,
    what: &str,
) -> Result<(Vec<Representation>, i64)> {
    let cfg = &ck.config;
    let (h, z) = encoder_and_embedding(
        cfg,
        &ck.nets,
        dataset,
        &ck.splits.eval_pipeline,
        ck.device,
        what,
    )?;
    let whitening = method_whitening(cfg);
    let w = whitening
        .as_ref()
        .map_or(cfg.data.batch_size.min(h.len()), |(_, w)| *w);
    let order = sub_batch_order(h.len(), w, cfg.run.seed)?;
    let (h, z) = (select(&h, &order)?, select(&z, &order)?);
    let whitened = match whitening {
        Some((wc, w)) => Some(Features::new(
            whiten_rows(&z.x, &wc, w, cfg.run.seed)?,
            z.y.shallow_clone(),
            what,
        )?),
        None => None,
    };
    let mut reps = vec![
        Representation {
            name: "encoder",
            features: h,
        },
        Representation {
            name: "embedding",
            features: z,
        },
    ];
    if let Some(features) = whitened {
        reps.push(Representation {
            name: "whitened",
            features,
        });
    }
    Ok((reps, w))
}

/// `(step, loss)` of every step record in a run's `metrics.jsonl` (none
/// when the file is missing).
pub fn step_losses(run_dir: &Path) -> Vec<(usize, f64)> {
    ssl_train::read_records(run_dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| match r {
            ssl_train::Record::Step { step, loss, .. } => Some((step, loss)),
            _ => None,
        })
        .collect()
}

/// `n` images of `dataset` (a fixed random draw from `seed`) under the
/// evaluation transform, as one `[n, C, H, W]` tensor on `device`: a fixed
/// probe batch.
pub fn probe_images(
    dataset: &Arc<AnyDataset>,
    pipeline: &ssl_data::Pipeline,
    n: usize,
    seed: u64,
    device: Device,
) -> Result<Tensor> {
    let mut lc = ssl_data::LoaderConfig::new(n, 1, seed);
    lc.drop_last = true;
    lc.threads = 1;
    let loader = ssl_data::Loader::new(dataset.clone(), pipeline.clone(), lc)?;
    let mut batch = loader.batch(0, 0).context("reading the probe batch")?;
    Ok(batch.views.remove(0).to_device(device))
}
