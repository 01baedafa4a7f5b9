//! `ssl train`: the training loop of SPEC §6.
//!
//! One step: all views through encoder + head in one pass, the method's
//! loss, backward, the optimiser step (Adam/SGD/LARS from ssl-models), the
//! EMA update for BYOL, the learning rate from [`schedule::LrSchedule`].
//! Every epoch ends with an atomic checkpoint (`checkpoint.safetensors` +
//! `.json` in the run directory), so a crash never loses more than an
//! epoch and never damages the last good checkpoint; Ctrl-C saves the exact
//! position (mid-epoch too) and exits cleanly; `--resume` continues from it
//! bit-for-bit on the CPU. A non-finite loss stops the run with a diagnosis.

pub mod data;
pub mod dist;
pub mod networks;
pub mod report;
pub mod run_dir;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_eval::{
    collapse_diagnostics, knn_evaluate, linear_probe, EvalResults, KnnConfig, LinearProbeConfig,
    Representation,
};
use ssl_models::{
    load_checkpoint, Checkpoint, CheckpointMetadata, Optimizer, OptimizerKind, RngState,
};
use tch::nn::ModuleT;
use tch::{Device, Tensor};

use crate::config::{Config, OptimizerName};
use data::{open_splits, split_features, ssl_loader, Splits};
use networks::Networks;
use run_dir::{Record, RunDir};
use schedule::LrSchedule;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A preset (`ssl config list`), e.g. `cifar10/cw-rgp-4`, or a TOML file.
    pub preset: Option<String>,
    /// Override a key, e.g. `--set optim.epochs=200 --set data.path=/data`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Device: auto, cpu, cuda or cuda:N (overrides run.device).
    #[arg(long)]
    pub device: Option<String>,
    /// Continue the run in `run.out_dir/run.name` from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub dist: dist::DistArgs,
}

/// Evaluation of one encoder (SPEC §7 protocols).
#[derive(Debug, Clone, Copy)]
pub struct EvalSummary {
    pub knn_top1: f64,
    pub linear_top1: Option<f64>,
    pub linear_top5: Option<f64>,
    pub normalised_stable_rank: f64,
}

/// What a finished (or interrupted) run left behind.
#[derive(Debug)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub epochs_done: usize,
    pub steps_done: usize,
    pub interrupted: bool,
    pub last_eval: Option<EvalSummary>,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let mut overrides = args.overrides.clone();
    if let Some(d) = &args.device {
        overrides.push(format!("run.device={d}"));
    }
    let cfg = Config::resolve(args.preset.as_deref(), &overrides)?;
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // A second Ctrl-C while saving falls through to the default handler.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)"
        );
    });
    dist::init(&args.dist)?;
    let outcome = train(&cfg, args.resume, &interrupt).inspect_err(dist::abort_on_error)?;
    dist::shutdown()?;
    if outcome.interrupted {
        println!(
            "train | interrupted after step {}; resume with `ssl train {} --resume` | run {}",
            outcome.steps_done,
            args.preset.as_deref().unwrap_or(""),
            outcome.run_dir.display()
        );
    } else {
        println!(
            "train | done: {} epochs, {} steps | run {}",
            outcome.epochs_done,
            outcome.steps_done,
            outcome.run_dir.display()
        );
    }
    Ok(())
}

fn optimizer_kind(cfg: &Config) -> OptimizerKind {
    match cfg.optim.optimizer {
        OptimizerName::Adam => OptimizerKind::adam(),
        OptimizerName::Sgd => OptimizerKind::Sgd {
            momentum: cfg.optim.momentum,
        },
        OptimizerName::Lars => OptimizerKind::Lars {
            momentum: cfg.optim.momentum,
            eta: 0.001,
        },
    }
}

pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint.safetensors")
}

/// k-NN (and optionally the linear probe) on the encoder output, or on the
/// head output with `eval.head` (SPEC §7).
pub fn evaluate(
    cfg: &Config,
    nets: &Networks,
    splits: &Splits,
    device: Device,
) -> Result<EvalSummary> {
    Ok(evaluate_with(cfg, nets, splits, device, &EvalRequest::from_config(cfg))?.summary)
}

/// Which protocols an evaluation runs, on which output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalRequest {
    pub knn: bool,
    /// The Adam linear probe of SPEC §7 (`eval.linear_epochs` epochs).
    pub linear: bool,
    /// The head output (`eval.head`) instead of the encoder output.
    pub head: bool,
}

