//! The training loop (the release's `base/train.py`), as a [`Trainer`] a
//! caller drives step by step or runs to the end with [`Trainer::fit`].
//!
//! One step: every view through encoder + head, the method's loss,
//! backward, the optimiser step (Adam/SGD/LARS from ssl-models), the EMA
//! update for BYOL, the learning rate from [`LrSchedule`]. Every epoch
//! ends with an atomic checkpoint (`checkpoint.safetensors` + `.json` in
//! the run directory), so a crash never loses more than an epoch and never
//! damages the last good checkpoint; a cancellation saves the exact
//! position (mid-epoch too) and `resume` continues from it bit for bit on
//! the CPU. A non-finite loss stops the run with a diagnosis
//! ([`TrainError::NonFinite`]).
//!
//! The trainer never prints: it reports through [`Callbacks`] (events, and
//! the networks after every step for the analyses), and stops when the
//! caller's cancellation flag is set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use ssl_data::{EpochBatches, Loader};
use ssl_dist::Dist;
use ssl_losses::CpuThreads;
use ssl_models::{
    load_checkpoint, Checkpoint, CheckpointMetadata, Optimizer, OptimizerKind, RngState,
};
use tch::nn;
use tch::{Device, Tensor};

use crate::config::{Config, OptimizerName};
use crate::data::{open_splits, ssl_loader, AnyDataset, Splits};
use crate::data_parallel::{rank_device, shard, DataParallel};
use crate::error::{bail, BoxError, Context, Result, TrainError};
use crate::evaluate::{evaluate, EvalSummary, Evaluation};
use crate::networks::{resnet_builder, Backbone, BackboneBuilder, Networks, StepOutputs};
use crate::run_dir::{Record, RunDir};
use crate::schedule::LrSchedule;

/// What a finished (or interrupted) run left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// `run.out_dir/run.name`.
    pub run_dir: PathBuf,
    /// Whole epochs done.
    pub epochs_done: usize,
    /// Optimiser steps done (earlier sessions included).
    pub steps_done: usize,
    /// The run stopped on the cancellation flag.
    pub interrupted: bool,
    /// The last evaluation of this session.
    pub last_eval: Option<EvalSummary>,
    /// The first loss of this session.
    pub first_loss: Option<f64>,
    /// The last loss of this session.
    pub last_loss: Option<f64>,
}

/// What the trainer reports while it runs ([`Trainer::fit`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Something worth a line in a log (acceleration in effect, checks).
    Note {
        /// The line.
        text: String,
    },
    /// The run continues from a checkpoint.
    Resumed {
        /// The step it continues from.
        step: usize,
        /// The checkpoint read.
        checkpoint: PathBuf,
    },
    /// An epoch begins (or resumes at `position`).
    EpochStarted {
        /// 0-based epoch.
        epoch: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Steps per epoch.
        steps: usize,
        /// Steps of this epoch already done (after a resume).
        position: usize,
    },
    /// One optimiser step is done.
    Step {
        /// 0-based epoch.
        epoch: usize,
        /// Steps done, this one included.
        step: usize,
        /// The loss (mean over the ranks).
        loss: f64,
        /// The learning rate of the step.
        lr: f64,
        /// Images per second since the epoch started (this rank).
        images_per_s: f64,
        /// The step was written to `metrics.jsonl` (`run.log_every`).
        logged: bool,
    },
    /// An epoch is done.
    EpochEnded {
        /// Epochs done (1-based number of this epoch).
        epoch: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Mean loss of the epoch's steps of this session.
        mean_loss: f64,
        /// The learning rate of its last step.
        lr: f64,
        /// Images per second over the epoch (this rank).
        images_per_s: f64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Steps done at the checkpoint.
        step: usize,
    },
    /// An evaluation ran (records and `spectrum.json` are written).
    Evaluated {
        /// Epochs done.
        epoch: usize,
        /// Steps done.
        step: usize,
        /// What it measured.
        summary: EvalSummary,
    },
    /// The cancellation flag stopped the run (a checkpoint follows).
    Interrupted {
        /// Steps done.
        step: usize,
    },
    /// The session ended (all epochs, or interrupted); `results.json` is written.
    Finished {
        /// Epochs done.
        epochs: usize,
        /// Steps done.
        steps: usize,
        /// The results file, on the rank that writes.
        results: Option<PathBuf>,
    },
}

