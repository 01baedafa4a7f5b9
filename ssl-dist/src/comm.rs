//! The communicator interface every backend implements, and the one-process
//! communicator.

use std::fmt::Debug;

use tch::{Device, Kind, Tensor};

use crate::error::{DistError, Result};

/// Collectives over a fixed group of processes (ranks `0..world_size`).
///
/// Every rank must call the same collectives in the same order with the
/// same lengths; a call blocks until all ranks have made it. Timeouts are
/// not the backend's business: [`crate::Dist`] wraps a communicator with a
/// watchdog that aborts the job when a call makes no progress.
pub trait Communicator: Send + Sync + Debug {
    /// `"mpi"`, `"nccl"` or `"single"`.
    fn backend(&self) -> &'static str;
    /// This process, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// Where tensors handed to the tensor collectives must live.
    fn device(&self) -> Device;
    /// Element-wise sum over all ranks, in place, of a host buffer.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over all ranks, in place, of a contiguous `f32`
    /// tensor on [`Communicator::device`].
    fn all_reduce_sum_tensor(&self, t: &mut Tensor) -> Result<()>;
    /// Rank `root`'s bytes into every rank's `buf` (same length everywhere).
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()>;
    /// Rank `root`'s tensor into every rank's (contiguous, same shape and
    /// dtype, on [`Communicator::device`]).
    fn broadcast_tensor(&self, t: &mut Tensor, root: usize) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Ends the whole job (every rank) with exit status `code`.
    fn abort(&self, code: i32) -> !;
}

/// One process: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Communicator for Single {
    fn backend(&self) -> &'static str {
        "single"
    }
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn all_reduce_sum(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_tensor(&self, _: &mut Tensor) -> Result<()> {
        Ok(())
    }
    fn broadcast_bytes(&self, _: &mut [u8], _: usize) -> Result<()> {
        Ok(())
    }
    fn broadcast_tensor(&self, _: &mut Tensor, _: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Checks that `t` can be handed to a backend as one raw buffer: defined,
/// contiguous, on `device`, and (when `kind` is given) of that dtype.
pub(crate) fn check_tensor(
    t: &Tensor,
    device: Device,
    kind: Option<Kind>,
    what: &str,
) -> Result<()> {
    if !t.defined() {
        return Err(DistError::Invalid(format!("{what}: undefined tensor")));
    }
    if !t.is_contiguous() {
        return Err(DistError::Invalid(format!(
            "{what}: the tensor must be contiguous"
        )));
    }
    if t.device() != device {
        return Err(DistError::Invalid(format!(
            "{what}: the tensor is on {:?} but this backend works on {device:?}",
            t.device()
        )));
    }
    if let Some(k) = kind {
        if t.kind() != k {
            return Err(DistError::Invalid(format!(
                "{what}: the tensor is {:?}, expected {k:?}",
                t.kind()
            )));
        }
    }
    Ok(())
}

/// Size in bytes of a contiguous tensor's data.
pub(crate) fn tensor_bytes(t: &Tensor) -> usize {
    t.numel() * t.kind().elt_size_in_bytes()
}
