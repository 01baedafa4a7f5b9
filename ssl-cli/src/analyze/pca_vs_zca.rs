//! `ssl analyze pca-vs-zca` (docs/reference.md §9.1): PCA whitening fails to avoid
//! dimensional collapse because its whitened targets jump from step to
//! step (eigenvector order and sign flip), while ZCA's move smoothly.
//!
//! Short runs of the trainer, one per variant (same base config, only the
//! method changes): PCA channel whitening, ZCA channel whitening (CW,
//! `g = 1`) and CW-RGP by default; `--variants` adds PCA batch whitening
//! (`pca-bw`) and W-MSE (`w-mse`, Cholesky BW). A [`StepObserver`] probes a
//! fixed batch of test images (eval mode, no gradient) before the first and
//! after every `--every`-th step and records:
//! - the normalised stable rank of the centred encoder output `h` (collapse);
//! - the target change `‖Ẑ_t − Ẑ_{t−1}‖_F / ‖Ẑ_{t−1}‖_F` of the probe
//!   embeddings whitened by the variant's transform (fixed sub-batches of
//!   `w_size` and fixed group partitions, so only the network moves), next
//!   to the embedding change `‖Z_t − Z_{t−1}‖_F / ‖Z_{t−1}‖_F` that caused it.
//!
//! Writes `pca-vs-zca-rank.{svg,png}`, `pca-vs-zca-targets.{svg,png}`,
//! `pca-vs-zca-loss.{svg,png}`, `pca-vs-zca.{md,csv,json}` and the runs
//! under `runs/`.

use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tch::nn::ModuleT;
use tch::Tensor;
use whitening_core::diagnostics::rank_diagnostics;
use whitening_core::WhiteningConfig;

use super::{method_whitening, pct, probe_images, step_losses, write_json, Table, TrainingArgs};
use crate::plot::{LineChart, Series};
use ssl_train::open_splits;
use ssl_train::Callbacks;
use ssl_train::Networks;

/// The variants this analysis knows.
pub const VARIANTS: &[&str] = &["pca-cw", "zca-cw", "cw-rgp", "pca-bw", "w-mse"];

#[derive(Debug, Clone, Args)]
pub struct PcaVsZcaArgs {
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Comma-separated variants: pca-cw, zca-cw, cw-rgp, pca-bw (PCA batch
    /// whitening, needs w_size > emb), w-mse.
    #[arg(long, value_delimiter = ',', default_value = "pca-cw,zca-cw,cw-rgp")]
    pub variants: Vec<String>,
    /// Sub-batch size of the channel-whitening variants (default: the base
    /// config's method.w_size).
    #[arg(long)]
    pub w_size: Option<i64>,
    /// Sub-batch size of the batch-whitening variants (default: data.batch_size).
    #[arg(long)]
    pub bw_size: Option<i64>,
    /// Probe images (a multiple of both sub-batch sizes).
    #[arg(long, default_value_t = 256)]
    pub probe: usize,
    /// Probe every this many steps.
    #[arg(long, default_value_t = 1)]
    pub every: usize,
}

/// One probe of the fixed batch.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Probe {
    pub step: usize,
    /// Normalised stable rank of the centred encoder output (the mean of
    /// non-negative features would otherwise dominate σ₁).
    pub encoder_nsr: f64,
    /// The same, uncentred (what training's evaluation reports).
    pub encoder_nsr_uncentred: f64,
    pub encoder_stable_rank: f64,
    pub embedding_nsr: f64,
    /// `‖Ẑ_t − Ẑ_prev‖ / ‖Ẑ_prev‖` (NaN at the first probe).
    pub target_change: f64,
    /// `‖Z_t − Z_prev‖ / ‖Z_prev‖` (NaN at the first probe).
    pub embedding_change: f64,
}

struct ProbeObserver {
    images: Tensor,
    whitening: WhiteningConfig,
    w: i64,
    seed: u64,
    every: usize,
    prev: Option<(Tensor, Tensor)>,
    probes: Vec<Probe>,
}

fn rel_change(now: &Tensor, prev: &Tensor) -> f64 {
    (now - prev).norm().double_value(&[]) / prev.norm().double_value(&[]).max(1e-300)
}