impl EvalRequest {
    /// What training evaluates: k-NN always, the probe with `eval.linear`.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            knn: true,
            linear: cfg.eval.linear,
            head: cfg.eval.head,
        }
    }
}

/// Everything one evaluation measured: the summary the trainer logs, the
/// typed results (`eval.json`) and the covariance spectrum of the test
/// features (the plots' spectrum).
#[derive(Debug)]
pub struct Evaluation {
    pub summary: EvalSummary,
    pub results: EvalResults,
    pub covariance_eigenvalues: Vec<f64>,
}

impl Evaluation {
    /// The test features' spectrum, for `spectrum.json` and the plot.
    pub fn spectrum(&self, epoch: usize) -> report::Spectrum {
        report::Spectrum {
            epoch,
            representation: match self.results.representation {
                Representation::Head => "head",
                Representation::Whitened => "whitened",
                Representation::Encoder => "encoder",
            }
            .into(),
            singular_values: self
                .results
                .diagnostics
                .as_ref()
                .map(|d| d.rank.singular_values.clone())
                .unwrap_or_default(),
            covariance_eigenvalues: self.covariance_eigenvalues.clone(),
        }
    }
}

/// Features of the classifier and test splits (encoder or head output,
/// evaluation transform), then the requested protocols and the collapse
/// diagnostics of the test features. A protocol not run reads NaN in the
/// summary and `None` in the results.
pub fn evaluate_with(
    cfg: &Config,
    nets: &Networks,
    splits: &Splits,
    device: Device,
    req: &EvalRequest,
) -> Result<Evaluation> {
    let encode = |x: &Tensor| {
        let h = nets.encoder.forward_t(x, false);
        if req.head {
            nets.head.forward_t(&h, false)
        } else {
            h
        }
    };
    let train = split_features(
        cfg,
        &splits.classifier,
        splits.kind,
        device,
        encode,
        "classifier",
    )?;
    let test = split_features(cfg, &splits.test, splits.kind, device, encode, "test")?;
    let mut results = EvalResults::new(if req.head {
        Representation::Head
    } else {
        Representation::Encoder
    });
    if req.knn {
        results.knn = Some(knn_evaluate(
            &train,
            &test,
            &KnnConfig {
                k: cfg.eval.knn_k as i64,
                ..KnnConfig::reference()
            },
        )?);
    }
    if req.linear {
        let probe = LinearProbeConfig {
            epochs: cfg.eval.linear_epochs,
            seed: cfg.run.seed,
            ..LinearProbeConfig::reference()
        };
        results.linear = Some(linear_probe(&train, &test, &probe)?.1);
    }
    let diagnostics = collapse_diagnostics(&test.x, Some(&test.y))?;
    let covariance_eigenvalues = whitening_core::diagnostics::covariance_spectrum(&test.x)?;
    let summary = EvalSummary {
        knn_top1: results.knn.as_ref().map_or(f64::NAN, |k| k.top1),
        linear_top1: results.linear.as_ref().map(|l| l.top1),
        linear_top5: results.linear.as_ref().map(|l| l.top5),
        normalised_stable_rank: diagnostics.rank.normalised_stable_rank,
    };
    results.diagnostics = Some(diagnostics);
    Ok(Evaluation {
        summary,
        results,
        covariance_eigenvalues,
    })
}

fn is_eval_epoch(cfg: &Config, schedule: &LrSchedule, epochs_done: usize) -> bool {
    if epochs_done == cfg.optim.epochs {
        return true;
    }
    let every = match schedule.first_drop() {
        Some(d) if epochs_done > d => cfg.eval.every_after_drop,
        _ => cfg.eval.every,
    };
    epochs_done.is_multiple_of(every)
}

/// Explains a non-finite loss: which term, and what the embeddings looked like.
fn diagnose_non_finite(cfg: &Config, outputs: &networks::StepOutputs, loss: f64) -> String {
    let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
    let z = &outputs.embeddings;
    let what = if !finite(z) {
        "the embeddings themselves are not finite: the encoder/head diverged (lower optim.lr, \
         or raise optim.warmup_iters)"
            .to_string()
    } else {
        let scale = z.abs().max().double_value(&[]);
        format!(
            "the {} loss term is {loss} although the embeddings are finite (max |z| = {scale:.3e}); \
             for whitening losses set method.eps > 0 (shrinkage) or use more channels per group",
            cfg.method.name()
        )
    };
    format!("non-finite loss ({loss}): {what}")
}

