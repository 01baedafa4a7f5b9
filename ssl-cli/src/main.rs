//! `ssl`: self-supervised pre-training and analysis with whitening losses.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod analyze;
mod compare;
mod demo;
mod demo_paper;
mod device;
mod dist;
mod eval;
mod export;
mod plot;
mod presets;
mod report;
mod train;
mod whiten;

#[derive(Debug, Parser)]
#[command(
    name = "ssl",
    version,
    about = "Self-supervised learning with whitening losses (CW-RGP, W-MSE, ...)",
    long_about = "Self-supervised learning with whitening losses.\n\n\
        Implements the NeurIPS 2022 paper \"An Investigation into Whitening Loss for \
        Self-supervised Learning\" (CW-RGP) and the methods it compares against, on libtorch."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print the libtorch in use, the devices it sees and its thread count.
    Info,
    /// Pre-train with a preset (`ssl config list`) and overrides; checkpoints,
    /// metrics.jsonl/csv and evaluations go to run.out_dir/run.name.
    Train(train::TrainArgs),
    /// Evaluate a trained run (k-NN, linear probe, ImageNet linear protocol);
    /// writes eval.json in the run directory.
    Eval(eval::EvalArgs),
    /// Export a trained run's weights: safetensors, torchvision, detectron2.
    Export(export::ExportArgs),
    /// Runs side by side: loss and accuracy curves overlaid (SVG + PNG) and a
    /// table (Markdown + CSV) of their final accuracies, rank and settings.
    Compare(compare::CompareArgs),
    /// The paper's analyses (paper §4 and Appendix): spectra, PCA vs ZCA, whitened output,
    /// similarity, CW vs BW, the gradient; plots + tables into --out.
    Analyze(analyze::AnalyzeArgs),
    /// A short demonstration on built-in synthetic data (what `cargo xtask demo` runs).
    Demo(demo::DemoArgs),
    /// Whiten an embedding matrix (.npy): BW/CW, ZCA/PCA/Cholesky/Newton–Schulz,
    /// groups; with --axis batch, fit on INPUT and --apply to other matrices.
    Whiten(whiten::WhitenArgs),
    /// Presets and resolved configurations.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// List the presets (one per paper row; embedded in the binary).
    List,
    /// Print the fully resolved configuration of a preset (defaults, then the
    /// preset, then each --set), as TOML.
    Show {
        /// A preset name such as `cifar10/cw-rgp-4`, or a path to a TOML file.
        preset: Option<String>,
        /// Override a key, e.g. `--set optim.lr=1e-3 --set data.views=4`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Resolve and validate every preset; report the ones that fail.
    Check,
}

fn main() -> std::process::ExitCode {
    // First: this may re-execute the program (see whitening_core::process).
    let tuning = whitening_core::process::tune_process();
    match run(Cli::parse(), &tuning) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole context chain, one cause per line; no backtrace noise.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, tuning: &whitening_core::process::ProcessTuning) -> Result<()> {
    match cli.command {
        Cmd::Info => {
            device::print_info(tuning);
            Ok(())
        }
        Cmd::Analyze(args) => analyze::run(&args),
        Cmd::Compare(args) => compare::run(&args),
        Cmd::Demo(args) => demo::run(&args),
        Cmd::Eval(args) => eval::run(&args),
        Cmd::Export(args) => export::run(&args),
        Cmd::Whiten(args) => whiten::run(&args),
        Cmd::Train(args) => train::run(&args),
        Cmd::Config(ConfigCmd::List) => {
            for name in presets::preset_names() {
                println!("{name}");
            }
            Ok(())
        }
        Cmd::Config(ConfigCmd::Show { preset, overrides }) => {
            let cfg = presets::resolve(preset.as_deref(), &overrides)?;
            print!("{}", cfg.to_toml()?);
            Ok(())
        }
        Cmd::Config(ConfigCmd::Check) => {
            let names = presets::preset_names();
            let mut failed = 0;
            for name in &names {
                if let Err(e) = presets::resolve(Some(name), &[]) {
                    failed += 1;
                    println!("{name}: {e:#}");
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} presets are invalid", names.len());
            }
            println!("{} presets resolve and validate", names.len());
            Ok(())
        }
    }
}