impl Callbacks for ProbeObserver {
    fn observe(&mut self, step: usize, nets: &Networks) -> Result<(), ssl_train::BoxError> {
        if !step.is_multiple_of(self.every.max(1)) {
            return Ok(());
        }
        tch::no_grad(|| -> Result<(), ssl_train::BoxError> {
            let h = nets.encoder.forward_t(&self.images, false);
            let z = nets.head.forward_t(&h, false);
            let (n, d) = (z.size()[0], z.size()[1]);
            // The same partitions every probe: only the network moves.
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            let zh =
                whitening_core::whiten(&z.view([n / self.w, self.w, d]), &self.whitening, &mut rng)
                    .map(|t| t.reshape([n, d]))
                    .unwrap_or_else(|_| z.full_like(f64::NAN));
            let hr = rank_diagnostics(&(&h - h.mean_dim(0, true, None)))?;
            let hu = rank_diagnostics(&h)?;
            let zr = rank_diagnostics(&z)?;
            let (tc, ec) = match &self.prev {
                Some((pz, pzh)) => (rel_change(&zh, pzh), rel_change(&z, pz)),
                None => (f64::NAN, f64::NAN),
            };
            self.probes.push(Probe {
                step,
                encoder_nsr: hr.normalised_stable_rank,
                encoder_nsr_uncentred: hu.normalised_stable_rank,
                encoder_stable_rank: hr.stable_rank,
                embedding_nsr: zr.normalised_stable_rank,
                target_change: tc,
                embedding_change: ec,
            });
            self.prev = Some((z, zh));
            Ok(())
        })
    }
}

/// What one variant's run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantResult {
    pub variant: String,
    pub method: String,
    pub error: Option<String>,
    pub probes: Vec<Probe>,
    pub losses: Vec<(usize, f64)>,
    pub knn_top1: Option<f64>,
}

impl VariantResult {
    /// Mean of the finite target changes.
    pub fn mean_target_change(&self) -> f64 {
        mean(self.probes.iter().map(|p| p.target_change))
    }
    pub fn mean_embedding_change(&self) -> f64 {
        mean(self.probes.iter().map(|p| p.embedding_change))
    }
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = it.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn median(it: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = it.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn label(variant: &str) -> &'static str {
    match variant {
        "pca-cw" => "PCA (CW)",
        "zca-cw" => "ZCA (CW)",
        "cw-rgp" => "CW-RGP",
        "pca-bw" => "PCA (BW)",
        _ => "W-MSE (Cholesky BW)",
    }
}

fn variant_overrides(variant: &str, w: i64, bw: i64, groups: i64) -> Result<Vec<String>> {
    let v: Vec<String> = match variant {
        "pca-cw" => vec![
            "method.name=pca-whitening".into(),
            "method.axis=channel".into(),
            "method.groups=1".into(),
            format!("method.w_size={w}"),
        ],
        "zca-cw" => vec![
            "method.name=cw".into(),
            "method.groups=1".into(),
            format!("method.w_size={w}"),
        ],
        "cw-rgp" => vec![
            "method.name=cw-rgp".into(),
            format!("method.groups={groups}"),
            format!("method.w_size={w}"),
        ],
        "pca-bw" => vec![
            "method.name=pca-whitening".into(),
            "method.axis=batch".into(),
            "method.groups=1".into(),
            format!("method.w_size={bw}"),
        ],
        "w-mse" => vec!["method.name=w-mse".into(), format!("method.w_size={bw}")],
        other => bail!(
            "unknown variant `{other}`: expected one of {}",
            VARIANTS.join(", ")
        ),
    };
    Ok(v)
}

pub fn run(args: &PcaVsZcaArgs) -> Result<serde_json::Value> {
    let out = super::out_dir(&args.training.out)?;
    let base = args.training.config("base", &[])?;
    let (w, groups) = match method_whitening(&base) {
        Some((wc, w)) => (args.w_size.unwrap_or(w), wc.groups.max(2)),
        None => (args.w_size.unwrap_or(64), 2),
    };
    let bw = args.bw_size.unwrap_or(base.data.batch_size);
    let device = ssl_train::parse_device(&args.training.out.device)?;
    let splits = open_splits(&base)?;
    let images = probe_images(
        &splits.labelled()?.test,
        &splits.eval_pipeline,
        args.probe,
        base.run.seed,
        device,
    )?;
    let mut results = Vec::new();
    for variant in &args.variants {
        let extra = variant_overrides(variant, w, bw, groups)?;
        let cfg = match args.training.config(variant, &extra) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("analyze pca-vs-zca | {variant}: {e:#}");
                results.push(VariantResult {
                    variant: variant.clone(),
                    method: String::new(),
                    error: Some(format!("{e:#}")),
                    probes: Vec::new(),
                    losses: Vec::new(),
                    knn_top1: None,
                });
                continue;
            }
        };
        let (wc, vw) = method_whitening(&cfg).expect("every variant whitens");
        if args.probe as i64 % vw != 0 {
            bail!(
                "--probe {} is not a multiple of the {variant} sub-batch size {vw}",
                args.probe
            );
        }
        eprintln!(
            "analyze pca-vs-zca | training {variant} ({})",
            cfg.method.name()
        );
        let mut obs = ProbeObserver {
            images: images.shallow_clone(),
            whitening: wc,
            w: vw,
            seed: cfg.run.seed,
            every: args.every,
            prev: None,
            probes: Vec::new(),
        };
        let outcome =
            crate::train::train(&cfg, false, &AtomicBool::new(false), None, Some(&mut obs));
        let run_dir = cfg.run.out_dir.join(&cfg.run.name);
        let (error, knn) = match outcome {
            Ok(o) => (None, o.last_eval.map(|e| e.knn_top1)),
            Err(e) => (Some(format!("{e:#}")), None),
        };
        results.push(VariantResult {
            variant: variant.clone(),
            method: cfg.method.name().into(),
            error,
            probes: obs.probes,
            losses: step_losses(&run_dir),
            knn_top1: knn,
        });
    }
    write_outputs(&out, &results, w, bw)
}

