//! The records of a run directory besides the metrics: `spectrum.json`
//! (the test features' singular values and covariance eigenvalues at the
//! last evaluation, which each evaluation overwrites) and, at the end of
//! every session, `results.json`. One reader of `metrics.jsonl` for
//! everyone: [`read_records`]; [`read_results`] and [`read_config`] read
//! `results.json` and `config.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Context, Result, TrainError};
use crate::run_dir::{atomic_write, Record};
use crate::trainer::TrainOutcome;

/// The spectrum of the test features at one evaluation (`spectrum.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spectrum {
    pub epoch: usize,
    /// Which output was evaluated: `encoder` or `head`.
    pub representation: String,
    /// Singular values of the `[n, d]` test feature matrix, descending.
    pub singular_values: Vec<f64>,
    /// Eigenvalues of the features' covariance, descending.
    pub covariance_eigenvalues: Vec<f64>,
}

pub fn spectrum_path(run_dir: &Path) -> PathBuf {
    run_dir.join("spectrum.json")
}

pub fn save_spectrum(run_dir: &Path, s: &Spectrum) -> Result<()> {
    atomic_write(&spectrum_path(run_dir), &serde_json::to_vec_pretty(s)?)
}

/// Every complete record of `metrics.jsonl` (a torn last line is skipped).
pub fn read_records(run_dir: &Path) -> Result<Vec<Record>> {
    let path = run_dir.join("metrics.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_records(&text))
}

/// The complete records of a `metrics.jsonl` text (a torn line is skipped).
pub fn parse_records(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `results.json`: where a run ended and what its last evaluation measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub run: String,
    pub method: String,
    pub dataset: String,
    /// `true` when the run stopped before `optim.epochs` (Ctrl-C).
    pub interrupted: bool,
    pub epochs: usize,
    pub epochs_planned: usize,
    pub steps: usize,
    /// Seconds of wall time over the sessions of the run (a resumed run
    /// adds its own to what the earlier session's `results.json` held).
    pub wall_time_s: f64,
    /// The epoch of the last evaluation, if any.
    pub eval_epoch: Option<usize>,
    pub knn_top1: Option<f64>,
    /// k-NN top-5 (only the weighted-cosine vote has one; the reference
    /// majority vote does not).
    pub knn_top5: Option<f64>,
    pub linear_top1: Option<f64>,
    pub linear_top5: Option<f64>,
    pub normalised_stable_rank: Option<f64>,
    pub final_loss: Option<f64>,
}

pub fn results_path(run_dir: &Path) -> PathBuf {
    run_dir.join("results.json")
}

/// The `results.json` of a run directory.
pub fn read_results(run_dir: &Path) -> Result<RunResults> {
    let path = results_path(run_dir);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not the results of a run", path.display()))
}

/// The configuration a run directory was trained with (its `config.toml`;
/// keys added since it was written take their defaults).
pub fn read_config(run_dir: &Path) -> Result<Config> {
    let path = run_dir.join("config.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        TrainError::Config(format!(
            "{}: not a run configuration: {}",
            path.display(),
            e.to_string().trim()
        ))
    })
}

/// Writes `results.json` atomically.
pub fn save_results(run_dir: &Path, r: &RunResults) -> Result<()> {
    atomic_write(&results_path(run_dir), &serde_json::to_vec_pretty(r)?)
}

/// The wall time an earlier session of this run recorded, for resumed runs.
pub fn previous_wall_time(run_dir: &Path) -> f64 {
    std::fs::read(results_path(run_dir))
        .ok()
        .and_then(|b| serde_json::from_slice::<RunResults>(&b).ok())
        .map_or(0.0, |r| r.wall_time_s)
}

/// The results of a run from its metrics: the last evaluation and the
/// last logged loss in `metrics.jsonl` (earlier sessions included).
pub fn run_results(
    run_dir: &Path,
    cfg: &Config,
    outcome: &TrainOutcome,
    wall_time_s: f64,
) -> Result<RunResults> {
    let records = read_records(run_dir)?;
    let last_eval = records.iter().rev().find_map(|r| match r {
        Record::Eval {
            epoch,
            knn_top1,
            linear_top1,
            linear_top5,
            normalised_stable_rank,
            ..
        } => Some((
            *epoch,
            *knn_top1,
            *linear_top1,
            *linear_top5,
            *normalised_stable_rank,
        )),
        _ => None,
    });
    let last_loss = records.iter().rev().find_map(|r| match r {
        Record::Step { loss, .. } => Some(*loss),
        _ => None,
    });
    Ok(RunResults {
        run: cfg.run.name.clone(),
        method: cfg.method.name().to_string(),
        dataset: cfg.data.dataset.to_string(),
        interrupted: outcome.interrupted,
        epochs: outcome.epochs_done,
        epochs_planned: cfg.optim.epochs,
        steps: outcome.steps_done,
        wall_time_s,
        eval_epoch: last_eval.map(|e| e.0),
        knn_top1: last_eval.map(|e| e.1).filter(|v| v.is_finite()),
        knn_top5: None,
        linear_top1: last_eval.and_then(|e| e.2),
        linear_top5: last_eval.and_then(|e| e.3),
        normalised_stable_rank: last_eval.map(|e| e.4),
        final_loss: outcome.last_loss.or(last_loss),
    })
}

/// The end of a session (finished, interrupted or stopped by a non-finite
/// loss): `results.json`.
pub fn finish(
    run_dir: &Path,
    cfg: &Config,
    outcome: &TrainOutcome,
    wall_time_s: f64,
) -> Result<PathBuf> {
    let r = run_results(run_dir, cfg, outcome, wall_time_s)?;
    save_results(run_dir, &r)?;
    Ok(results_path(run_dir))
}
