//! What a run directory shows a person: `plots/` (loss, accuracy and the
//! embedding spectrum, SVG + PNG), drawn from the records ssl-train writes.
//!
//! The loss and accuracy plots are redrawn from `metrics.jsonl` (every
//! complete line, earlier sessions of a resumed run included); the spectrum
//! from `spectrum.json`, which each evaluation overwrites with the test
//! features' singular values and covariance eigenvalues. A plot that cannot
//! be drawn is a warning, never the end of a training run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ssl_train::records::{read_records, spectrum_path, Spectrum};
use ssl_train::Record;

use crate::plot::{LineChart, Series};

/// Exponential moving average with the bias correction of Adam's moments,
/// so the first points are not pulled towards zero.
pub fn smooth(points: &[(f64, f64)], beta: f64) -> Vec<(f64, f64)> {
    let mut avg = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            avg = beta * avg + (1.0 - beta) * y;
            (x, avg / (1.0 - beta.powi(i as i32 + 1)))
        })
        .collect()
}

/// Draws `plots/loss`, `plots/accuracy` and `plots/spectrum` (each `.svg` +
/// `.png`) from what the run directory holds; returns the files written.
/// A chart with nothing to draw yet (no evaluation so far) is skipped.
pub fn write_plots(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let records = read_records(run_dir)?;
    let dir = run_dir.join("plots");
    let mut written = Vec::new();

    let mut loss: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step { step, loss, .. } => Some((*step as f64, *loss)),
            _ => None,
        })
        .collect();
    // A resumed run re-logs nothing twice, but an interrupted step may have
    // been logged before the checkpoint it resumed from: keep the latest.
    loss.sort_by(|a, b| a.0.total_cmp(&b.0));
    loss.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    if !loss.is_empty() {
        let beta = if loss.len() > 200 { 0.98 } else { 0.9 };
        let chart = LineChart::new("Training loss", "step", "loss")
            .series(Series::new("loss", loss.clone()))
            .series(Series::new(
                format!("smoothed (EMA {beta})"),
                smooth(&loss, beta),
            ))
            .log_y(true);
        written.extend(chart.write(&dir.join("loss"))?);
    }

    let evals: Vec<(usize, f64, Option<f64>)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Eval {
                epoch,
                knn_top1,
                linear_top1,
                ..
            } => Some((*epoch, *knn_top1, *linear_top1)),
            _ => None,
        })
        .collect();
    if !evals.is_empty() {
        let mut chart = LineChart::new("Evaluation (test split)", "epoch", "top-1 accuracy (%)")
            .series(Series::new(
                "k-NN",
                evals
                    .iter()
                    .map(|&(e, k, _)| (e as f64, 100.0 * k))
                    .collect(),
            ))
            .markers(true);
        let linear: Vec<(f64, f64)> = evals
            .iter()
            .filter_map(|&(e, _, l)| l.map(|l| (e as f64, 100.0 * l)))
            .collect();
        if !linear.is_empty() {
            chart = chart.series(Series::new("linear", linear));
        }
        written.extend(chart.write(&dir.join("accuracy"))?);
    }

    let spectrum_file = spectrum_path(run_dir);
    if spectrum_file.exists() {
        let s: Spectrum = serde_json::from_slice(
            &std::fs::read(&spectrum_file)
                .with_context(|| format!("reading {}", spectrum_file.display()))?,
        )
        .with_context(|| format!("{}: not a spectrum", spectrum_file.display()))?;
        let indexed = |v: &[f64]| -> Vec<(f64, f64)> {
            v.iter()
                .enumerate()
                .map(|(i, &x)| ((i + 1) as f64, x))
                .collect()
        };
        let chart = LineChart::new(
            format!(
                "Spectrum of the test {} features, epoch {}",
                s.representation, s.epoch
            ),
            "index (descending)",
            "value",
        )
        .series(Series::new("singular value", indexed(&s.singular_values)))
        .series(Series::new(
            "covariance eigenvalue",
            indexed(&s.covariance_eigenvalues),
        ))
        .log_y(true);
        written.extend(chart.write(&dir.join("spectrum"))?);
    }
    Ok(written)
}

/// [`write_plots`], with a failure reported as a warning.
pub fn write_plots_or_warn(run_dir: &Path) {
    if let Err(e) = write_plots(run_dir) {
        eprintln!(
            "warning: could not draw the plots of {}: {e:#}",
            run_dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssl_train::records::save_spectrum;

    #[test]
    fn smoothing_is_unbiased_on_a_constant() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0)).collect();
        for (_, y) in smooth(&pts, 0.9) {
            assert!((y - 2.0).abs() < 1e-12);
        }
    }

    #[test]
    fn plots_come_from_metrics_and_spectrum_files() {
        let dir = test_support::scratch_dir();
        let run = dir.path();
        let mut lines = String::new();
        for step in 1..=30 {
            let r = Record::Step {
                epoch: step / 10,
                step,
                loss: 2.0 / step as f64,
                lr: 1e-3,
                images_per_s: 100.0,
            };
            lines.push_str(&serde_json::to_string(&r).unwrap());
            lines.push('\n');
        }
        // Only the loss so far: one chart.
        std::fs::write(run.join("metrics.jsonl"), &lines).unwrap();
        let files = write_plots(run).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        for epoch in [1, 2, 3] {
            let r = Record::Eval {
                epoch,
                step: 10 * epoch,
                knn_top1: 0.5 + 0.1 * epoch as f64,
                linear_top1: Some(0.6),
                linear_top5: Some(0.9),
                normalised_stable_rank: 0.3,
            };
            lines.push_str(&serde_json::to_string(&r).unwrap());
            lines.push('\n');
        }
        lines.push_str("{\"kind\":\"step\",\"epo"); // a torn last line
        std::fs::write(run.join("metrics.jsonl"), &lines).unwrap();
        save_spectrum(
            run,
            &Spectrum {
                epoch: 3,
                representation: "encoder".into(),
                singular_values: vec![10.0, 5.0, 1.0, 0.1],
                covariance_eigenvalues: vec![3.0, 1.0, 0.2, 0.0],
            },
        )
        .unwrap();
        let files = write_plots(run).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "loss.svg",
                "loss.png",
                "accuracy.svg",
                "accuracy.png",
                "spectrum.svg",
                "spectrum.png"
            ]
        );
        let svg = std::fs::read_to_string(run.join("plots/accuracy.svg")).unwrap();
        assert!(svg.contains("k-NN") && svg.contains("linear"));
        // A damaged spectrum file is an error of write_plots (naming the
        // file), a warning for training: the other plots are still drawn.
        std::fs::write(spectrum_path(run), b"{").unwrap();
        let err = write_plots(run).unwrap_err();
        assert!(format!("{err:#}").contains("spectrum.json"), "{err:#}");
        std::fs::remove_dir_all(run.join("plots")).unwrap();
        write_plots_or_warn(run);
        assert!(run.join("plots/loss.svg").exists() && run.join("plots/accuracy.png").exists());
    }
}
