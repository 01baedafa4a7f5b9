//! `ssl analyze gradient` (docs/reference.md §2.5, the paper's proposition): on a real batch, the
//! gradient of the whitening loss `L = ℓ(Ẑ₁, Ẑ₂)` equals the gradient of
//! the stop-gradient proxy `L' = ℓ(Ẑ₁, sg(Ẑ₂)) + ℓ(sg(Ẑ₁), Ẑ₂)`, with
//! respect to the embedding and to the encoder parameters (for V views, the
//! mean over pairs). Three gradients are compared:
//! - the whitening loss as training computes it (`Method::loss`; for ZCA
//!   configurations its gradient is in closed form);
//! - the same loss by autograd through the whitening
//!   (`whiten_sub_batches` + `pairwise_view_loss`);
//! - the proxy, by autograd, with the same sub-batches and partitions;
//!
//! and the proxy's first term alone (what minimising one term asks).
//! The losses are computed in f64 on top of the network's f32 embedding by
//! default (`--f32`: in the training precision), on a randomly initialised
//! network or a trained one (`--run`); both gradients reach the encoder
//! through the same backward pass, so its rounding is common to both.
//!
//! Writes `gradient.{svg,png}` (per-tensor gradient norms of the encoder,
//! loss vs proxy), `gradient.{md,csv,json}`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use ssl_losses::{norm_mse, plain_mse};
use tch::{Kind, Tensor};
use whitening_core::whiten_sub_batches;

use super::{require_whitening, write_json, CheckpointArgs, Table, TrainingArgs};
use crate::plot::{LineChart, Series};
use ssl_train::data::{open_splits, ssl_loader};
use ssl_train::Networks;

#[derive(Debug, Clone, Args)]
pub struct GradientArgs {
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Use this trained run's networks and config instead of a randomly
    /// initialised network from --preset.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Compute the losses in f32 (training precision) instead of f64.
    #[arg(long)]
    pub f32: bool,
}

/// Cosine similarity and relative difference `‖a − b‖ / ‖a‖` of two gradients.
fn compare(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let na = a.norm().double_value(&[]);
    let nb = b.norm().double_value(&[]);
    let cos = (&a * &b).sum(Kind::Double).double_value(&[]) / (na * nb).max(1e-300);
    let rel = (&a - &b).norm().double_value(&[]) / na.max(1e-300);
    (cos, rel)
}

fn flat(grads: &[Tensor]) -> Tensor {
    Tensor::cat(
        &grads.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(),
        0,
    )
}