/// Watches a run from outside the loop (`ssl analyze`): called once before
/// the first step and after every optimiser step with the networks as they
/// are. An observer that probes them must not change them (no-grad,
/// `train = false`, so BatchNorm statistics stay put).
pub trait StepObserver {
    fn observe(&mut self, step: usize, nets: &Networks) -> Result<()>;
}

/// Trains `cfg`; `resume` continues from the run directory's checkpoint.
/// `interrupt` is polled after every step.
pub fn train(cfg: &Config, resume: bool, interrupt: &AtomicBool) -> Result<TrainOutcome> {
    train_observed(cfg, resume, interrupt, None)
}

/// [`train`], with an observer called before the first and after every step.
pub fn train_observed(
    cfg: &Config,
    resume: bool,
    interrupt: &AtomicBool,
    mut observer: Option<&mut dyn StepObserver>,
) -> Result<TrainOutcome> {
    let device = dist::rank_device(crate::device::parse_device(&cfg.run.device)?);
    let run_path = cfg.run.out_dir.join(&cfg.run.name);
    let ckpt = checkpoint_path(&run_path);
    if resume && !ckpt.exists() {
        bail!(
            "--resume: no checkpoint at {} (start without --resume)",
            ckpt.display()
        );
    }
    let config_toml = cfg.to_toml()?;
    let mut run = RunDir::open(&run_path, &config_toml, resume)?;
    let splits = open_splits(cfg)?;
    let loader = ssl_loader(cfg, &splits, device)?;
    let steps_per_epoch = loader.batches_per_epoch();
    let total_steps = steps_per_epoch * cfg.optim.epochs;

    tch::manual_seed(cfg.run.seed as i64);
    let mut nets = Networks::new(cfg, device)?;
    if dist::current().is_root() {
        for note in &nets.acceleration.notes {
            // One write per line (ranks' writes interleave under mpirun).
            let line = format!("train | {note}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
    }
    let mut opt = Optimizer::new(
        optimizer_kind(cfg),
        cfg.optim.lr,
        cfg.optim.weight_decay,
        &[("", &nets.vs)],
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.run.seed);
    let mut step = 0usize;
    if resume {
        let meta = load_checkpoint(
            &ckpt,
            &nets.vs,
            Some(&mut opt),
            nets.target.as_ref().map(|t| &t.ema),
        )
        .with_context(|| format!("--resume from {}", ckpt.display()))?;
        step = meta.step as usize;
        if let Some(state) = &meta.rng {
            rng = state.restore()?;
        }
        // One write for the whole line: stderr is unbuffered, and under
        // mpirun the ranks' writes interleave piece by piece.
        let line = format!("train | resumed at step {step} from {}\n", ckpt.display());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
    let mut dp = dist::DataParallel::new(&nets)?;
    let config_json = serde_json::to_value(cfg)?;
    let save = |nets: &Networks, opt: &Optimizer, rng: &ChaCha8Rng, step: usize| -> Result<()> {
        let meta = CheckpointMetadata::new(
            (step / steps_per_epoch.max(1)) as u64,
            step as u64,
            Some(RngState::of(rng)),
            config_json.clone(),
        );
        Checkpoint {
            model: &nets.vs,
            optimizer: Some(opt),
            ema: nets.target.as_ref().map(|t| &t.ema),
        }
        .save(&ckpt, &meta)
        .with_context(|| format!("saving {}", ckpt.display()))?;
        Ok(())
    };

    let schedule = LrSchedule::from_config(cfg);
    let tau0 = match &cfg.method {
        ssl_losses::Method::Byol(p) => p.tau0,
        _ => 0.0,
    };
    let session = Instant::now();
    let earlier_wall = if resume {
        report::previous_wall_time(&run_path)
    } else {
        0.0
    };
    let wall = || earlier_wall + session.elapsed().as_secs_f64();
    let mut outcome = TrainOutcome {
        run_dir: run_path.clone(),
        epochs_done: step / steps_per_epoch.max(1),
        steps_done: step,
        interrupted: false,
        last_eval: None,
        first_loss: None,
        last_loss: None,
    };
    let start_epoch = step / steps_per_epoch.max(1);
    if let Some(o) = observer.as_deref_mut() {
        o.observe(step, &nets)?;
    }
    for epoch in start_epoch..cfg.optim.epochs {
        let skip = step - epoch * steps_per_epoch;
        let bar = indicatif::ProgressBar::new(steps_per_epoch as u64);
        if !dp.is_root() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{}/{}", epoch + 1, cfg.optim.epochs));
        bar.set_position(skip as u64);
        let started = Instant::now();
        let mut images = 0usize;
        let mut loss_sum = 0.0;
        for batch in loader.epoch(epoch as u64).skip(skip) {
            let batch = batch.with_context(|| format!("loading epoch {epoch}"))?;
            let views: Vec<Tensor> = batch.to_device(device).views.into_iter().collect();
            let lr = schedule.lr(step, epoch);
            opt.set_lr(lr);
            if let Some(p) = nets.prototypes.as_mut() {
                p.normalize();
            }
            let outputs = nets.forward(&views, true);
            let loss = cfg
                .method
                .loss(&outputs.as_method_outputs(&nets), epoch, &mut rng)
                .with_context(|| {
                    format!(
                        "step {step} (epoch {}): the {} loss failed; the last good checkpoint is {}",
                        epoch + 1,
                        cfg.method.name(),
                        ckpt.display()
                    )
                })?;
            let value = dp.mean_loss(loss.double_value(&[]), step)?;
            if !value.is_finite() {
                let why = diagnose_non_finite(cfg, &outputs, value);
                bar.finish_and_clear();
                if dp.is_root() {
                    report::write_plots_or_warn(&run_path);
                }
                bail!(
                    "step {step} (epoch {}): {why}. Training stopped; the last good checkpoint is {}",
                    epoch + 1,
                    ckpt.display()
                );
            }
            dp.backward_step(&mut opt, &loss, step)?;
            if let Some(t) = nets.target.as_mut() {
                let tau = ssl_losses::byol_tau(step, total_steps, tau0);
                t.ema.update(&nets.vs, tau)?;
            }
            step += 1;
            if let Some(o) = observer.as_deref_mut() {
                o.observe(step, &nets)?;
            }
            images += views[0].size()[0] as usize;
            loss_sum += value;
            outcome.first_loss.get_or_insert(value);
            outcome.last_loss = Some(value);
            bar.inc(1);
            if step.is_multiple_of(cfg.run.log_every.max(1)) {
                run.log(Record::Step {
                    epoch,
                    step,
                    loss: value,
                    lr,
                    images_per_s: images as f64 / started.elapsed().as_secs_f64().max(1e-9),
                })?;
            }
            if dp.any(interrupt.load(Ordering::SeqCst))? {
                bar.finish_and_clear();
                outcome.steps_done = step;
                outcome.interrupted = true;
                if dp.is_root() {
                    save(&nets, &opt, &rng, step)?;
                    report::finish(&run_path, cfg, &outcome, wall());
                }
                dp.wait_for_root()?;
                return Ok(outcome);
            }
        }
        bar.finish_and_clear();
        let epochs_done = epoch + 1;
        let n = (step - epoch * steps_per_epoch - skip).max(1);
        if !dp.is_root() {
            // Rank 0 saves, evaluates and logs; the others wait for it.
            dp.wait_for_root()?;
            outcome.epochs_done = epochs_done;
            outcome.steps_done = step;
            continue;
        }
        eprintln!(
            "train | epoch {epochs_done}/{} | loss {:.4} | lr {:.2e} | {:.0} images/s",
            cfg.optim.epochs,
            loss_sum / n as f64,
            schedule.lr(step.saturating_sub(1), epoch),
            images as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
        save(&nets, &opt, &rng, step)?;
        if is_eval_epoch(cfg, &schedule, epochs_done) {
            let full = evaluate_with(cfg, &nets, &splits, device, &EvalRequest::from_config(cfg))?;
            let e = full.summary;
            eprintln!(
                "train | eval epoch {epochs_done} | k-NN {:.2}%{} | normalised stable rank {:.1}%",
                100.0 * e.knn_top1,
                e.linear_top1
                    .map(|l| format!(" | linear {:.2}%", 100.0 * l))
                    .unwrap_or_default(),
                100.0 * e.normalised_stable_rank
            );
            run.log(Record::Eval {
                epoch: epochs_done,
                step,
                knn_top1: e.knn_top1,
                linear_top1: e.linear_top1,
                linear_top5: e.linear_top5,
                normalised_stable_rank: e.normalised_stable_rank,
            })?;
            if let Err(err) = report::save_spectrum(&run_path, &full.spectrum(epochs_done)) {
                eprintln!("warning: could not save the spectrum: {err:#}");
            }
            report::write_plots_or_warn(&run_path);
            outcome.last_eval = Some(e);
        }
        dp.wait_for_root()?;
        outcome.epochs_done = epochs_done;
        outcome.steps_done = step;
    }
    if dp.is_root() {
        report::finish(&run_path, cfg, &outcome, wall());
    }
    Ok(outcome)
}
