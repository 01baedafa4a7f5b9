//! `ssl`: self-supervised pre-training and analysis with whitening losses.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod demo;
mod device;

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
    /// A short demonstration on built-in synthetic data (what `cargo xtask demo` runs).
    Demo(demo::DemoArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Info => {
            device::print_info();
            Ok(())
        }
        Cmd::Demo(args) => demo::run(&args),
    }
}
