//! A run directory: the resolved config, `metrics.jsonl` (one JSON object
//! per logged step and per evaluation), `metrics.csv`, checkpoints.
//!
//! Every file that must not be half-written (config, checkpoints, the CSV)
//! goes through a temporary file and a rename; `metrics.jsonl` is appended
//! line by line and flushed, so a killed run keeps every complete line.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};

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

/// An open run directory: the trainer appends its records here.
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    /// `None` when muted.
    jsonl: Option<File>,
    records: Vec<Record>,
}

/// Writes `bytes` to `path` atomically and durably ([`ssl_files::write_atomic`]).
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(ssl_files::write_atomic(path, bytes)?)
}

impl RunDir {
    /// Opens (creating) `path`, writes `config.toml`, and appends to an
    /// existing `metrics.jsonl` when resuming. A `muted` run directory
    /// (data-parallel ranks other than 0) writes nothing.
    pub fn open(path: &Path, config_toml: &str, resume: bool, muted: bool) -> Result<Self> {
        if muted {
            return Ok(Self {
                path: path.to_path_buf(),
                jsonl: None,
                records: Vec::new(),
            });
        }
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create the run directory {}", path.display()))?;
        atomic_write(&path.join("config.toml"), config_toml.as_bytes())
            .with_context(|| format!("the run directory {} is not writable", path.display()))?;
        let jsonl_path = path.join("metrics.jsonl");
        let jsonl_file = OpenOptions::new()
            .create(true)
            .append(resume)
            .write(true)
            .truncate(!resume)
            .open(&jsonl_path)
            .with_context(|| format!("opening {}", jsonl_path.display()))?;
        let jsonl = Some(jsonl_file);
        // On resume the CSV is rebuilt from every complete earlier line.
        let records = if resume {
            crate::records::parse_records(&fs::read_to_string(&jsonl_path).unwrap_or_default())
        } else {
            Vec::new()
        };
        Ok(Self {
            path: path.to_path_buf(),
            jsonl,
            records,
        })
    }

    /// Appends `record` to `metrics.jsonl` (flushed) and rewrites `metrics.csv`.
    pub fn log(&mut self, record: Record) -> Result<()> {
        let Some(jsonl) = self.jsonl.as_mut() else {
            return Ok(());
        };
        let line = serde_json::to_string(&record)?;
        writeln!(jsonl, "{line}")?;
        jsonl.flush()?;
        self.records.push(record);
        self.write_csv()
    }

    fn write_csv(&self) -> Result<()> {
        let mut csv = String::from("kind,epoch,step,loss,lr,images_per_s,knn_top1,linear_top1,linear_top5,normalised_stable_rank\n");
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        for r in &self.records {
            match r {
                Record::Step {
                    epoch,
                    step,
                    loss,
                    lr,
                    images_per_s,
                } => csv.push_str(&format!(
                    "step,{epoch},{step},{loss},{lr},{images_per_s},,,,\n"
                )),
                Record::Eval {
                    epoch,
                    step,
                    knn_top1,
                    linear_top1,
                    linear_top5,
                    normalised_stable_rank,
                } => csv.push_str(&format!(
                    "eval,{epoch},{step},,,,{knn_top1},{},{},{normalised_stable_rank}\n",
                    opt(*linear_top1),
                    opt(*linear_top5)
                )),
            }
        }
        atomic_write(&self.path.join("metrics.csv"), csv.as_bytes())
    }
}
