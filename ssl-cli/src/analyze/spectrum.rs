//! `ssl analyze spectrum RUN`: singular values and covariance spectrum,
//! stable rank, normalised stable rank and effective rank of the encoder
//! output, the embedding and (for whitening methods) the whitened embedding
//! of the test split (docs/reference.md §7.5, the collapse diagnostics).
//!
//! Writes `spectrum.{svg,png}` (σᵢ/σ₁, log scale), `covariance.{svg,png}`
//! (λᵢ/λ₁), `spectrum.{md,csv}` and `spectrum.json` (the full spectra).

use anyhow::Result;
use serde_json::json;
use whitening_core::diagnostics::{covariance_spectrum, rank_diagnostics};

use super::{normalised_stable_ranks, open_checkpoint, representations, CheckpointArgs, Table};
use crate::plot::{LineChart, Series};

pub fn run(args: &CheckpointArgs) -> Result<serde_json::Value> {
    let ck = open_checkpoint(args)?;
    let out = args.out.out.clone();
    let (reps, w) = representations(&ck, &ck.splits.labelled()?.test, "test")?;
    let mut table = Table::new(&[
        "features",
        "n",
        "d",
        "stable rank",
        "normalised stable rank %",
        &format!("normalised stable rank per {w} %"),
        "effective rank",
        "top-10 covariance share %",
    ]);
    let mut sv_chart = LineChart::new(
        format!(
            "Singular values of the test features ({})",
            ck.config.method.name()
        ),
        "index i",
        "σ_i / σ_1",
    )
    .log_y(true);
    let mut cov_chart = LineChart::new(
        format!(
            "Covariance spectrum of the test features ({})",
            ck.config.method.name()
        ),
        "index i",
        "λ_i / λ_1",
    )
    .log_y(true);
    let mut entries = Vec::new();
    for r in &reps {
        let x = &r.features.x;
        let rank = rank_diagnostics(x)?;
        let cov = covariance_spectrum(x)?;
        let (per_batch, _) = normalised_stable_ranks(x, w)?;
        let total: f64 = cov.iter().map(|l| l.max(0.0)).sum();
        let top10: f64 = cov.iter().take(10).map(|l| l.max(0.0)).sum();
        let share = if total > 0.0 { top10 / total } else { f64::NAN };
        table.row(vec![
            r.name.into(),
            x.size()[0].to_string(),
            x.size()[1].to_string(),
            format!("{:.2}", rank.stable_rank),
            super::pct(rank.normalised_stable_rank),
            super::pct(per_batch),
            format!("{:.2}", rank.effective_rank),
            super::pct(share),
        ]);
        let s1 = rank
            .singular_values
            .first()
            .copied()
            .unwrap_or(1.0)
            .max(1e-300);
        sv_chart = sv_chart.series(Series::new(
            r.name,
            rank.singular_values
                .iter()
                .enumerate()
                .map(|(i, s)| ((i + 1) as f64, s / s1))
                .collect(),
        ));
        let l1 = cov.first().copied().unwrap_or(1.0).max(1e-300);
        cov_chart = cov_chart.series(Series::new(
            r.name,
            cov.iter()
                .enumerate()
                .map(|(i, l)| ((i + 1) as f64, l / l1))
                .collect(),
        ));
        entries.push(json!({
            "features": r.name,
            "n": x.size()[0],
            "d": x.size()[1],
            "stable_rank": rank.stable_rank,
            "normalised_stable_rank": rank.normalised_stable_rank,
            "normalised_stable_rank_per_sub_batch": per_batch,
            "effective_rank": rank.effective_rank,
            "singular_values": rank.singular_values,
            "covariance_eigenvalues": cov,
        }));
    }
    sv_chart.write(&out.join("spectrum"))?;
    cov_chart.write(&out.join("covariance"))?;
    table.write(&out.join("spectrum"))?;
    let report = json!({
        "analysis": "spectrum",
        "checkpoint": args.run,
        "method": ck.config.method.name(),
        "sub_batch": w,
        "representations": entries,
    });
    super::write_json(&out.join("spectrum.json"), &report)?;
    print!("{}", table.markdown());
    println!("analyze spectrum | wrote {}", out.display());
    Ok(report)
}