/// A caller's hooks into the loop: every [`Event`], and the networks after
/// every optimiser step (the analyses watch training this way). Both do
/// nothing by default; a closure `FnMut(&Event)` is a `Callbacks` too.
pub trait Callbacks {
    /// Called for every event, on every rank.
    fn on_event(&mut self, _event: &Event) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once before the first step and after every optimiser step
    /// with the networks as they are. An observer that probes them must not
    /// change them (no-grad, `train = false`, so BatchNorm statistics stay
    /// put).
    fn observe(&mut self, _step: usize, _nets: &Networks) -> Result<(), BoxError> {
        Ok(())
    }
}

/// No hooks.
impl Callbacks for () {}

impl<F: FnMut(&Event)> Callbacks for F {
    fn on_event(&mut self, event: &Event) -> Result<(), BoxError> {
        self(event);
        Ok(())
    }
}

/// What one [`Trainer::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// 0-based epoch.
    pub epoch: usize,
    /// Steps done, this one included.
    pub step: usize,
    /// The loss (mean over the ranks).
    pub loss: f64,
    /// The learning rate of the step.
    pub lr: f64,
    /// Images per second since the epoch started (this rank).
    pub images_per_s: f64,
    /// The step was written to `metrics.jsonl`.
    pub logged: bool,
}

/// What one [`Trainer::end_epoch`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Epochs done.
    pub epoch: usize,
    /// Mean loss of the epoch's steps of this session.
    pub mean_loss: f64,
    /// The learning rate of its last step.
    pub lr: f64,
    /// Images per second over the epoch (this rank).
    pub images_per_s: f64,
    /// The checkpoint written (rank 0).
    pub checkpoint: Option<PathBuf>,
    /// `eval.every` (or `eval.every_after_drop`, or the last epoch) asks
    /// for an evaluation now.
    pub evaluation_due: bool,
}

/// An epoch in progress.
struct EpochProgress {
    epoch: usize,
    batches: std::iter::Skip<EpochBatches>,
    started: Instant,
    images: usize,
    loss_sum: f64,
    steps: usize,
}

