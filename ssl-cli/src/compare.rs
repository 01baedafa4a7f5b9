//! `ssl compare RUN... --out DIR`: several runs side by side, the point of
//! the paper's tables. Into `DIR`:
//!
//! - `loss.svg`/`.png`: every run's training loss (EMA-smoothed, log
//!   scale) against epochs (against steps when a run's steps per epoch
//!   cannot be told from its records);
//! - `accuracy.svg`/`.png`: every run's k-NN (and linear, where evaluated)
//!   top-1 against epochs;
//! - `comparison.md` and `comparison.csv`: per run its method, the
//!   settings that differ from the reference defaults of its dataset
//!   (the method's own defaults for its keys), epochs, final k-NN / linear
//!   top-1, normalised stable rank, final loss and wall time.
//!
//! Everything is read through ssl-train's readers of a run directory
//! (`config.toml`, `metrics.jsonl`, `results.json`); a run still going (or
//! killed) has no `results.json` yet, and its numbers come from its last
//! evaluation. Runs on different datasets are refused unless
//! `--allow-mixed-datasets`: their accuracies do not compare.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ssl_train::{read_config, read_records, read_results, Config, Record, RunResults};

use crate::plot::{LineChart, Series};
use crate::report::smooth;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run directories (runs/<name>).
    #[arg(required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Where the plots and the table go (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Compare runs trained on different datasets.
    #[arg(long)]
    pub allow_mixed_datasets: bool,
}

/// One run as the comparison sees it.
#[derive(Debug)]
struct Run {
    label: String,
    path: PathBuf,
    cfg: Config,
    records: Vec<Record>,
    results: Option<RunResults>,
}

/// The final numbers of a run: `results.json`, else its last records.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    epochs: usize,
    epochs_planned: usize,
    interrupted: bool,
    steps: usize,
    knn_top1: Option<f64>,
    linear_top1: Option<f64>,
    normalised_stable_rank: Option<f64>,
    final_loss: Option<f64>,
    wall_time_s: Option<f64>,
}

impl Run {
    fn read(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            bail!("{}: no such run directory", path.display());
        }
        let cfg = read_config(path)?;
        let records = read_records(path)?;
        let results = if ssl_train::records::results_path(path).exists() {
            Some(read_results(path)?)
        } else {
            None
        };
        Ok(Self {
            label: cfg.run.name.clone(),
            path: path.to_path_buf(),
            cfg,
            records,
            results,
        })
    }

    /// Step records, one per step (the latest where an older run logged
    /// a step twice).
    fn losses(&self) -> Vec<(usize, f64)> {
        let mut by_step = BTreeMap::new();
        for r in &self.records {
            if let Record::Step { step, loss, .. } = r {
                by_step.insert(*step, *loss);
            }
        }
        by_step.into_iter().collect()
    }

    /// `(epoch, k-NN, linear)` of every evaluation, the latest per epoch.
    fn evaluations(&self) -> Vec<(usize, f64, Option<f64>)> {
        let mut by_epoch = BTreeMap::new();
        for r in &self.records {
            if let Record::Eval {
                epoch,
                knn_top1,
                linear_top1,
                ..
            } = r
            {
                by_epoch.insert(*epoch, (*knn_top1, *linear_top1));
            }
        }
        by_epoch.into_iter().map(|(e, (k, l))| (e, k, l)).collect()
    }

    /// Optimiser steps per epoch, from `results.json` or an evaluation
    /// (evaluations run at epoch ends).
    fn steps_per_epoch(&self) -> Option<f64> {
        if let Some(r) = &self.results {
            if r.epochs > 0 && r.steps > 0 {
                return Some(r.steps as f64 / r.epochs as f64);
            }
        }
        self.records.iter().find_map(|r| match r {
            Record::Eval { epoch, step, .. } if *epoch > 0 && *step > 0 => {
                Some(*step as f64 / *epoch as f64)
            }
            _ => None,
        })
    }

    fn summary(&self) -> Summary {
        if let Some(r) = &self.results {
            return Summary {
                epochs: r.epochs,
                epochs_planned: r.epochs_planned,
                interrupted: r.interrupted,
                steps: r.steps,
                knn_top1: r.knn_top1,
                linear_top1: r.linear_top1,
                normalised_stable_rank: r.normalised_stable_rank,
                final_loss: r.final_loss,
                wall_time_s: Some(r.wall_time_s),
            };
        }
        let last_eval = self.records.iter().rev().find_map(|r| match r {
            Record::Eval {
                knn_top1,
                linear_top1,
                normalised_stable_rank,
                ..
            } => Some((*knn_top1, *linear_top1, *normalised_stable_rank)),
            _ => None,
        });
        let losses = self.losses();
        let steps = self
            .records
            .iter()
            .map(|r| match r {
                Record::Step { step, .. } | Record::Eval { step, .. } => *step,
            })
            .max()
            .unwrap_or(0);
        let epochs = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Eval { epoch, .. } => Some(*epoch),
                Record::Step { .. } => None,
            })
            .max()
            .or_else(|| {
                let spe = self.steps_per_epoch()?;
                Some((steps as f64 / spe).floor() as usize)
            })
            .unwrap_or(0);
        Summary {
            epochs,
            epochs_planned: self.cfg.optim.epochs,
            interrupted: true,
            steps,
            knn_top1: last_eval.map(|e| e.0).filter(|v| v.is_finite()),
            linear_top1: last_eval.and_then(|e| e.1),
            normalised_stable_rank: last_eval.map(|e| e.2),
            final_loss: losses.last().map(|l| l.1),
            wall_time_s: None,
        }
    }
}