fn write_outputs(
    out: &std::path::Path,
    results: &[VariantResult],
    w: i64,
    bw: i64,
) -> Result<serde_json::Value> {
    let mut rank = LineChart::new(
        "Encoder output (centred): normalised stable rank over training",
        "step",
        "normalised stable rank",
    );
    let mut targets = LineChart::new(
        "Step-to-step change of the whitened targets on a fixed batch",
        "step",
        "‖Ẑ_t − Ẑ_(t−1)‖ / ‖Ẑ_(t−1)‖",
    )
    .log_y(true);
    let mut loss = LineChart::new("Training loss", "step", "loss");
    let mut table = Table::new(&[
        "variant",
        "method",
        "status",
        "encoder nsr start %",
        "encoder nsr end %",
        "encoder nsr min %",
        "mean target change",
        "median target change",
        "mean embedding change",
        "k-NN top-1 %",
    ]);
    for r in results {
        let name = label(&r.variant);
        if !r.probes.is_empty() {
            rank = rank.series(Series::new(
                name,
                r.probes
                    .iter()
                    .map(|p| (p.step as f64, p.encoder_nsr))
                    .collect(),
            ));
            targets = targets.series(Series::new(
                name,
                r.probes
                    .iter()
                    .map(|p| (p.step as f64, p.target_change))
                    .collect(),
            ));
        }
        if !r.losses.is_empty() {
            loss = loss.series(Series::new(
                name,
                r.losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
            ));
        }
        let first = r.probes.first().map_or(f64::NAN, |p| p.encoder_nsr);
        let last = r.probes.last().map_or(f64::NAN, |p| p.encoder_nsr);
        let min = r
            .probes
            .iter()
            .map(|p| p.encoder_nsr)
            .fold(f64::NAN, f64::min);
        table.row(vec![
            name.into(),
            r.method.clone(),
            match &r.error {
                None => "ok".into(),
                Some(e) => format!("failed: {}", e.lines().next().unwrap_or("")),
            },
            pct(first),
            pct(last),
            pct(min),
            format!("{:.4}", r.mean_target_change()),
            format!("{:.4}", median(r.probes.iter().map(|p| p.target_change))),
            format!("{:.4}", r.mean_embedding_change()),
            pct(r.knn_top1.unwrap_or(f64::NAN)),
        ]);
    }
    if !rank.series.is_empty() {
        rank.write(&out.join("pca-vs-zca-rank"))?;
        targets.write(&out.join("pca-vs-zca-targets"))?;
    }
    if !loss.series.is_empty() {
        loss.write(&out.join("pca-vs-zca-loss"))?;
    }
    table.write(&out.join("pca-vs-zca"))?;
    let report = json!({
        "analysis": "pca-vs-zca",
        "w_size": w,
        "bw_size": bw,
        "variants": results,
        "summary": results.iter().map(|r| json!({
            "variant": r.variant,
            "ok": r.error.is_none(),
            "mean_target_change": r.mean_target_change(),
            "mean_embedding_change": r.mean_embedding_change(),
            "encoder_nsr_end": r.probes.last().map(|p| p.encoder_nsr),
            "knn_top1": r.knn_top1,
        })).collect::<Vec<_>>(),
    });
    write_json(&out.join("pca-vs-zca.json"), &report)?;
    print!("{}", table.markdown());
    println!("analyze pca-vs-zca | wrote {}", out.display());
    Ok(report)
}
