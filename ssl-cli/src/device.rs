//! Device selection: `--device cpu|cuda|cuda:N|auto`.

use anyhow::{bail, Result};
use tch::Device;

/// Parses a `--device` value; `auto` is CUDA when available, else the CPU.
pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => {
            if !tch::Cuda::is_available() {
                bail!("--device cuda: libtorch sees no CUDA device (try --device cpu)");
            }
            Device::Cuda(0)
        }
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) if i < tch::Cuda::device_count() as usize => Device::Cuda(i),
            Some(Ok(i)) => bail!(
                "--device {other}: libtorch sees {} CUDA device(s), no index {i}",
                tch::Cuda::device_count()
            ),
            _ => bail!("--device {other}: expected auto, cpu, cuda or cuda:N"),
        },
    })
}

pub fn print_info(tuning: &whitening_core::process::ProcessTuning) {
    println!("ssl {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch lib dir: {}", env!("SSL_LIBTORCH_LIB"));
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {}", tch::Cuda::device_count());
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!("cpu threads: {}", tch::get_num_threads());
    println!("cpu runtime: {tuning}");
}
