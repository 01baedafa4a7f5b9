//! `ssl analyze cw-vs-bw` (docs/reference.md §9.4): channel whitening stays stable at
//! small batch sizes, batch whitening does not. For each batch size `B`,
//! one run of CW-RGP (sub-batches of `min(B, d/(2g))`, so `d/g > w_size`
//! always holds) and one of W-MSE (Cholesky BW over the whole batch,
//! `w_size = B`), same base config otherwise. BW needs `B > d`: below it
//! the covariance is singular and the run is refused before it starts (or
//! fails in the whitening); near it, BW is ill-conditioned.
//!
//! Records per run: status (ok / refused / failed), the loss curve,
//! whether every loss was finite, the final k-NN accuracy. Writes
//! `cw-vs-bw.{svg,png}` (accuracy vs batch size, failed runs marked at 0),
//! `cw-vs-bw-loss.{svg,png}`, `cw-vs-bw.{md,csv,json}`, runs under `runs/`.

use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::{method_whitening, pct, step_losses, write_json, Table, TrainingArgs};
use crate::plot::{LineChart, Series};
use crate::train::train;

#[derive(Debug, Clone, Args)]
pub struct CwVsBwArgs {
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Comma-separated batch sizes (default: 16,64,128 with --smoke, else
    /// 32,64,128,256,512,1024).
    #[arg(long, value_delimiter = ',')]
    pub batch_sizes: Option<Vec<i64>>,
    /// CW-RGP groups (default: the base config's, else 2).
    #[arg(long)]
    pub groups: Option<i64>,
}

/// One run of the sweep.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepRun {
    pub method: String,
    pub batch_size: i64,
    pub w_size: i64,
    /// `ok`, `refused` (the configuration cannot whiten) or `failed` (training stopped).
    pub status: String,
    pub reason: Option<String>,
    pub losses: Vec<(usize, f64)>,
    pub all_finite: bool,
    pub knn_top1: Option<f64>,
}

pub fn run(args: &CwVsBwArgs) -> Result<serde_json::Value> {
    let out = super::out_dir(&args.training.out)?;
    let base = args.training.config("base", &[])?;
    let d = base.model.emb;
    let groups = args
        .groups
        .or_else(|| method_whitening(&base).map(|(w, _)| w.groups))
        .unwrap_or(2)
        .max(1);
    let batches = args.batch_sizes.clone().unwrap_or_else(|| {
        if args.training.smoke {
            vec![16, 64, 128]
        } else {
            vec![32, 64, 128, 256, 512, 1024]
        }
    });
    let mut runs = Vec::new();
    for &b in &batches {
        // CW: the largest power of two dividing B and at most d/(2g), so
        // that d/g > w_size (the reference: d/g = 128, w_size = 64).
        let cap = (d / groups / 2).max(2).min(b);
        let mut cw_w = 1;
        while cw_w * 2 <= cap && b % (cw_w * 2) == 0 {
            cw_w *= 2;
        }
        for (method, extra) in [
            (
                "cw-rgp",
                vec![
                    "method.name=cw-rgp".to_string(),
                    format!("method.groups={groups}"),
                    format!("method.w_size={cw_w}"),
                ],
            ),
            (
                "w-mse",
                vec![
                    "method.name=w-mse".to_string(),
                    format!("method.w_size={b}"),
                ],
            ),
        ] {
            let mut extra = extra;
            extra.push(format!("data.batch_size={b}"));
            let name = format!("{method}-b{b}");
            let w = if method == "w-mse" { b } else { cw_w };
            let cfg = match args.training.config(&name, &extra) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("analyze cw-vs-bw | {name}: refused: {e:#}");
                    runs.push(SweepRun {
                        method: method.into(),
                        batch_size: b,
                        w_size: w,
                        status: "refused".into(),
                        reason: Some(format!("{e:#}")),
                        losses: Vec::new(),
                        all_finite: false,
                        knn_top1: None,
                    });
                    continue;
                }
            };
            eprintln!("analyze cw-vs-bw | training {name} (w_size {w}, d {d})");
            let outcome = train(&cfg, false, &AtomicBool::new(false), None, None);
            let losses = step_losses(&cfg.run.out_dir.join(&cfg.run.name));
            let all_finite = !losses.is_empty() && losses.iter().all(|(_, l)| l.is_finite());
            let (status, reason, knn) = match outcome {
                Ok(o) => ("ok".to_string(), None, o.last_eval.map(|e| e.knn_top1)),
                Err(e) => {
                    eprintln!("analyze cw-vs-bw | {name}: failed: {e:#}");
                    ("failed".to_string(), Some(format!("{e:#}")), None)
                }
            };
            runs.push(SweepRun {
                method: method.into(),
                batch_size: b,
                w_size: w,
                status,
                reason,
                losses,
                all_finite,
                knn_top1: knn,
            });
        }
    }
    write_outputs(&out, &runs, d, groups)
}