impl std::fmt::Debug for EpochProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochProgress")
            .field("epoch", &self.epoch)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Trainer`]: the configuration, then what a caller brings.
#[must_use]
pub struct TrainerBuilder {
    cfg: Config,
    resume: bool,
    dist: Option<Arc<Dist>>,
    backbone: Option<BackboneBuilder>,
    splits: Option<Splits>,
    check_params: bool,
    cpu_threads: CpuThreads,
}

impl std::fmt::Debug for TrainerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainerBuilder")
            .field("run", &self.cfg.run.name)
            .field("resume", &self.resume)
            .field("custom_backbone", &self.backbone.is_some())
            .field("custom_data", &self.splits.is_some())
            .finish_non_exhaustive()
    }
}

impl TrainerBuilder {
    /// Continue the run in `run.out_dir/run.name` from its checkpoint.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Train data-parallel over `dist`'s ranks (default: one process).
    pub fn dist(mut self, dist: Arc<Dist>) -> Self {
        self.dist = Some(dist);
        self
    }

    /// Use the encoder `build` makes instead of the configured ResNet
    /// (`model.arch` and `model.width` are then unused). `build` is called
    /// under the var-store path `encoder` (and again for BYOL's target).
    pub fn backbone<F>(mut self, build: F) -> Self
    where
        F: Fn(&nn::Path<'_>) -> Result<Box<dyn Backbone>> + Send + Sync + 'static,
    {
        self.backbone = Some(Arc::new(build));
        self
    }

    /// Train on these splits instead of the configured dataset
    /// (`data.dataset`, `data.path` and `data.subset` are then unused).
    pub fn data(mut self, splits: Splits) -> Self {
        self.splits = Some(splits);
        self
    }

    /// How the whitening losses use libtorch's CPU threads: the default
    /// leaves the process's setting alone; a program may choose
    /// [`CpuThreads::SingleWhileRunning`] (faster on small CPUs, and
    /// process-wide while each loss runs; the `ssl` binary does).
    pub fn cpu_threads(mut self, threads: CpuThreads) -> Self {
        self.cpu_threads = threads;
        self
    }

    /// Compare the parameters of all ranks after every step (a check of
    /// the data-parallel contract, reported as a note).
    pub fn check_params(mut self, check: bool) -> Self {
        self.check_params = check;
        self
    }

    /// Opens the run directory, the data and the loader, builds the
    /// networks and the optimiser (seeded by `run.seed`), and loads the
    /// checkpoint when resuming.
    pub fn build(self) -> Result<Trainer> {
        Trainer::build(self)
    }
}

/// The training loop over one configuration.
pub struct Trainer {
    cfg: Config,
    device: Device,
    nets: Networks,
    opt: Optimizer,
    rng: ChaCha8Rng,
    step: usize,
    splits: Splits,
    loader: Loader<AnyDataset>,
    steps_per_epoch: usize,
    schedule: LrSchedule,
    dp: DataParallel,
    run: RunDir,
    checkpoint: PathBuf,
    config_json: serde_json::Value,
    notes: Vec<String>,
    /// Unreadable samples already reported in a note (`data.skip_unreadable`).
    skipped_reported: std::collections::BTreeSet<usize>,
    resumed: bool,
    epoch: Option<EpochProgress>,
    outcome: TrainOutcome,
    session: Instant,
    earlier_wall: f64,
    tau0: f64,
    /// When and at which step the last checkpoint was written (or the
    /// session started), for `run.checkpoint_every_*`.
    last_save: (Instant, usize),
    cpu_threads: CpuThreads,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("run", &self.outcome.run_dir)
            .field("device", &self.device)
            .field("step", &self.step)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The checkpoint file of a run directory.
pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint.safetensors")
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
fn diagnose_non_finite(cfg: &Config, outputs: &StepOutputs, loss: f64) -> String {
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

fn callback(r: Result<(), BoxError>) -> Result<()> {
    r.map_err(TrainError::Callback)
}

impl Trainer {
    /// A builder for `cfg` (see [`TrainerBuilder`]).
    pub fn builder(cfg: Config) -> TrainerBuilder {
        TrainerBuilder {
            cfg,
            resume: false,
            dist: None,
            backbone: None,
            splits: None,
            check_params: false,
            cpu_threads: CpuThreads::AsSet,
        }
    }

    /// A trainer of `cfg` as configured: its dataset, its ResNet, one process.
    pub fn new(cfg: Config) -> Result<Self> {
        Self::builder(cfg).build()
    }

    fn build(b: TrainerBuilder) -> Result<Self> {
        let cfg = b.cfg;
        let dist = b.dist.unwrap_or_else(|| Arc::new(Dist::single()));
        let device = rank_device(&dist, crate::device::parse_device(&cfg.run.device)?);
        let run_path = cfg.run_dir();
        let checkpoint = checkpoint_path(&run_path);
        if b.resume && !checkpoint.exists() {
            bail!(
                "--resume: no checkpoint at {} (start without --resume)",
                checkpoint.display()
            );
        }
        let is_root = dist.is_root();
        let mut run = RunDir::open(&run_path, &cfg.to_toml()?, b.resume, !is_root)?;
        let splits = match b.splits {
            Some(s) => s,
            None => open_splits(&cfg)?,
        };
        let loader = ssl_loader(&cfg, &splits, device, shard(&dist))?;
        let steps_per_epoch = loader.batches_per_epoch();

        tch::manual_seed(cfg.run.seed as i64);
        let backbone = match b.backbone {
            Some(f) => f,
            None => resnet_builder(&cfg)?,
        };
        let nets = Networks::with_backbone(&cfg, device, &backbone)?;
        let mut notes = Vec::new();
        if is_root {
            notes.extend(splits.notes.iter().cloned());
            notes.extend(nets.acceleration.notes.iter().cloned());
            if splits.labelled.is_none() {
                notes.push(
                    "no labelled evaluation split: k-NN and linear evaluation are skipped"
                        .to_string(),
                );
            }
        }
        let mut opt = Optimizer::new(
            optimizer_kind(&cfg),
            cfg.optim.lr,
            cfg.optim.weight_decay,
            &[("", &nets.vs)],
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.run.seed);
        let mut step = 0usize;
        if b.resume {
            let meta = load_checkpoint(
                &checkpoint,
                &nets.vs,
                Some(&mut opt),
                nets.target.as_ref().map(|t| &t.ema),
            )
            .with_context(|| format!("--resume from {}", checkpoint.display()))?;
            step = meta.step as usize;
            // The history matches the checkpoint: later records are dropped.
            run.truncate_after(step)?;
            if let Some(state) = &meta.rng {
                rng = state.restore()?;
            }
        }
        let dp = DataParallel::new(dist, &nets, b.check_params)?;
        let config_json = serde_json::to_value(&cfg)?;
        let schedule = LrSchedule::from_config(&cfg);
        let tau0 = cfg.method.networks().ema_target.map_or(0.0, |e| e.tau0);
        let earlier_wall = if b.resume {
            crate::records::previous_wall_time(&run_path)
        } else {
            0.0
        };
        Ok(Self {
            outcome: TrainOutcome {
                run_dir: run_path,
                epochs_done: step / steps_per_epoch.max(1),
                steps_done: step,
                interrupted: false,
                last_eval: None,
                first_loss: None,
                last_loss: None,
            },
            cfg,
            device,
            nets,
            opt,
            rng,
            step,
            splits,
            loader,
            steps_per_epoch,
            schedule,
            dp,
            run,
            checkpoint,
            config_json,
            notes,
            skipped_reported: Default::default(),
            resumed: b.resume,
            epoch: None,
            session: Instant::now(),
            earlier_wall,
            tau0,
            last_save: (Instant::now(), step),
            cpu_threads: b.cpu_threads,
        })
    }

    /// The configuration being trained.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The networks as they are now.
    pub fn networks(&self) -> &Networks {
        &self.nets
    }

    /// The device the networks are on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The splits read.
    pub fn splits(&self) -> &Splits {
        &self.splits
    }

    /// Optimiser steps done (earlier sessions included).
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Steps per epoch (this rank's loader).
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// Where the run stands.
    pub fn outcome(&self) -> &TrainOutcome {
        &self.outcome
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.outcome.run_dir
    }

    /// The checkpoint file of the run.
    pub fn checkpoint_path(&self) -> &Path {
        &self.checkpoint
    }

    /// Notes from setting up (acceleration in effect, skipped evaluations).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// This process is rank 0 (it logs, evaluates and writes).
    pub fn is_root(&self) -> bool {
        self.dp.is_root()
    }

    /// All epochs are done.
    pub fn is_finished(&self) -> bool {
        self.epoch.is_none() && self.step >= self.steps_per_epoch * self.cfg.optim.epochs
    }

    /// Starts the next epoch if none is in progress (and epochs remain).
    fn ensure_epoch(&mut self) -> Option<&mut EpochProgress> {
        if self.epoch.is_none() {
            let epoch = self.step / self.steps_per_epoch.max(1);
            if epoch >= self.cfg.optim.epochs {
                return None;
            }
            let skip = self.step - epoch * self.steps_per_epoch;
            self.epoch = Some(EpochProgress {
                epoch,
                batches: self.loader.epoch(epoch as u64).skip(skip),
                started: Instant::now(),
                images: 0,
                loss_sum: 0.0,
                steps: 0,
            });
        }
        self.epoch.as_mut()
    }

    /// One optimiser step on the next batch of the current epoch (starting
    /// the next epoch when none is in progress). `None` when the epoch has
    /// no batch left (call [`Trainer::end_epoch`]) or all epochs are done.
    pub fn step(&mut self) -> Result<Option<StepReport>> {
        let Some(progress) = self.ensure_epoch() else {
            return Ok(None);
        };
        let epoch = progress.epoch;
        let Some(batch) = progress.batches.next() else {
            return Ok(None);
        };
        let batch = batch.with_context(|| format!("loading epoch {epoch}"))?;
        let views: Vec<Tensor> = batch.to_device(self.device).views.into_iter().collect();
        self.step_on(&views).map(Some)
    }

    /// One optimiser step on `views` (one `[m, 3, H, W]` tensor per view,
    /// on the trainer's device) instead of the loader's next batch, counted
    /// in the current epoch (started if none is in progress): what
    /// [`Trainer::step`] runs, for benchmarks and callers that feed their
    /// own batches.
    pub fn step_on(&mut self, views: &[Tensor]) -> Result<StepReport> {
        let Some(progress) = self.ensure_epoch() else {
            bail!(
                "step_on: all {} epochs are done (raise optim.epochs to train on)",
                self.cfg.optim.epochs
            );
        };
        let epoch = progress.epoch;
        let step = self.step;
        let lr = self.schedule.lr(step, epoch);
        self.opt.set_lr(lr);
        if let Some(p) = self.nets.prototypes.as_mut() {
            p.normalize();
        }
        let outputs = self.nets.forward(views, true);
        let loss = crate::methods::method_loss(
            &self.cfg.method,
            &self.nets,
            &outputs,
            epoch,
            &mut self.rng,
            self.cpu_threads,
        )
        .with_context(|| {
            format!(
                "step {step} (epoch {}): the {} loss failed; the last good checkpoint is {}",
                epoch + 1,
                self.cfg.method.name(),
                self.checkpoint.display()
            )
        })?;
        let value = self.dp.mean_loss(loss.double_value(&[]), step)?;
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                epoch: epoch + 1,
                diagnosis: diagnose_non_finite(&self.cfg, &outputs, value),
                checkpoint: self.checkpoint.clone(),
            });
        }
        if let Some(note) = self.dp.backward_step(&mut self.opt, &loss, step)? {
            self.notes.push(note);
        }
        if let Some(t) = self.nets.target.as_mut() {
            // The release's schedule: τ from the epoch, applied every step.
            let tau = ssl_losses::byol_tau(epoch, self.cfg.optim.epochs, self.tau0);
            t.ema.update(&self.nets.vs, tau)?;
        }
        self.step += 1;
        let progress = self.epoch.as_mut().expect("an epoch is in progress");
        progress.images += views[0].size()[0] as usize;
        progress.loss_sum += value;
        progress.steps += 1;
        let images_per_s =
            progress.images as f64 / progress.started.elapsed().as_secs_f64().max(1e-9);
        self.outcome.first_loss.get_or_insert(value);
        self.outcome.last_loss = Some(value);
        self.outcome.steps_done = self.step;
        let logged = self.step.is_multiple_of(self.cfg.run.log_every.max(1));
        if logged {
            self.run.log(Record::Step {
                epoch,
                step: self.step,
                loss: value,
                lr,
                images_per_s,
            })?;
        }
        Ok(StepReport {
            epoch,
            step: self.step,
            loss: value,
            lr,
            images_per_s,
            logged,
        })
    }

    /// Closes the epoch in progress: its summary and, on rank 0, the
    /// end-of-epoch checkpoint. Fails when no epoch is in progress.
    pub fn end_epoch(&mut self) -> Result<EpochReport> {
        let Some(progress) = self.epoch.take() else {
            bail!("end_epoch: no epoch in progress (call step first)");
        };
        let epochs_done = progress.epoch + 1;
        self.outcome.epochs_done = epochs_done;
        self.note_skipped();
        self.outcome.steps_done = self.step;
        let checkpoint = if !self.is_root() {
            None
        } else if self.last_save.1 == self.step {
            // A mid-epoch checkpoint (or the one resumed from) holds this step.
            Some(self.checkpoint.clone())
        } else {
            Some(self.save()?)
        };
        Ok(EpochReport {
            epoch: epochs_done,
            mean_loss: progress.loss_sum / progress.steps.max(1) as f64,
            lr: self
                .schedule
                .lr(self.step.saturating_sub(1), progress.epoch),
            images_per_s: progress.images as f64
                / progress.started.elapsed().as_secs_f64().max(1e-9),
            checkpoint,
            evaluation_due: is_eval_epoch(&self.cfg, &self.schedule, epochs_done),
        })
    }

    /// Evaluates the networks as they are (k-NN, and the linear probe with
    /// `eval.linear`), logs the record and writes `spectrum.json`. `None`
    /// when there is no labelled split to evaluate on.
    pub fn evaluate(&mut self) -> Result<Option<Evaluation>> {
        if self.splits.labelled.is_none() {
            return Ok(None);
        }
        let full = evaluate(&self.cfg, &self.nets, &self.splits, self.device)?;
        let e = full.summary;
        let epoch = self.outcome.epochs_done;
        self.run.log(Record::Eval {
            epoch,
            step: self.step,
            knn_top1: e.knn_top1,
            linear_top1: e.linear_top1,
            linear_top5: e.linear_top5,
            normalised_stable_rank: e.normalised_stable_rank,
        })?;
        self.run.save_spectrum(self.step, &full.spectrum(epoch))?;
        self.outcome.last_eval = Some(e);
        Ok(Some(full))
    }

    /// A mid-epoch checkpoint is due (`run.checkpoint_every_minutes` or
    /// `run.checkpoint_every_steps` since the last one).
    pub fn checkpoint_due(&self) -> bool {
        let (at, step) = self.last_save;
        let run = &self.cfg.run;
        let by_steps =
            run.checkpoint_every_steps > 0 && self.step - step >= run.checkpoint_every_steps;
        let by_time = run.checkpoint_every_minutes > 0.0
            && at.elapsed().as_secs_f64() >= 60.0 * run.checkpoint_every_minutes;
        self.step > step && (by_steps || by_time)
    }

    /// Writes a resumable checkpoint of the exact position (networks,
    /// optimiser, EMA target, the RNG of the losses, the step) atomically:
    /// the data order and augmentations are functions of the seed, the
    /// epoch and the sample index, so the step is the loader's position.
    pub fn save(&mut self) -> Result<PathBuf> {
        self.last_save = (Instant::now(), self.step);
        let meta = CheckpointMetadata::new(
            (self.step / self.steps_per_epoch.max(1)) as u64,
            self.step as u64,
            Some(RngState::of(&self.rng)),
            self.config_json.clone(),
        );
        Checkpoint {
            model: &self.nets.vs,
            optimizer: Some(&self.opt),
            ema: self.nets.target.as_ref().map(|t| &t.ema),
        }
        .save(&self.checkpoint, &meta)
        .with_context(|| format!("saving {}", self.checkpoint.display()))?;
        Ok(self.checkpoint.clone())
    }

    /// Seconds of wall time of the run (earlier sessions included).
    pub fn wall_time_s(&self) -> f64 {
        self.earlier_wall + self.session.elapsed().as_secs_f64()
    }

    /// Writes `results.json` (rank 0) for the session so far.
    fn finish(&self) -> Result<Option<PathBuf>> {
        if !self.is_root() {
            return Ok(None);
        }
        crate::records::finish(
            &self.outcome.run_dir,
            &self.cfg,
            &self.outcome,
            self.wall_time_s(),
        )
        .map(Some)
    }

    /// A note naming the files `data.skip_unreadable` replaced since the
    /// last such note (drained with the other notes).
    fn note_skipped(&mut self) {
        let skipped = self.loader.skipped();
        let new: Vec<&String> = skipped
            .samples
            .iter()
            .filter(|(i, _)| !self.skipped_reported.contains(i))
            .map(|(_, m)| m)
            .collect();
        if new.is_empty() {
            return;
        }
        let mut text = format!(
            "data.skip_unreadable: {} unreadable image(s) replaced so far ({} failed reads); new: {}",
            skipped.samples.len(),
            skipped.count,
            new.iter().take(5).map(|m| m.as_str()).collect::<Vec<_>>().join("; ")
        );
        if new.len() > 5 {
            text.push_str(&format!(" and {} more", new.len() - 5));
        }
        self.skipped_reported
            .extend(skipped.samples.keys().copied());
        self.notes.push(text);
    }

    fn drain_notes(&mut self, cb: &mut dyn Callbacks) -> Result<()> {
        for text in std::mem::take(&mut self.notes) {
            callback(cb.on_event(&Event::Note { text }))?;
        }
        Ok(())
    }

    /// Trains to the last epoch: steps, end-of-epoch checkpoints,
    /// evaluations when due, `results.json` at the end; every event goes to
    /// `cb`. Stops at the first step boundary after `cancel` is set (on any
    /// rank), with a checkpoint of that exact position.
    pub fn fit(&mut self, cb: &mut dyn Callbacks, cancel: &AtomicBool) -> Result<TrainOutcome> {
        self.drain_notes(cb)?;
        if self.resumed {
            self.resumed = false;
            callback(cb.on_event(&Event::Resumed {
                step: self.step,
                checkpoint: self.checkpoint.clone(),
            }))?;
        }
        callback(cb.observe(self.step, &self.nets))?;
        let epochs = self.cfg.optim.epochs;
        while self.ensure_epoch().is_some() {
            let epoch = self.step / self.steps_per_epoch.max(1);
            callback(cb.on_event(&Event::EpochStarted {
                epoch,
                epochs,
                steps: self.steps_per_epoch,
                position: self.step - epoch * self.steps_per_epoch,
            }))?;
            while let Some(s) = self.step()? {
                self.drain_notes(cb)?;
                callback(cb.observe(self.step, &self.nets))?;
                callback(cb.on_event(&Event::Step {
                    epoch: s.epoch,
                    step: s.step,
                    loss: s.loss,
                    lr: s.lr,
                    images_per_s: s.images_per_s,
                    logged: s.logged,
                }))?;
                if self.dp.any(cancel.load(Ordering::SeqCst))? {
                    self.outcome.interrupted = true;
                    callback(cb.on_event(&Event::Interrupted { step: self.step }))?;
                    if self.is_root() {
                        let path = self.save()?;
                        callback(cb.on_event(&Event::Checkpoint {
                            path,
                            step: self.step,
                        }))?;
                    }
                    let results = self.finish()?;
                    self.dp.wait_for_root()?;
                    callback(cb.on_event(&Event::Finished {
                        epochs: self.outcome.epochs_done,
                        steps: self.step,
                        results,
                    }))?;
                    return Ok(self.outcome.clone());
                }
                if self.is_root() && self.checkpoint_due() {
                    let path = self.save()?;
                    callback(cb.on_event(&Event::Checkpoint {
                        path,
                        step: self.step,
                    }))?;
                }
            }
            let report = self.end_epoch()?;
            self.drain_notes(cb)?;
            if self.is_root() {
                callback(cb.on_event(&Event::EpochEnded {
                    epoch: report.epoch,
                    epochs,
                    mean_loss: report.mean_loss,
                    lr: report.lr,
                    images_per_s: report.images_per_s,
                }))?;
                if let Some(path) = report.checkpoint {
                    callback(cb.on_event(&Event::Checkpoint {
                        path,
                        step: self.step,
                    }))?;
                }
                if report.evaluation_due {
                    if let Some(e) = self.evaluate()? {
                        callback(cb.on_event(&Event::Evaluated {
                            epoch: report.epoch,
                            step: self.step,
                            summary: e.summary,
                        }))?;
                    }
                }
            }
            // Rank 0 saves, evaluates and logs; the others wait for it.
            self.dp.wait_for_root()?;
        }
        let results = self.finish()?;
        callback(cb.on_event(&Event::Finished {
            epochs: self.outcome.epochs_done,
            steps: self.step,
            results,
        }))?;
        Ok(self.outcome.clone())
    }
}
