//! `ssl train`: a preset and overrides, trained by ssl-train's [`Trainer`]
//! with a progress bar, a line per epoch and evaluation, plots redrawn
//! after every evaluation and at the end, and Ctrl-C as the cancellation.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use ssl_train::{BoxError, Callbacks, Config, Event, Networks, TrainError, TrainOutcome, Trainer};

use crate::dist::{self, say, DistArgs};
use crate::report::write_plots_or_warn;

#[derive(Debug, Args)]
#[command(after_help = methods_help())]
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
    pub dist: DistArgs,
}

/// The methods `method.name` takes, from ssl-losses' one list of names.
fn methods_help() -> String {
    format!(
        "Methods (--set method.name=NAME): {}",
        ssl_train::METHOD_NAMES.join(", ")
    )
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let mut overrides = args.overrides.clone();
    if let Some(d) = &args.device {
        overrides.push(format!("run.device={d}"));
    }
    let cfg = crate::presets::resolve(args.preset.as_deref(), &overrides)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    // A second Ctrl-C while saving falls through to the default handler.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)"
        );
    });
    let d = dist::init(&args.dist)?;
    let outcome = train(&cfg, args.resume, &cancel, Some(d.clone()), None)
        .inspect_err(|e| dist::abort_on_error(&d, e))?;
    dist::shutdown(d)?;
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

/// Trains `cfg` with the terminal's progress display (and, for the
/// analyses, `observer` called before the first and after every step).
/// On a non-finite loss the plots are drawn before the error returns.
pub fn train(
    cfg: &Config,
    resume: bool,
    cancel: &AtomicBool,
    dist: Option<Arc<ssl_dist::Dist>>,
    observer: Option<&mut dyn Callbacks>,
) -> Result<TrainOutcome> {
    let mut builder = Trainer::builder(cfg.clone())
        .resume(resume)
        .check_params(dist::check_params())
        // The program's choice (libtorch's thread count is process-wide):
        // whitening losses run one libtorch thread per worker.
        .cpu_threads(ssl_losses::CpuThreads::SingleWhileRunning);
    let rank = dist.as_ref().map_or(0, |d| d.rank());
    if let Some(d) = dist {
        builder = builder.dist(d);
    }
    let mut trainer = builder.build()?;
    let mut printer = Printer::new(trainer.is_root(), rank, trainer.run_dir(), observer);
    match trainer.fit(&mut printer, cancel) {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            printer.bar.finish_and_clear();
            if matches!(e, TrainError::NonFinite { .. }) && trainer.is_root() {
                write_plots_or_warn(trainer.run_dir());
            }
            Err(e.into())
        }
    }
}

/// The terminal side of a run: a progress bar per epoch, one line per
/// epoch and per evaluation, the plots after each evaluation and at the
/// end (rank 0); notes on every rank.
struct Printer<'a> {
    root: bool,
    rank: usize,
    run_dir: std::path::PathBuf,
    bar: indicatif::ProgressBar,
    fail_at: Option<(usize, usize)>,
    observer: Option<&'a mut dyn Callbacks>,
}

impl<'a> Printer<'a> {
    fn new(
        root: bool,
        rank: usize,
        run_dir: &Path,
        observer: Option<&'a mut dyn Callbacks>,
    ) -> Self {
        Self {
            root,
            rank,
            run_dir: run_dir.to_path_buf(),
            bar: indicatif::ProgressBar::hidden(),
            fail_at: dist::fail_at(),
            observer,
        }
    }
}

impl Callbacks for Printer<'_> {
    fn on_event(&mut self, event: &Event) -> Result<(), BoxError> {
        if let Some(o) = self.observer.as_deref_mut() {
            o.on_event(event)?;
        }
        match event {
            // One write per line: ranks' writes interleave under mpirun.
            Event::Note { text } => say(format!("train | {text}")),
            Event::Resumed { step, checkpoint } => say(format!(
                "train | resumed at step {step} from {}",
                checkpoint.display()
            )),
            Event::EpochStarted {
                epoch,
                epochs,
                steps,
                position,
            } => {
                self.bar = if self.root {
                    indicatif::ProgressBar::new(*steps as u64)
                } else {
                    indicatif::ProgressBar::hidden()
                };
                self.bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "epoch {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                self.bar.set_message(format!("{}/{epochs}", epoch + 1));
                self.bar.set_position(*position as u64);
            }
            Event::Step { step, .. } => {
                self.bar.inc(1);
                if self.fail_at == Some((self.rank, *step)) {
                    say(format!(
                        "rank {}: SSL_DIST_FAIL_AT: dying after step {step}",
                        self.rank
                    ));
                    std::process::exit(3);
                }
            }
            Event::EpochEnded {
                epoch,
                epochs,
                mean_loss,
                lr,
                images_per_s,
            } => {
                self.bar.finish_and_clear();
                eprintln!(
                    "train | epoch {epoch}/{epochs} | loss {mean_loss:.4} | lr {lr:.2e} | \
                     {images_per_s:.0} images/s"
                );
            }
            Event::Evaluated { epoch, summary, .. } => {
                eprintln!(
                    "train | eval epoch {epoch} | k-NN {:.2}%{} | normalised stable rank {:.1}%",
                    100.0 * summary.knn_top1,
                    summary
                        .linear_top1
                        .map(|l| format!(" | linear {:.2}%", 100.0 * l))
                        .unwrap_or_default(),
                    100.0 * summary.normalised_stable_rank
                );
                write_plots_or_warn(&self.run_dir);
            }
            Event::Interrupted { .. } => self.bar.finish_and_clear(),
            Event::Finished { .. } => {
                self.bar.finish_and_clear();
                if self.root {
                    write_plots_or_warn(&self.run_dir);
                }
            }
            Event::Checkpoint { .. } => {}
        }
        Ok(())
    }

    fn observe(&mut self, step: usize, nets: &Networks) -> Result<(), BoxError> {
        match self.observer.as_deref_mut() {
            Some(o) => o.observe(step, nets),
            None => Ok(()),
        }
    }
}
