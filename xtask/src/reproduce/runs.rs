//! One preset row as an `ssl train` job: its run directory, its command,
//! whether it is finished, and what its `metrics.jsonl` says.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};

/// What a preset file says about the cost of its run (the keys it omits
/// take `ssl config show`'s defaults: 2 views, batch 512, ResNet-18 and
/// 1000 epochs; ImageNet: ResNet-50 and 100 epochs).
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub method: String,
    pub epochs: usize,
    pub views: usize,
    pub batch_size: usize,
    pub arch: String,
    pub dataset: String,
}

impl Preset {
    pub fn read(path: &Path, dataset: &str) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: toml::Value =
            toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
        let get = |t: &str, k: &str| v.get(t).and_then(|t| t.get(k));
        let int = |t: &str, k: &str, d: usize| {
            get(t, k)
                .and_then(toml::Value::as_integer)
                .map_or(d, |x| x as usize)
        };
        let imagenet = dataset == "imagenet";
        let row = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name: format!("{dataset}/{row}"),
            method: get("method", "name")
                .and_then(toml::Value::as_str)
                .unwrap_or("cw-rgp")
                .to_string(),
            epochs: int("optim", "epochs", if imagenet { 100 } else { 1000 }),
            views: int("data", "views", 2),
            batch_size: int("data", "batch_size", 512),
            arch: get("model", "arch")
                .and_then(toml::Value::as_str)
                .unwrap_or(if imagenet { "resnet50" } else { "resnet18" })
                .to_string(),
            dataset: dataset.to_string(),
        })
    }
}

/// One `ssl train` run of a preset row.
#[derive(Debug, Clone)]
pub struct Job {
    pub preset: Preset,
    pub dataset: String,
    pub row: String,
    /// `run.name`: the row, with the epochs scale when not 1 (`cw-rgp-4-x0.1`).
    pub name: String,
    pub run_dir: PathBuf,
    /// `data.path` (empty: the preset's own).
    pub data: PathBuf,
    pub epochs: usize,
    /// Every `--set`, in order.
    pub overrides: Vec<String>,
    pub device: Option<String>,
    pub log: PathBuf,
}

