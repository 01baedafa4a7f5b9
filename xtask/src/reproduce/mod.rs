//! `cargo xtask reproduce`: the paper's tables, one command each.
//!
//! xtask never links libtorch, so it drives the `ssl` binary as a
//! subprocess: `ssl train PRESET --set run.out_dir=… --set run.name=…
//! --set data.path=… --set optim.epochs=…` for every row of Table 1
//! (`configs/<dataset>/<row>.toml`) or Table 2 (`configs/imagenet/*`), then
//! reads each run directory's `metrics.jsonl` and writes the tables
//! (`<out>/table{1,2}.md`, `.csv`, Table 1's `.svg`) with the paper's number,
//! ours and the difference. Table 3 ([`detection`]) exports the 200-epoch
//! ImageNet backbone for Detectron2, writes MoCo's detection configs and
//! launches Detectron2.
//!
//! Resuming: a row whose run directory holds an evaluation at its
//! configured last epoch is finished and skipped; one with a checkpoint is
//! continued with `ssl train … --resume`; anything else starts afresh.

pub mod detection;
pub mod estimate;
pub mod paper;
pub mod report;
pub mod runs;
pub mod smoke;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use runs::{Job, Outcome};

#[derive(Debug, Clone, Args)]
pub struct ReproduceArgs {
    /// Which table of the paper: 1 (small datasets, ResNet-18), 2 (ImageNet
    /// linear, ResNet-50) or 3 (transfer to detection on Detectron2).
    #[arg(long)]
    pub table: u8,
    /// Table 1 datasets, comma-separated (default: all four).
    #[arg(long, value_delimiter = ',')]
    pub datasets: Vec<String>,
    /// Preset rows, comma-separated, as named in configs/<dataset>/<row>.toml
    /// (default: every row of the table; the CW/CW-GP ablation rows cw-2,
    /// cw-4, cw-gp-2, cw-gp-4 can be named for CIFAR).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Device for `ssl train`: auto, cpu, cuda or cuda:N (default: the preset's, auto).
    #[arg(long)]
    pub device: Option<String>,
    /// Multiply every preset's optim.epochs by this (at least one epoch).
    /// Runs at another scale get their own run directories.
    #[arg(long, default_value_t = 1.0)]
    pub epochs_scale: f64,
    /// Print every command and an estimate of GPU hours; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where run directories, logs and tables go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Dataset root: Table 1: where `cargo xtask download` put the datasets
    /// (default data/); Table 2: the ImageNet folder (default: the preset's,
    /// data/imagenet); Table 3: Detectron2's datasets folder
    /// (DETECTRON2_DATASETS; default datasets/); --smoke: default <out>/smoke-data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use this `ssl` binary instead of building it (also SSL_BIN).
    #[arg(long)]
    pub ssl: Option<PathBuf>,
    /// Table 1 at toy scale on the CPU: synthetic images in each dataset's
    /// real on-disk format, a thin ResNet-18, one epoch per row.
    #[arg(long)]
    pub smoke: bool,
    /// Table 3: say what is missing (Detectron2, datasets, weights) and how to get it.
    #[arg(long)]
    pub check: bool,
    /// Table 3: only export the backbone and write the Detectron2 configs and
    /// launcher (to run Detectron2 elsewhere); no Detectron2 needed.
    #[arg(long)]
    pub export_only: bool,
    /// Table 3: seeds per benchmark.
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Table 3: GPUs per Detectron2 run (`train_net.py --num-gpus`).
    #[arg(long, default_value_t = 8)]
    pub gpus: usize,
    /// Table 3: the pre-trained checkpoint to export (default: the Table 2
    /// 200-epoch run's checkpoint under <out>).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Table 3: the Python with Detectron2 (also DETECTRON2_PYTHON; default python3).
    #[arg(long)]
    pub python: Option<String>,
}

