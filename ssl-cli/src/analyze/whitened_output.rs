//! `ssl analyze whitened-output RUN` (docs/reference.md §9.2): is the whitened output a
//! good representation? k-NN and linear-probe accuracy and the normalised
//! stable rank of the encoder output `h`, the embedding `z` and the
//! whitened embedding `Ẑ` of the same checkpoint.
//!
//! `Ẑ` is computed as the loss computes it: the method's whitening on
//! sub-batches of `w_size` examples (a fixed random split of each split).
//! Its normalised stable rank per sub-batch is 100% by construction (the
//! paper's point: full rank, yet a poor representation). Writes
//! `whitened-output.{svg,png}` (grouped bars), `.md`, `.csv`, `.json`.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use ssl_eval::{knn_evaluate, linear_probe, KnnConfig, LinearProbeConfig};

use super::{normalised_stable_ranks, open_checkpoint, pct, representations, CheckpointArgs};
use super::{write_json, Table};
use crate::plot::BarChart;

#[derive(Debug, Clone, Args)]
pub struct WhitenedOutputArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Linear-probe epochs (default: the run's eval.linear_epochs); 0 skips the probe.
    #[arg(long)]
    pub linear_epochs: Option<usize>,
}

pub fn run(args: &WhitenedOutputArgs) -> Result<serde_json::Value> {
    let ck = open_checkpoint(&args.checkpoint)?;
    super::require_whitening(&ck.config)?;
    let out = args.checkpoint.out.out.clone();
    let (train, w) = representations(&ck, &ck.splits.labelled()?.classifier, "classifier")?;
    let (test, _) = representations(&ck, &ck.splits.labelled()?.test, "test")?;
    let epochs = args.linear_epochs.unwrap_or(ck.config.eval.linear_epochs);
    let mut table = Table::new(&[
        "features",
        "d",
        "k-NN top-1 %",
        "linear top-1 %",
        &format!("normalised stable rank per {w} %"),
        "normalised stable rank (split) %",
    ]);
    let (mut knn_col, mut lin_col, mut nsr_col) = (Vec::new(), Vec::new(), Vec::new());
    let mut entries = Vec::new();
    for (tr, te) in train.iter().zip(&test) {
        let knn = knn_evaluate(
            &tr.features,
            &te.features,
            &KnnConfig {
                k: ck.config.eval.knn_k as i64,
                ..KnnConfig::reference()
            },
        )?;
        let linear = if epochs > 0 {
            let cfg = LinearProbeConfig {
                epochs,
                seed: ck.config.run.seed,
                ..LinearProbeConfig::reference()
            };
            linear_probe(&tr.features, &te.features, &cfg)?.1.top1
        } else {
            f64::NAN
        };
        let (per_batch, whole) = normalised_stable_ranks(&te.features.x, w)?;
        eprintln!(
            "analyze | {}: k-NN {:.2}% linear {:.2}% nsr/batch {:.1}%",
            te.name,
            100.0 * knn.top1,
            100.0 * linear,
            100.0 * per_batch
        );
        table.row(vec![
            te.name.into(),
            te.features.dim().to_string(),
            pct(knn.top1),
            pct(linear),
            pct(per_batch),
            pct(whole),
        ]);
        knn_col.push(100.0 * knn.top1);
        lin_col.push(100.0 * linear);
        nsr_col.push(100.0 * per_batch);
        entries.push(json!({
            "features": te.name,
            "d": te.features.dim(),
            "knn_top1": knn.top1,
            "linear_top1": if linear.is_finite() { json!(linear) } else { json!(null) },
            "normalised_stable_rank_per_sub_batch": per_batch,
            "normalised_stable_rank": whole,
        }));
    }
    let mut groups = vec![("k-NN top-1 %".to_string(), knn_col)];
    if epochs > 0 {
        groups.push(("linear top-1 %".to_string(), lin_col));
    }
    groups.push((format!("normalised stable rank per {w} %"), nsr_col));
    BarChart {
        title: format!(
            "Encoder output vs embedding vs whitened embedding ({})",
            ck.config.method.name()
        ),
        y_label: "%".into(),
        categories: test.iter().map(|r| r.name.to_string()).collect(),
        groups,
    }
    .write(&out.join("whitened-output"))?;
    table.write(&out.join("whitened-output"))?;
    let report = json!({
        "analysis": "whitened-output",
        "checkpoint": args.checkpoint.run,
        "method": ck.config.method.name(),
        "sub_batch": w,
        "linear_epochs": epochs,
        "representations": entries,
    });
    write_json(&out.join("whitened-output.json"), &report)?;
    print!("{}", table.markdown());
    println!("analyze whitened-output | wrote {}", out.display());
    Ok(report)
}