impl Job {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        preset: &Preset,
        dataset: &str,
        row: &str,
        out: &Path,
        data: &Path,
        epochs_scale: f64,
        smoke: bool,
        device: Option<&str>,
    ) -> Self {
        let epochs = if smoke {
            1
        } else {
            ((preset.epochs as f64 * epochs_scale).round() as usize).max(1)
        };
        let name = if smoke || epochs_scale == 1.0 {
            row.to_string()
        } else {
            format!("{row}-x{epochs_scale}")
        };
        let out_dir = out.join("runs").join(dataset);
        let mut overrides = Vec::new();
        if smoke {
            overrides.extend(super::smoke::overrides(&preset.method, dataset));
        }
        overrides.push(format!("run.out_dir={}", out_dir.display()));
        overrides.push(format!("run.name={name}"));
        if !data.as_os_str().is_empty() {
            overrides.push(format!("data.path={}", data.display()));
        }
        overrides.push(format!("optim.epochs={epochs}"));
        if dataset == "imagenet" {
            // Table 2's linear classification is `ssl eval`'s ImageNet
            // protocol; the trainer's feature probe would hold 1.28 M
            // features in memory at every evaluation.
            overrides.push("eval.linear=false".to_string());
        }
        let device = match (device, smoke) {
            (Some(d), _) => Some(d.to_string()),
            (None, true) => Some("cpu".to_string()),
            (None, false) => None,
        };
        Self {
            preset: preset.clone(),
            dataset: dataset.to_string(),
            row: row.to_string(),
            run_dir: out_dir.join(&name),
            log: out.join("logs").join(format!("{dataset}-{name}.log")),
            name,
            data: data.to_path_buf(),
            epochs,
            overrides,
            device,
        }
    }

    /// The arguments after the binary.
    pub fn args(&self, resume: bool) -> Vec<String> {
        let mut a = vec!["train".to_string(), self.preset.name.clone()];
        for o in &self.overrides {
            a.push("--set".into());
            a.push(o.clone());
        }
        if let Some(d) = &self.device {
            a.push("--device".into());
            a.push(d.clone());
        }
        if resume {
            a.push("--resume".into());
        }
        a
    }

    /// The command as a shell line (what `--dry-run` prints).
    pub fn command_line(&self, ssl: &str) -> String {
        std::iter::once(ssl.to_string())
            .chain(self.args(false))
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `{"kind":"eval",...}` line of `metrics.jsonl` (accuracies in [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eval {
    pub epoch: usize,
    pub knn_top1: f64,
    pub linear_top1: Option<f64>,
    pub linear_top5: Option<f64>,
    pub normalised_stable_rank: Option<f64>,
}

/// Every complete evaluation record of a `metrics.jsonl` text (step
/// records and a torn last line are ignored).
pub fn eval_records(jsonl: &str) -> Vec<Eval> {
    jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("eval"))
        .filter_map(|v| {
            Some(Eval {
                epoch: v.get("epoch")?.as_u64()? as usize,
                knn_top1: v.get("knn_top1")?.as_f64()?,
                linear_top1: v.get("linear_top1").and_then(|x| x.as_f64()),
                linear_top5: v.get("linear_top5").and_then(|x| x.as_f64()),
                normalised_stable_rank: v.get("normalised_stable_rank").and_then(|x| x.as_f64()),
            })
        })
        .collect()
}

/// Where a run directory stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// An evaluation at the configured last epoch.
    Finished(Eval),
    /// A checkpoint to continue from.
    Resumable,
    /// Nothing usable: start afresh.
    Fresh,
}

/// The configured last epoch of a run directory: its `config.toml`'s
/// `optim.epochs` (what the run was started with), else `fallback`.
fn configured_epochs(run_dir: &Path, fallback: usize) -> usize {
    fs::read_to_string(run_dir.join("config.toml"))
        .ok()
        .and_then(|t| toml::from_str::<toml::Value>(&t).ok())
        .and_then(|v| v.get("optim")?.get("epochs")?.as_integer())
        .map_or(fallback, |e| e as usize)
}

pub fn status(run_dir: &Path, epochs: usize) -> Status {
    let last = configured_epochs(run_dir, epochs);
    let evals = fs::read_to_string(run_dir.join("metrics.jsonl"))
        .map(|t| eval_records(&t))
        .unwrap_or_default();
    if let Some(e) = evals.iter().rev().find(|e| e.epoch == last) {
        return Status::Finished(*e);
    }
    if run_dir.join("checkpoint.safetensors").is_file() {
        Status::Resumable
    } else {
        Status::Fresh
    }
}

/// The file Table 2's ImageNet linear evaluation writes in a run directory.
pub const LINEAR_EVAL_JSON: &str = "linear_eval.json";

/// What became of a job.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub job: Job,
    /// The final evaluation (None: not finished).
    pub eval: Option<Eval>,
    pub failure: Option<String>,
    pub seconds: f64,
}

/// Runs every job not yet finished, one after the other; a failing row is
/// reported and the others still run. `quiet`: the output of `ssl` goes to
/// the row's log file only (the smoke run); otherwise it is shown too.
pub fn run_all(root: &Path, ssl: &Path, jobs: &[Job], quiet: bool) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let tag = format!("[{}/{}] {}/{}", i + 1, jobs.len(), job.dataset, job.name);
        let started = Instant::now();
        let st = status(&job.run_dir, job.epochs);
        if let Status::Finished(e) = st {
            eprintln!("reproduce | {tag}: finished earlier, skipped");
            outcomes.push(Outcome {
                job: job.clone(),
                eval: Some(e),
                failure: None,
                seconds: 0.0,
            });
            continue;
        }
        let resume = st == Status::Resumable;
        let mut cmd = Command::new(ssl);
        cmd.args(job.args(resume)).current_dir(root);
        eprintln!(
            "reproduce | {tag}: {}{}",
            if resume { "resuming: " } else { "" },
            display_command(&cmd)
        );
        let failure = match run_logged(&mut cmd, &job.log, quiet) {
            Ok(()) => match status(&job.run_dir, job.epochs) {
                Status::Finished(_) => None,
                _ => Some(format!(
                    "ssl train ended without an evaluation at epoch {} in {}{}",
                    job.epochs,
                    job.run_dir.join("metrics.jsonl").display(),
                    if resume {
                        " (a run stopped during its final evaluation has a checkpoint at the \
                         last epoch and nothing left to train: remove its run directory to \
                         start it again)"
                    } else {
                        ""
                    }
                )),
            },
            Err(e) => Some(format!("{e:#}")),
        };
        let eval = match status(&job.run_dir, job.epochs) {
            Status::Finished(e) => Some(e),
            _ => None,
        };
        let seconds = started.elapsed().as_secs_f64();
        match &failure {
            None => eprintln!("reproduce | {tag}: done in {seconds:.1} s"),
            Some(f) => {
                eprintln!("reproduce | {tag}: FAILED: {f}");
                if let Ok(log) = fs::read_to_string(&job.log) {
                    let lines: Vec<&str> = log.lines().collect();
                    for l in &lines[lines.len().saturating_sub(15)..] {
                        eprintln!("    {l}");
                    }
                }
            }
        }
        outcomes.push(Outcome {
            job: job.clone(),
            eval,
            failure,
            seconds,
        });
    }
    Ok(outcomes)
}

