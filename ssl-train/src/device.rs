//! Device selection: `run.device` = `auto`, `cpu`, `cuda` or `cuda:N`.

use tch::Device;

use crate::error::{bail, Result};

/// Parses a device name; `auto` is CUDA when available, else the CPU.
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