pub fn run(args: &GradientArgs) -> Result<serde_json::Value> {
    let out = super::out_dir(&args.training.out)?;
    let device = ssl_train::parse_device(&args.training.out.device)?;
    let (cfg, nets) = match &args.run {
        Some(run) => {
            let ck = super::open_checkpoint(&CheckpointArgs {
                run: run.clone(),
                out: args.training.out.clone(),
                overrides: args.training.overrides.clone(),
            })?;
            (ck.config, ck.nets)
        }
        None => {
            let cfg = args.training.config("gradient", &[])?;
            tch::manual_seed(cfg.run.seed as i64);
            let nets = Networks::new(&cfg, device)?;
            (cfg, nets)
        }
    };
    let (wcfg, w_size) = require_whitening(&cfg)?;
    let loss_def = cfg
        .method
        .whitening_loss()
        .context("a whitening method has a whitening loss")?;
    let kind = if args.f32 { Kind::Float } else { Kind::Double };
    let splits = open_splits(&cfg)?;
    let loader = ssl_loader(&cfg, &splits, device, ssl_data::Shard::WHOLE)?;
    let batch = loader
        .epoch(0)
        .next()
        .context("the SSL split gave no batch")?
        .context("loading the batch")?;
    let views: Vec<Tensor> = batch.to_device(device).views;
    let mut outputs = nets.forward(&views, true);
    // The network runs in its own precision; the losses (whitening and
    // its eigendecomposition included) run in `kind` on top of it.
    outputs.embeddings = outputs.embeddings.to_kind(kind);
    let z = &outputs.embeddings; // [views, m, d]
    let seed = cfg.run.seed;
    let iters = loss_def.w_iter.max(1);
    let pair = |a: &Tensor, b: &Tensor| {
        if loss_def.normalized {
            norm_mse(a, b)
        } else {
            plain_mse(a, b)
        }
    };
    let v = z.size()[0];
    let pairs: Vec<(i64, i64)> = (0..v)
        .flat_map(|i| (i + 1..v).map(move |j| (i, j)))
        .collect();
    let p = pairs.len() as f64 * iters as f64;

    // 1. The loss as training computes it.
    let loss = cfg.method.loss(
        &outputs.as_method_outputs(&nets),
        0,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )?;
    // 2. The same loss through autograd, 3. the proxy, 4. its first term,
    // all with the same draws (sub-batches, then partitions, per w_iter).
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut direct = z.zeros_like().sum(kind);
    let mut proxy = z.zeros_like().sum(kind);
    let mut first = z.zeros_like().sum(kind);
    for _ in 0..iters {
        let zh = whiten_sub_batches(z, w_size, &wcfg, &mut rng)?;
        for &(i, j) in &pairs {
            let (a, b) = (zh.get(i), zh.get(j));
            direct += pair(&a, &b) / p;
            let one = pair(&a, &b.detach()) / p;
            proxy += &one + pair(&a.detach(), &b) / p;
            first += one;
        }
    }
    let values = [
        loss.double_value(&[]),
        direct.double_value(&[]),
        proxy.double_value(&[]),
    ];
    let losses = [&loss, &direct, &proxy, &first];
    let wrt_z: Vec<Tensor> = losses
        .iter()
        .map(|l| Tensor::run_backward(&[*l], &[z], true, false).remove(0))
        .collect();
    let mut names: Vec<(String, Tensor)> = nets
        .vs
        .variables()
        .into_iter()
        .filter(|(n, t)| n.starts_with("encoder.") && t.requires_grad())
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let params: Vec<&Tensor> = names.iter().map(|(_, t)| t).collect();
    let wrt_theta: Vec<Vec<Tensor>> = losses
        .iter()
        .map(|l| Tensor::run_backward(&[*l], &params, true, false))
        .collect();
    let theta: Vec<Tensor> = wrt_theta.iter().map(|g| flat(g)).collect();

    let mut table = Table::new(&[
        "w.r.t.",
        "cos(loss, proxy)",
        "rel. diff (loss, proxy)",
        "cos(autograd, proxy)",
        "rel. diff (autograd, proxy)",
        "cos(loss, first term)",
        "‖∂L‖",
        "‖∂L'‖",
    ]);
    let mut rows = Vec::new();
    for (what, g) in [("embedding", &wrt_z), ("encoder parameters", &theta)] {
        let (cos_lp, rel_lp) = compare(&g[0], &g[2]);
        let (cos_dp, rel_dp) = compare(&g[1], &g[2]);
        let (cos_lf, _) = compare(&g[0], &g[3]);
        let (n_l, n_p) = (g[0].norm().double_value(&[]), g[2].norm().double_value(&[]));
        table.row(vec![
            what.into(),
            format!("{cos_lp:.10}"),
            format!("{rel_lp:.3e}"),
            format!("{cos_dp:.10}"),
            format!("{rel_dp:.3e}"),
            format!("{cos_lf:.4}"),
            format!("{n_l:.4e}"),
            format!("{n_p:.4e}"),
        ]);
        rows.push(json!({
            "wrt": what,
            "cosine_loss_proxy": cos_lp,
            "relative_difference_loss_proxy": rel_lp,
            "cosine_autograd_proxy": cos_dp,
            "relative_difference_autograd_proxy": rel_dp,
            "cosine_loss_first_term": cos_lf,
            "norm_loss": n_l,
            "norm_proxy": n_p,
        }));
    }
    let per_tensor = |g: &Vec<Tensor>| -> Vec<(f64, f64)> {
        g.iter()
            .enumerate()
            .map(|(i, t)| ((i + 1) as f64, t.norm().double_value(&[])))
            .collect()
    };
    LineChart::new(
        format!(
            "Encoder gradient norms: {} loss vs stop-gradient proxy",
            cfg.method.name()
        ),
        "encoder parameter tensor",
        "‖∂/∂θ‖",
    )
    .log_y(true)
    .markers(true)
    .series(Series::new("whitening loss L", per_tensor(&wrt_theta[0])))
    .series(Series::new("proxy L'", per_tensor(&wrt_theta[2])))
    .series(Series::new(
        "first proxy term only",
        per_tensor(&wrt_theta[3]),
    ))
    .write(&out.join("gradient"))?;
    table.write(&out.join("gradient"))?;
    let report = json!({
        "analysis": "gradient",
        "method": cfg.method.name(),
        "precision": if args.f32 { "f32" } else { "f64" },
        "batch": views[0].size()[0],
        "views": v,
        "w_size": w_size,
        "loss_values": { "loss": values[0], "autograd": values[1], "proxy": values[2] },
        "parameters": names.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "comparisons": rows,
    });
    write_json(&out.join("gradient.json"), &report)?;
    println!(
        "loss {:.6} | autograd {:.6} | proxy {:.6}",
        values[0], values[1], values[2]
    );
    print!("{}", table.markdown());
    println!("analyze gradient | wrote {}", out.display());
    Ok(report)
}