/// Resolves `p` against the project root when relative (cargo runs xtask
/// from wherever the user is; the defaults are project-relative).
fn absolute(root: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

pub fn run(root: &Path, args: &ReproduceArgs) -> Result<()> {
    // Environment fallbacks (xtask's clap has no `env` feature).
    let mut owned;
    let args = if args.ssl.is_none() || args.python.is_none() {
        owned = ReproduceArgs { ..args.clone() };
        if owned.ssl.is_none() {
            owned.ssl = std::env::var_os("SSL_BIN").map(PathBuf::from);
        }
        if owned.python.is_none() {
            owned.python =
                Some(std::env::var("DETECTRON2_PYTHON").unwrap_or_else(|_| "python3".to_string()));
        }
        &owned
    } else {
        args
    };
    if !(args.epochs_scale > 0.0 && args.epochs_scale.is_finite()) {
        bail!(
            "--epochs-scale {}: expected a positive factor",
            args.epochs_scale
        );
    }
    if args.smoke && args.table != 1 {
        bail!("--smoke exists for --table 1 only (Table 2 needs ImageNet, Table 3 Detectron2)");
    }
    let out = absolute(root, &args.out);
    match args.table {
        1 | 2 => {
            let jobs = plan(root, &out, args)?;
            if args.dry_run {
                print!("{}", dry_run_text(&jobs));
                return Ok(());
            }
            if args.smoke {
                let data = jobs.first().map(|j| j.data.clone()).unwrap_or_default();
                let mut done = Vec::new();
                for j in &jobs {
                    if !done.contains(&j.dataset) {
                        eprintln!("reproduce | smoke {} data in {}", j.dataset, data.display());
                        smoke::write_dataset(&data, &j.dataset)?;
                        done.push(j.dataset.clone());
                    }
                }
            }
            let ssl = ssl_binary(root, args)?;
            let outcomes = runs::run_all(root, &ssl, &jobs, args.smoke)?;
            let ran = outcomes.iter().filter(|o| o.seconds > 0.0).count();
            eprintln!(
                "reproduce | {} rows ({ran} run now, {:.0} s)",
                outcomes.len(),
                outcomes.iter().map(|o| o.seconds).sum::<f64>()
            );
            let written = if args.table == 1 {
                report::write_table1(&out, &outcomes)?
            } else {
                table2_eval(&ssl, &outcomes, args)?;
                report::write_table2(&out, &outcomes)?
            };
            for p in written {
                eprintln!("reproduce | wrote {}", p.display());
            }
            let failed: Vec<String> = outcomes
                .iter()
                .filter(|o| o.failure.is_some())
                .map(|o| format!("{}/{}", o.job.dataset, o.job.row))
                .collect();
            if !failed.is_empty() {
                bail!(
                    "{} of {} rows failed: {} (their logs are under {})",
                    failed.len(),
                    outcomes.len(),
                    failed.join(", "),
                    out.join("logs").display()
                );
            }
            Ok(())
        }
        3 => detection::run(root, &out, args),
        t => bail!("--table {t}: the paper's tables are 1, 2 and 3"),
    }
}

/// The jobs of `--table 1|2` with the requested datasets and rows, in the
/// paper's order (dataset-major).
pub fn plan(root: &Path, out: &Path, args: &ReproduceArgs) -> Result<Vec<Job>> {
    let (datasets, rows): (Vec<String>, Vec<String>) = if args.table == 1 {
        let datasets = if args.datasets.is_empty() {
            paper::TABLE1_DATASETS.map(String::from).to_vec()
        } else {
            for d in &args.datasets {
                if !paper::TABLE1_DATASETS.contains(&d.as_str()) {
                    bail!(
                        "--datasets {d}: Table 1's datasets are {}",
                        paper::TABLE1_DATASETS.join(", ")
                    );
                }
            }
            args.datasets.clone()
        };
        let rows = if args.methods.is_empty() {
            paper::table1_default_rows()
                .into_iter()
                .map(String::from)
                .collect()
        } else {
            for m in &args.methods {
                if paper::table1_row(m).is_none() {
                    bail!(
                        "--methods {m}: not a Table 1 row; rows are {}",
                        paper::TABLE1
                            .iter()
                            .map(|r| r.row)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            args.methods.clone()
        };
        (datasets, rows)
    } else {
        if !args.datasets.is_empty() && args.datasets != ["imagenet"] {
            bail!("--table 2 runs on imagenet only");
        }
        let all: Vec<String> = paper::TABLE2
            .iter()
            .filter_map(|r| r.presets)
            .flat_map(|(a, b)| [a.to_string(), b.to_string()])
            .collect();
        let rows = if args.methods.is_empty() {
            all
        } else {
            for m in &args.methods {
                if !all.contains(m) {
                    bail!("--methods {m}: Table 2's rows are {}", all.join(", "));
                }
            }
            args.methods.clone()
        };
        (vec!["imagenet".to_string()], rows)
    };
    let data = match (&args.data, args.smoke, args.table) {
        (Some(d), _, _) => absolute(root, d),
        (None, true, _) => out.join("smoke-data"),
        (None, false, 1) => root.join("data"),
        (None, false, _) => PathBuf::new(), // the preset's data.path (data/imagenet)
    };
    let mut jobs = Vec::new();
    for dataset in &datasets {
        for row in &rows {
            let preset_file = root
                .join("configs")
                .join(dataset)
                .join(format!("{row}.toml"));
            if !preset_file.is_file() {
                // The CIFAR-only ablation rows on STL-10/Tiny-ImageNet.
                if args.methods.is_empty() {
                    bail!("missing preset {}", preset_file.display());
                }
                eprintln!("reproduce | no preset {dataset}/{row}: skipped");
                continue;
            }
            let preset = runs::Preset::read(&preset_file, dataset)?;
            jobs.push(Job::new(
                &preset,
                dataset,
                row,
                out,
                &data,
                args.epochs_scale,
                args.smoke,
                args.device.as_deref(),
            ));
        }
    }
    Ok(jobs)
}

/// The `--dry-run` report: every command, each row's estimate and the total.
pub fn dry_run_text(jobs: &[Job]) -> String {
    let mut s = String::new();
    let mut total = 0.0;
    for j in jobs {
        let e = estimate::gpu_hours(&j.preset, j.epochs);
        total += e.hours;
        s.push_str(&format!(
            "# {}/{} | {} epochs x {} images x {} views, {} | ~{:.1} GPU h\n",
            j.dataset, j.row, j.epochs, e.images_per_epoch, j.preset.views, j.preset.arch, e.hours
        ));
        s.push_str(&j.command_line("ssl"));
        s.push('\n');
    }
    s.push_str(&format!(
        "# {} rows, about {:.0} GPU hours in total on one A100-class GPU ({})\n",
        jobs.len(),
        total,
        estimate::ASSUMPTIONS
    ));
    s
}

/// The `ssl` binary: `--ssl`/SSL_BIN, else built here (release; the dev
/// profile for `--smoke`, which CI has already built).
fn ssl_binary(root: &Path, args: &ReproduceArgs) -> Result<PathBuf> {
    if let Some(p) = &args.ssl {
        let p = absolute(root, p);
        if !p.is_file() {
            bail!("--ssl {}: no such file", p.display());
        }
        return Ok(p);
    }
    let env = crate::setup::run(root)?;
    let mut cmd = crate::cargo();
    cmd.args(["build", "--package", "ssl-cli", "--bin", "ssl"]);
    if !args.smoke {
        cmd.arg("--release");
    }
    crate::run_step(
        root,
        &format!(
            "cargo build{} -p ssl-cli --bin ssl",
            if args.smoke { "" } else { " --release" }
        ),
        env.apply(&mut cmd),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| absolute(root, &t))
        .unwrap_or_else(|| root.join("target"));
    let bin = target
        .join(if args.smoke { "debug" } else { "release" })
        .join("ssl");
    if !bin.is_file() {
        bail!("built ssl-cli but found no binary at {}", bin.display());
    }
    Ok(bin)
}

/// Whether this `ssl` has a subcommand (`ssl help NAME` succeeds).
pub fn ssl_has_subcommand(ssl: &Path, name: &str) -> bool {
    Command::new(ssl)
        .args(["help", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Table 2's linear classification: the ImageNet protocol of ssl-eval
/// (`ssl eval CHECKPOINT --protocol imagenet-linear`: frozen encoder, SGD,
/// cosine, 100 epochs, batch 1024, augmented batches) on each finished
/// pre-training run, its JSON kept in the run directory (a second call
/// skips it). Without that subcommand (an older `ssl`) the table reports
/// what `ssl train` measured and says so.
fn table2_eval(ssl: &Path, outcomes: &[Outcome], args: &ReproduceArgs) -> Result<()> {
    if !ssl_has_subcommand(ssl, "eval") {
        eprintln!(
            "reproduce | this ssl has no `eval` subcommand: Table 2 reports the evaluation \
             `ssl train` ran (not the paper's ImageNet linear protocol)"
        );
        return Ok(());
    }
    for o in outcomes.iter().filter(|o| o.eval.is_some()) {
        let json = o.job.run_dir.join(runs::LINEAR_EVAL_JSON);
        if json.exists() {
            continue;
        }
        let mut cmd = Command::new(ssl);
        cmd.arg("eval")
            .arg(o.job.run_dir.join("checkpoint.safetensors"))
            .args(["--protocol", "imagenet-linear", "--out"])
            .arg(&json);
        if let Some(d) = &args.device {
            cmd.args(["--device", d]);
        }
        if !o.job.data.as_os_str().is_empty() {
            cmd.arg("--set")
                .arg(format!("data.path={}", o.job.data.display()));
        }
        eprintln!("reproduce | {}", runs::display_command(&cmd));
        let status = cmd.status().context("starting ssl eval")?;
        if !status.success() {
            eprintln!(
                "reproduce | ssl eval failed for {} ({status})",
                o.job.run_dir.display()
            );
        }
    }
    Ok(())
}