/// `key=value` for every training setting of `cfg` that differs from the
/// reference defaults of its dataset (method keys: from the method's own
/// defaults); run identity, data location, workers and evaluation
/// settings are left out.
fn key_settings(cfg: &Config) -> Result<Vec<String>> {
    let mut reference = Config::defaults_for(cfg.data.dataset);
    reference.method = ssl_train::Method::from_name(cfg.method.name())?;
    let flat = |c: &Config| -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        flatten("", &toml::Value::try_from(c)?, &mut out);
        Ok(out)
    };
    let (mine, theirs) = (flat(cfg)?, flat(&reference)?);
    let skipped = |k: &str| {
        k.starts_with("run.")
            || k.starts_with("eval.")
            || matches!(
                k,
                "data.path" | "data.workers" | "data.dataset" | "method.name"
            )
    };
    Ok(mine
        .into_iter()
        .filter(|(k, v)| !skipped(k) && theirs.get(k) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect())
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `1h 02m`, `3m 05s`, `12.3s`.
fn duration(s: f64) -> String {
    if s >= 3600.0 {
        format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let mut runs = args
        .runs
        .iter()
        .map(|p| Run::read(p))
        .collect::<Result<Vec<_>>>()?;
    // Runs of the same name (from different out_dirs) go by their paths.
    let names: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    for r in &mut runs {
        if names.iter().filter(|n| **n == r.label).count() > 1 {
            r.label = r.path.display().to_string();
        }
    }
    let datasets: Vec<String> = runs
        .iter()
        .map(|r| r.cfg.data.dataset.to_string())
        .collect();
    if !args.allow_mixed_datasets && datasets.iter().any(|d| *d != datasets[0]) {
        let which: Vec<String> = runs
            .iter()
            .zip(&datasets)
            .map(|(r, d)| format!("{} ({d})", r.label))
            .collect();
        bail!(
            "the runs were trained on different datasets: {}; their accuracies do not compare \
             (pass --allow-mixed-datasets to compare them anyway)",
            which.join(", ")
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut written = Vec::new();

    // Loss: against epochs when every run's steps per epoch is known.
    let per_epoch: Option<Vec<f64>> = runs.iter().map(Run::steps_per_epoch).collect();
    let x_label = if per_epoch.is_some() { "epoch" } else { "step" };
    let mut loss_chart =
        LineChart::new("Training loss (EMA-smoothed)", x_label, "loss").log_y(true);
    for (i, r) in runs.iter().enumerate() {
        let losses = r.losses();
        if losses.is_empty() {
            continue;
        }
        let scale = per_epoch.as_ref().map_or(1.0, |s| s[i]);
        let points: Vec<(f64, f64)> = losses.iter().map(|&(s, l)| (s as f64 / scale, l)).collect();
        let beta = if points.len() > 200 { 0.98 } else { 0.9 };
        loss_chart = loss_chart.series(Series::new(r.label.clone(), smooth(&points, beta)));
    }
    if loss_chart.series.is_empty() {
        println!("compare | no run has logged a loss: no loss plot");
    } else {
        written.extend(loss_chart.write(&args.out.join("loss"))?);
    }

    // Accuracy: k-NN for every run, linear where it was evaluated.
    let mut acc_chart =
        LineChart::new("Evaluation (test split)", "epoch", "top-1 accuracy (%)").markers(true);
    for r in &runs {
        let evals = r.evaluations();
        let knn: Vec<(f64, f64)> = evals
            .iter()
            .filter(|e| e.1.is_finite())
            .map(|&(e, k, _)| (e as f64, 100.0 * k))
            .collect();
        let linear: Vec<(f64, f64)> = evals
            .iter()
            .filter_map(|&(e, _, l)| l.map(|l| (e as f64, 100.0 * l)))
            .collect();
        if !knn.is_empty() {
            acc_chart = acc_chart.series(Series::new(format!("{} k-NN", r.label), knn));
        }
        if !linear.is_empty() {
            acc_chart = acc_chart.series(Series::new(format!("{} linear", r.label), linear));
        }
    }
    if acc_chart.series.is_empty() {
        println!("compare | no run has an evaluation: no accuracy plot");
    } else {
        written.extend(acc_chart.write(&args.out.join("accuracy"))?);
    }

    // The table.
    let mut md = String::from(
        "| run | method | dataset | settings | epochs | k-NN top-1 (%) | linear top-1 (%) \
         | stable rank (normalised) | final loss | wall time |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut csv = String::from(
        "run,path,method,dataset,settings,epochs,epochs_planned,interrupted,steps,knn_top1,\
         linear_top1,normalised_stable_rank,final_loss,wall_time_s\n",
    );
    for r in &runs {
        let s = r.summary();
        let settings = key_settings(&r.cfg)?.join(" ");
        let method = r.cfg.method.name();
        let dataset = r.cfg.data.dataset.to_string();
        let epochs = format!(
            "{}/{}{}",
            s.epochs,
            s.epochs_planned,
            if s.interrupted { " (stopped)" } else { "" }
        );
        let _ = writeln!(
            md,
            "| {} | {method} | {dataset} | {} | {epochs} | {} | {} | {} | {} | {} |",
            r.label.replace('|', "\\|"),
            if settings.is_empty() {
                "defaults".to_string()
            } else {
                format!("`{settings}`")
            },
            percent(s.knn_top1),
            percent(s.linear_top1),
            s.normalised_stable_rank
                .map_or_else(|| "–".into(), |v| format!("{v:.3}")),
            s.final_loss
                .map_or_else(|| "–".into(), |v| format!("{v:.4}")),
            s.wall_time_s.map_or_else(|| "–".into(), duration),
        );
        let fields = [
            csv_field(&r.label),
            csv_field(&r.path.display().to_string()),
            method.to_string(),
            dataset,
            csv_field(&settings),
            s.epochs.to_string(),
            s.epochs_planned.to_string(),
            s.interrupted.to_string(),
            s.steps.to_string(),
            opt(s.knn_top1),
            opt(s.linear_top1),
            opt(s.normalised_stable_rank),
            opt(s.final_loss),
            opt(s.wall_time_s),
        ];
        csv.push_str(&fields.join(","));
        csv.push('\n');
    }
    let md_path = args.out.join("comparison.md");
    let csv_path = args.out.join("comparison.csv");
    ssl_files::write_atomic(&md_path, md.as_bytes())
        .with_context(|| format!("writing {}", md_path.display()))?;
    ssl_files::write_atomic(&csv_path, csv.as_bytes())
        .with_context(|| format!("writing {}", csv_path.display()))?;
    written.extend([md_path, csv_path]);
    print!("{md}");
    for f in &written {
        println!("compare | wrote {}", f.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_what_differs_from_the_reference() {
        let set = |k: &str, v: &str| ssl_train::Override::new(k, v);
        let cfg = Config::resolve(
            None,
            &[
                set("data.dataset", "stl10"),
                set("method.name", "cw-rgp"),
                set("method.groups", "2"),
                set("data.batch_size", "256"),
                set("run.name", "x"),
                set("eval.every", "3"),
            ],
        )
        .unwrap();
        assert_eq!(
            key_settings(&cfg).unwrap(),
            ["data.batch_size=256", "method.groups=2"]
        );
        let cfg = Config::resolve(None, &[set("method.name", "byol")]).unwrap();
        assert!(key_settings(&cfg).unwrap().is_empty());
    }

    #[test]
    fn table_cells() {
        assert_eq!(duration(12.34), "12.3s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3720.0), "1h 02m");
        assert_eq!(csv_field("a b"), "a b");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(percent(Some(0.8765)), "87.65");
        assert_eq!(percent(None), "–");
    }
}