/// Runs `cmd` with its stdout and stderr appended to `log` (and, unless
/// `quiet`, echoed to ours as well, line by line).
fn run_logged(cmd: &mut Command, log: &Path, quiet: bool) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", display_command(cmd)))?;
    let pump = |stream: Box<dyn std::io::Read + Send>, mut file: fs::File, to_stderr: bool| {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if !quiet {
                    if to_stderr {
                        eprintln!("{line}");
                    } else {
                        println!("{line}");
                    }
                }
            }
        })
    };
    let out = pump(
        Box::new(child.stdout.take().expect("piped")),
        file.try_clone()?,
        false,
    );
    let err = pump(Box::new(child.stderr.take().expect("piped")), file, true);
    let status = child.wait().context("waiting for ssl")?;
    let _ = out.join();
    let _ = err.join();
    if !status.success() {
        anyhow::bail!("ssl exited with {status} (log: {})", log.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_means_an_eval_at_the_configured_last_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        assert_eq!(status(run, 10), Status::Fresh);
        fs::write(run.join("config.toml"), "[optim]\nepochs = 20\n").unwrap();
        fs::write(run.join("checkpoint.safetensors"), b"x").unwrap();
        let mut jsonl = String::from(
            r#"{"kind":"step","epoch":0,"step":1,"loss":1.0,"lr":0.1,"images_per_s":5.0}
{"kind":"eval","epoch":10,"step":40,"knn_top1":0.5,"linear_top1":0.6,"linear_top5":0.9,"normalised_stable_rank":0.3}
"#,
        );
        fs::write(run.join("metrics.jsonl"), &jsonl).unwrap();
        // An eval at epoch 10 of a 20-epoch run (config.toml wins over the fallback).
        assert_eq!(status(run, 10), Status::Resumable);
        jsonl.push_str(
            r#"{"kind":"eval","epoch":20,"step":80,"knn_top1":0.7,"linear_top1":null,"linear_top5":null,"normalised_stable_rank":0.4}
{"kind":"eval","epo"#,
        );
        fs::write(run.join("metrics.jsonl"), &jsonl).unwrap();
        match status(run, 10) {
            Status::Finished(e) => {
                assert_eq!(e.epoch, 20);
                assert_eq!(e.knn_top1, 0.7);
                assert_eq!(e.linear_top1, None);
            }
            other => panic!("expected finished, got {other:?}"),
        }
    }

    #[test]
    fn presets_read_with_defaults_and_jobs_scale_epochs() {
        let root = crate::project_root();
        let p = Preset::read(&root.join("configs/cifar10/cw-rgp-4.toml"), "cifar10").unwrap();
        assert_eq!((p.epochs, p.views, p.batch_size), (1000, 4, 256));
        assert_eq!((p.method.as_str(), p.arch.as_str()), ("cw-rgp", "resnet18"));
        let j = Job::new(
            &p,
            "cifar10",
            "cw-rgp-4",
            Path::new("/r"),
            Path::new("/d"),
            0.0004,
            false,
            Some("cuda"),
        );
        assert_eq!(j.epochs, 1);
        assert_eq!(j.run_dir, Path::new("/r/runs/cifar10/cw-rgp-4-x0.0004"));
        let line = j.command_line("ssl");
        assert!(
            line.starts_with("ssl train cifar10/cw-rgp-4 --set run.out_dir=/r/runs/cifar10"),
            "{line}"
        );
        assert!(line.contains("--set data.path=/d --set optim.epochs=1 --device cuda"));
        assert!(j.args(true).ends_with(&["--resume".to_string()]));
    }
}