fn label(method: &str) -> &'static str {
    if method == "w-mse" {
        "W-MSE (BW)"
    } else {
        "CW-RGP (CW)"
    }
}

fn write_outputs(
    out: &std::path::Path,
    runs: &[SweepRun],
    d: i64,
    groups: i64,
) -> Result<serde_json::Value> {
    let mut acc = LineChart::new(
        format!("CW vs BW across batch sizes (d = {d}; failed runs at 0)"),
        "log2 batch size",
        "k-NN top-1 %",
    )
    .markers(true);
    let mut loss = LineChart::new("Training loss, CW vs BW", "step", "loss");
    let mut table = Table::new(&[
        "method",
        "batch",
        "w_size",
        "status",
        "steps",
        "finite losses",
        "final loss",
        "k-NN top-1 %",
        "reason",
    ]);
    for method in ["cw-rgp", "w-mse"] {
        let of: Vec<&SweepRun> = runs.iter().filter(|r| r.method == method).collect();
        let ok: Vec<(f64, f64)> = of
            .iter()
            .filter_map(|r| {
                r.knn_top1
                    .map(|k| ((r.batch_size as f64).log2(), 100.0 * k))
            })
            .collect();
        let failed: Vec<(f64, f64)> = of
            .iter()
            .filter(|r| r.status != "ok")
            .map(|r| ((r.batch_size as f64).log2(), 0.0))
            .collect();
        if !ok.is_empty() {
            acc = acc.series(Series::new(label(method), ok));
        }
        if !failed.is_empty() {
            acc = acc.series(Series::new(format!("{} failed", label(method)), failed));
        }
        for r in of {
            if !r.losses.is_empty() {
                loss = loss.series(Series::new(
                    format!("{} B={}", label(method), r.batch_size),
                    r.losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
                ));
            }
            table.row(vec![
                label(method).into(),
                r.batch_size.to_string(),
                r.w_size.to_string(),
                r.status.clone(),
                r.losses.len().to_string(),
                r.all_finite.to_string(),
                r.losses
                    .last()
                    .map_or("-".into(), |(_, l)| format!("{l:.4}")),
                pct(r.knn_top1.unwrap_or(f64::NAN)),
                r.reason
                    .as_deref()
                    .map(|e| e.lines().last().unwrap_or("").replace('|', "/"))
                    .unwrap_or_default(),
            ]);
        }
    }
    acc.write(&out.join("cw-vs-bw"))?;
    if !loss.series.is_empty() {
        loss.write(&out.join("cw-vs-bw-loss"))?;
    }
    table.write(&out.join("cw-vs-bw"))?;
    let report = json!({
        "analysis": "cw-vs-bw",
        "emb": d,
        "cw_groups": groups,
        "runs": runs,
    });
    write_json(&out.join("cw-vs-bw.json"), &report)?;
    print!("{}", table.markdown());
    println!("analyze cw-vs-bw | wrote {}", out.display());
    Ok(report)
}
