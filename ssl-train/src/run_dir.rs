//! A run directory: the resolved config, `metrics.jsonl` (one JSON object
//! per logged step and per evaluation), `metrics.csv` (the same records as
//! a table), TensorBoard event files (`tensorboard`), `spectrum.json`,
//! checkpoints.
//!
//! Every file that must not be half-written (config, checkpoints) goes
//! through a temporary file and a rename; `metrics.jsonl`, `metrics.csv`
//! and the event file are appended record by record and flushed, so a
//! killed run keeps every complete line. On resume the history is cut back
//! to the checkpoint ([`RunDir::truncate_after`], each file replaced
//! atomically), so a run's records after any number of resumes are the
//! uninterrupted run's, apart from timings.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, TrainError};
use crate::records::Spectrum;
use crate::tensorboard::{self, EventWriter, HistogramProto};

/// One logged record (a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
        lr: f64,
        images_per_s: f64,
    },
    Eval {
        epoch: usize,
        step: usize,
        knn_top1: f64,
        linear_top1: Option<f64>,
        linear_top5: Option<f64>,
        normalised_stable_rank: f64,
    },
}

/// The header of `metrics.csv`.
pub const CSV_HEADER: &str = "kind,epoch,step,loss,lr,images_per_s,knn_top1,linear_top1,linear_top5,normalised_stable_rank\n";

/// The line of `metrics.csv` for `record` (newline included).
pub fn csv_line(record: &Record) -> String {
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    match record {
        Record::Step {
            epoch,
            step,
            loss,
            lr,
            images_per_s,
        } => format!("step,{epoch},{step},{loss},{lr},{images_per_s},,,,\n"),
        Record::Eval {
            epoch,
            step,
            knn_top1,
            linear_top1,
            linear_top5,
            normalised_stable_rank,
        } => format!(
            "eval,{epoch},{step},,,,{knn_top1},{},{},{normalised_stable_rank}\n",
            opt(*linear_top1),
            opt(*linear_top5)
        ),
    }
}

/// The step a record was logged at.
fn step_of(record: &Record) -> usize {
    match record {
        Record::Step { step, .. } | Record::Eval { step, .. } => *step,
    }
}

/// The TensorBoard scalars of a record (accuracies as fractions, as in
/// `metrics.jsonl`).
fn scalars_of(record: &Record) -> Vec<(&'static str, f64)> {
    match record {
        Record::Step {
            loss,
            lr,
            images_per_s,
            ..
        } => vec![
            ("train/loss", *loss),
            ("train/lr", *lr),
            ("train/images_per_s", *images_per_s),
        ],
        Record::Eval {
            knn_top1,
            linear_top1,
            linear_top5,
            normalised_stable_rank,
            ..
        } => {
            let mut v = vec![("eval/knn_top1", *knn_top1)];
            v.extend(linear_top1.map(|x| ("eval/linear_top1", x)));
            v.extend(linear_top5.map(|x| ("eval/linear_top5", x)));
            v.push(("eval/normalised_stable_rank", *normalised_stable_rank));
            v
        }
    }
}

/// The TensorBoard tag of the spectrum's histogram: `log10(λ / λ_max)` of
/// the test features' covariance eigenvalues (floored at -12), so its shape
/// reads the same at any feature scale and a collapse shows as mass far
/// below 0.
pub const SPECTRUM_TAG: &str = "eval/spectrum_log10_relative_eigenvalue";

/// Buckets of the spectrum's histogram.
const SPECTRUM_BUCKETS: usize = 30;

/// The files of a run directory that the trainer appends to.
#[derive(Debug)]
struct Writers {
    jsonl: File,
    csv: File,
    /// `None` with `run.tensorboard = false`.
    events: Option<EventWriter>,
}

/// An open run directory: the trainer appends its records here.
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    /// `None` when muted.
    writers: Option<Writers>,
}

/// Writes `bytes` to `path` atomically and durably ([`ssl_files::write_atomic`]).
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(ssl_files::write_atomic(path, bytes)?)
}

