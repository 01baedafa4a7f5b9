//! `cargo xtask bench eval`: 5-NN and the linear probe on 50,000 × 512 train
//! and 10,000 × 512 test features, the data of the peer's `bench_eval`
//! (`xtask/peer/torch_peer.py eval`): 10 Gaussian clusters, `x = centre[y] + 2·N(0, I)`.
//!
//! Prints `ours | <what> | <unit> | <value>` lines with the peer's labels so
//! a script can pair them. Options: `--threads N` (default 2, as the peer is
//! run), `--epochs E` (default 500).

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use ssl_eval::{knn_evaluate, linear_probe, Features, KnnConfig, LinearProbeConfig};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Parser)]
#[command(about = "Time 5-NN and the linear probe on 50,000 x 512 features")]
struct Args {
    /// libtorch intra-op threads (the peer is run with 2).
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Epochs of the linear probe.
    #[arg(long, default_value_t = 500)]
    epochs: usize,
}

fn main() -> Result<()> {
    // As the `ssl` binary does (may re-execute this program).
    let tuning = whitening_core::process::tune_process();
    let Args { threads, epochs } = Args::parse();
    println!("ours | process: {tuning} | - | -");
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let (n_train, n_test, dim, classes) = (50_000i64, 10_000i64, 512i64, 10i64);
    let opts = (Kind::Float, Device::Cpu);
    let centres = Tensor::randn([classes, dim], opts);
    let y_train = Tensor::randint(classes, [n_train], (Kind::Int64, Device::Cpu));
    let y_test = Tensor::randint(classes, [n_test], (Kind::Int64, Device::Cpu));
    let x_train = centres.index_select(0, &y_train) + Tensor::randn([n_train, dim], opts) * 2.0;
    let x_test = centres.index_select(0, &y_test) + Tensor::randn([n_test, dim], opts) * 2.0;
    let train = Features::new(x_train, y_train, "train")?;
    let test = Features::new(x_test, y_test, "test")?;
    println!("ours | libtorch, {threads} threads | - | -");

    let t = Instant::now();
    let knn = knn_evaluate(&train, &test, &KnnConfig::reference())?;
    println!(
        "ours | 5-NN, {n_train} x {dim} train, {n_test} test (acc {:.3}) | s | {:.2}",
        knn.top1,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let cfg = LinearProbeConfig {
        epochs,
        ..LinearProbeConfig::reference()
    };
    let (_, lin) = linear_probe(&train, &test, &cfg)?;
    println!(
        "ours | linear probe, {epochs} epochs (acc {:.3}) | s | {:.2}",
        lin.top1,
        t.elapsed().as_secs_f64()
    );
    if let Some(kib) = peak_rss_kib() {
        println!(
            "ours | peak resident memory of the process (VmHWM) | MiB | {:.0}",
            kib as f64 / 1024.0
        );
    }
    Ok(())
}

/// Peak resident set size from `/proc/self/status` (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