/// `run.tensorboard` of a configuration's TOML text (`true` when absent).
fn tensorboard_on(config_toml: &str) -> Result<bool> {
    let table: toml::Table = toml::from_str(config_toml).map_err(|e| {
        TrainError::Config(format!(
            "the run's configuration is not valid TOML: {}",
            e.to_string().trim()
        ))
    })?;
    match table.get("run").and_then(|r| r.get("tensorboard")) {
        None => Ok(true),
        Some(toml::Value::Boolean(on)) => Ok(*on),
        Some(other) => Err(TrainError::Config(format!(
            "key run.tensorboard must be true or false, got {other}"
        ))),
    }
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

impl RunDir {
    /// Opens (creating) `path` and writes `config.toml` (`config_toml`, the
    /// resolved configuration, whose `run.tensorboard` says whether to
    /// write TensorBoard event files). A new run starts `metrics.jsonl`
    /// and `metrics.csv` afresh (and removes an earlier run's event
    /// files); a resumed one keeps every complete record of
    /// `metrics.jsonl` (a torn last line is dropped) and rebuilds
    /// `metrics.csv` from them, then appends; call
    /// [`RunDir::truncate_after`] with the checkpoint's step once it is
    /// known. Each session writes a new event file. A `muted` run
    /// directory (data-parallel ranks other than 0) writes nothing.
    pub fn open(path: &Path, config_toml: &str, resume: bool, muted: bool) -> Result<Self> {
        if muted {
            return Ok(Self {
                path: path.to_path_buf(),
                writers: None,
            });
        }
        let tensorboard = tensorboard_on(config_toml)?;
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create the run directory {}", path.display()))?;
        atomic_write(&path.join("config.toml"), config_toml.as_bytes())
            .with_context(|| format!("the run directory {} is not writable", path.display()))?;
        let records = if resume {
            let jsonl_path = path.join("metrics.jsonl");
            match fs::read_to_string(&jsonl_path) {
                Ok(text) => crate::records::parse_records(&text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", jsonl_path.display()))
                }
            }
        } else {
            tensorboard::remove_event_files(path)?;
            Vec::new()
        };
        let events = if tensorboard {
            Some(EventWriter::create(path)?)
        } else {
            None
        };
        let mut run = Self {
            path: path.to_path_buf(),
            writers: None,
        };
        run.rewrite(&records, events)?;
        Ok(run)
    }

    /// Replaces `metrics.jsonl` and `metrics.csv` atomically with
    /// `records` and opens both to append.
    fn rewrite(&mut self, records: &[Record], events: Option<EventWriter>) -> Result<()> {
        let mut jsonl = String::new();
        let mut csv = String::from(CSV_HEADER);
        for r in records {
            jsonl.push_str(&serde_json::to_string(r)?);
            jsonl.push('\n');
            csv.push_str(&csv_line(r));
        }
        let jsonl_path = self.path.join("metrics.jsonl");
        let csv_path = self.path.join("metrics.csv");
        atomic_write(&jsonl_path, jsonl.as_bytes())?;
        atomic_write(&csv_path, csv.as_bytes())?;
        self.writers = Some(Writers {
            jsonl: append(&jsonl_path)?,
            csv: append(&csv_path)?,
            events,
        });
        Ok(())
    }

    /// Drops every record logged after `step` (the step of the checkpoint
    /// a resumed run continues from) from `metrics.jsonl` and
    /// `metrics.csv`, and every event after it from the earlier sessions'
    /// TensorBoard files, each file replaced atomically; the resumed run
    /// then logs those steps once. Does nothing when muted.
    pub fn truncate_after(&mut self, step: usize) -> Result<()> {
        let Some(writers) = self.writers.as_ref() else {
            return Ok(());
        };
        let kept: Vec<Record> = crate::records::read_records(&self.path)?
            .into_iter()
            .filter(|r| step_of(r) <= step)
            .collect();
        tensorboard::truncate_after(
            &self.path,
            step,
            writers.events.as_ref().map(EventWriter::path),
        )?;
        let events = self.writers.take().and_then(|w| w.events);
        self.rewrite(&kept, events)
    }

    /// The TensorBoard event file of this session (`None` when muted or
    /// with `run.tensorboard = false`).
    pub fn event_file(&self) -> Option<&Path> {
        self.writers
            .as_ref()
            .and_then(|w| w.events.as_ref())
            .map(EventWriter::path)
    }

    /// Appends `record` to `metrics.jsonl` (flushed) and `metrics.csv`, and
    /// its scalars to the TensorBoard event file.
    pub fn log(&mut self, record: Record) -> Result<()> {
        let Some(w) = self.writers.as_mut() else {
            return Ok(());
        };
        let line = serde_json::to_string(&record)?;
        writeln!(w.jsonl, "{line}")
            .and_then(|()| w.jsonl.flush())
            .with_context(|| {
                format!("appending to {}", self.path.join("metrics.jsonl").display())
            })?;
        w.csv
            .write_all(csv_line(&record).as_bytes())
            .and_then(|()| w.csv.flush())
            .with_context(|| format!("appending to {}", self.path.join("metrics.csv").display()))?;
        if let Some(events) = w.events.as_mut() {
            events.scalars(step_of(&record), &scalars_of(&record))?;
        }
        Ok(())
    }

    /// Writes `spectrum.json` (atomically) and, in the event file, the
    /// spectrum's histogram ([`SPECTRUM_TAG`]) at `step`. Does nothing
    /// when muted.
    pub fn save_spectrum(&mut self, step: usize, spectrum: &Spectrum) -> Result<()> {
        let Some(w) = self.writers.as_mut() else {
            return Ok(());
        };
        crate::records::save_spectrum(&self.path, spectrum)?;
        if let Some(events) = w.events.as_mut() {
            let top = spectrum
                .covariance_eigenvalues
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max);
            if top > 0.0 {
                let relative: Vec<f64> = spectrum
                    .covariance_eigenvalues
                    .iter()
                    .map(|&v| (v / top).max(1e-12).log10())
                    .collect();
                if let Some(h) = HistogramProto::of(&relative, SPECTRUM_BUCKETS) {
                    events.histogram(step, SPECTRUM_TAG, h)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::{event_files, read_events};

    const CONFIG: &str = "[run]\nname = \"t\"\n";

    /// The records a run of 10 steps logs: a step record each, an
    /// evaluation at steps 4 and 8 (the epoch ends).
    fn history() -> Vec<Record> {
        let mut out = Vec::new();
        for step in 1..=10usize {
            out.push(Record::Step {
                epoch: (step - 1) / 4,
                step,
                loss: 1.6 - 0.04 * step as f64,
                lr: 1e-3 * step as f64,
                images_per_s: 100.0 + step as f64,
            });
            if step % 4 == 0 {
                out.push(Record::Eval {
                    epoch: step / 4,
                    step,
                    knn_top1: 0.1 * step as f64,
                    linear_top1: (step == 8).then_some(0.5),
                    linear_top5: None,
                    normalised_stable_rank: 0.25,
                });
            }
        }
        out
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap()
    }

    /// `train/loss` over every event file of `dir`, in file order.
    fn tensorboard_losses(dir: &Path) -> Vec<(i64, f32)> {
        let mut out = Vec::new();
        for f in event_files(dir).unwrap() {
            for e in read_events(&f).unwrap() {
                for v in e.summary.iter().flat_map(|s| &s.value) {
                    if v.tag == "train/loss" {
                        out.push((e.step, v.simple_value.unwrap()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn resumes_cut_the_history_back_to_the_checkpoint() {
        let scratch = test_support::scratch_dir();
        let straight = scratch.path().join("straight");
        let resumed = scratch.path().join("resumed");
        let all = history();
        let mut run = RunDir::open(&straight, CONFIG, false, false).unwrap();
        for r in &all {
            run.log(r.clone()).unwrap();
        }
        drop(run);

        // Killed after step 7 with a torn line; the checkpoint is at step 5
        // (mid-epoch). Then killed after step 9, checkpoint at 8 (epoch end,
        // its evaluation logged).
        let upto = |last: usize| all.iter().filter(move |r| step_of(r) <= last);
        let after = |first: usize| all.iter().filter(move |r| step_of(r) > first);
        let mut run = RunDir::open(&resumed, CONFIG, false, false).unwrap();
        for r in upto(7) {
            run.log(r.clone()).unwrap();
        }
        drop(run);
        let mut jsonl = OpenOptions::new()
            .append(true)
            .open(resumed.join("metrics.jsonl"))
            .unwrap();
        jsonl.write_all(b"{\"kind\":\"step\",\"epo").unwrap();
        drop(jsonl);
        let mut run = RunDir::open(&resumed, CONFIG, true, false).unwrap();
        run.truncate_after(5).unwrap();
        let kept = crate::records::read_records(&resumed).unwrap();
        assert_eq!(kept, upto(5).cloned().collect::<Vec<_>>());
        for r in after(5).filter(|r| step_of(r) <= 9) {
            run.log(r.clone()).unwrap();
        }
        drop(run);
        let mut run = RunDir::open(&resumed, CONFIG, true, false).unwrap();
        run.truncate_after(8).unwrap();
        for r in after(8) {
            run.log(r.clone()).unwrap();
        }
        drop(run);

        for file in ["metrics.jsonl", "metrics.csv"] {
            assert_eq!(read(&resumed, file), read(&straight, file), "{file}");
        }
        assert_eq!(crate::records::read_records(&resumed).unwrap(), all);
        assert!(read(&straight, "metrics.csv").starts_with(CSV_HEADER));
        assert_eq!(
            read(&straight, "metrics.csv").lines().count(),
            1 + all.len()
        );
        // TensorBoard: three files (one per session), each step once.
        assert_eq!(event_files(&resumed).unwrap().len(), 3);
        let losses = tensorboard_losses(&resumed);
        assert_eq!(losses, tensorboard_losses(&straight));
        assert_eq!(
            losses.iter().map(|l| l.0).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        // A new run in the same directory starts every file afresh.
        let mut run = RunDir::open(&resumed, CONFIG, false, false).unwrap();
        run.log(all[0].clone()).unwrap();
        assert_eq!(read(&resumed, "metrics.csv").lines().count(), 2);
        assert_eq!(event_files(&resumed).unwrap().len(), 1);
    }

    #[test]
    fn muted_and_untracked_run_directories() {
        let scratch = test_support::scratch_dir();
        let muted = scratch.path().join("muted");
        let mut run = RunDir::open(&muted, CONFIG, false, true).unwrap();
        run.log(history()[0].clone()).unwrap();
        run.truncate_after(0).unwrap();
        assert!(!muted.exists() && run.event_file().is_none());

        let off = scratch.path().join("off");
        let config = "[run]\nname = \"t\"\ntensorboard = false\n";
        let mut run = RunDir::open(&off, config, false, false).unwrap();
        run.log(history()[0].clone()).unwrap();
        assert!(run.event_file().is_none());
        assert!(event_files(&off).unwrap().is_empty());
        assert_eq!(read(&off, "metrics.jsonl").lines().count(), 1);

        let bad = "[run]\ntensorboard = \"yes\"\n";
        let err = RunDir::open(&off, bad, false, false).unwrap_err();
        assert!(err.to_string().contains("run.tensorboard"), "{err}");
    }

    /// What TensorBoard's own reader (the `tensorboard` package's
    /// EventAccumulator) returns from the event files, as JSON.
    const READ_BACK: &str = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "histograms": {t: [{"step": e.step, "min": e.histogram_value.min,
                        "max": e.histogram_value.max, "num": e.histogram_value.num,
                        "bucket": list(e.histogram_value.bucket)}
                       for e in acc.Histograms(t)] for t in tags["histograms"]},
}))
"#;

    #[test]
    fn tensorboard_reads_the_scalars_and_the_spectrum() {
        let scratch = test_support::scratch_dir();
        let dir = scratch.path().join("run");
        let all = history();
        let mut run = RunDir::open(&dir, CONFIG, false, false).unwrap();
        for r in all.iter().filter(|r| step_of(r) <= 6) {
            run.log(r.clone()).unwrap();
        }
        // A resumed session from step 4: two files, each step once.
        drop(run);
        let mut run = RunDir::open(&dir, CONFIG, true, false).unwrap();
        run.truncate_after(4).unwrap();
        for r in all.iter().filter(|r| step_of(r) > 4) {
            run.log(r.clone()).unwrap();
        }
        let eigenvalues = [4.0, 1.0, 0.4, 0.04, 0.004, 0.0];
        run.save_spectrum(
            8,
            &Spectrum {
                epoch: 2,
                representation: "encoder".into(),
                singular_values: vec![2.0, 1.0, 0.6, 0.2, 0.06, 0.0],
                covariance_eigenvalues: eigenvalues.to_vec(),
            },
        )
        .unwrap();
        drop(run);
        let out = test_support::run_python(READ_BACK, &[dir.to_str().unwrap()]);
        let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();

        let mut expected: std::collections::BTreeMap<&str, Vec<(i64, f64)>> = Default::default();
        for r in &all {
            for (tag, v) in scalars_of(r) {
                expected
                    .entry(tag)
                    .or_default()
                    .push((step_of(r) as i64, f64::from(v as f32)));
            }
        }
        let scalars = got["scalars"].as_object().unwrap();
        let mut tags: Vec<&str> = scalars.keys().map(String::as_str).collect();
        tags.sort_unstable();
        assert_eq!(
            tags,
            [
                "eval/knn_top1",
                "eval/linear_top1",
                "eval/normalised_stable_rank",
                "train/images_per_s",
                "train/loss",
                "train/lr"
            ]
        );
        for (tag, want) in &expected {
            let have: Vec<(i64, f64)> = scalars[*tag]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            assert_eq!(&have, want, "{tag}");
        }
        let h = &got["histograms"][SPECTRUM_TAG];
        assert_eq!(h.as_array().unwrap().len(), 1, "{got}");
        assert_eq!(h[0]["step"], 8);
        assert_eq!(h[0]["num"], 6.0);
        assert_eq!(h[0]["max"], 0.0);
        assert_eq!(h[0]["min"], -12.0);
        let counted: f64 = h[0]["bucket"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_f64().unwrap())
            .sum();
        assert_eq!(counted, 6.0);
        assert!(dir.join("spectrum.json").exists());
    }
}
