//! Data-parallel training: the trainer's side of ssl-dist.
//!
//! Every rank builds the same networks (same seed), takes rank 0's
//! parameters and buffers, reads its shard of every epoch with
//! `data.batch_size / P` images per step (the global batch is unchanged),
//! runs forward and backward with its own BatchNorm statistics and its own
//! whitening sub-batches (as the paper's multi-GPU setup), averages the
//! gradients over the ranks in ~25 MB buckets, and applies the same
//! optimiser step, so the parameters stay bit-identical. Rank 0 alone logs,
//! evaluates, and writes checkpoints and metrics; the loss it logs and checks
//! is the mean over the ranks (so a non-finite loss on any rank stops every
//! rank at the same step); every rank resumes from the checkpoint.
//!
//! The communicator is the caller's ([`crate::TrainerBuilder::dist`]): this
//! crate never starts or ends a backend.
//!
//! Departure from the release: its ImageNet model is converted with
//! `SyncBatchNorm`, so BatchNorm statistics span all GPUs. Here they stay
//! per rank. An exact synchronised BatchNorm all-reduces two sums of the
//! output gradient *inside* the backward pass (the gradient of the global
//! mean and variance), which needs a custom autograd function or a tensor
//! hook; tch 0.26 has neither, and a detached all-reduce of the forward
//! statistics alone would give the wrong gradients
//! (`docs/reference.md` §10).

use std::sync::Arc;

use ssl_dist::{broadcast_tensors, checksum, Communicator, Dist, GradSync};
use ssl_models::Optimizer;
use tch::{Device, Tensor};

use crate::config::Config;
use crate::error::{bail, Context, Result};
use crate::networks::Networks;

/// The device of this rank: `cuda:LOCAL_RANK` under NCCL, else `device`.
pub fn rank_device(dist: &Dist, device: Device) -> Device {
    match dist.device() {
        Device::Cuda(i) => Device::Cuda(i),
        _ => device,
    }
}

/// This rank's share of the global batch; fails when the ranks cannot
/// split it evenly (or a whitening sub-batch would straddle ranks).
pub fn per_rank_batch(cfg: &Config, world_size: usize) -> Result<i64> {
    let p = world_size as i64;
    let b = cfg.data.batch_size;
    if p == 1 {
        return Ok(b);
    }
    if b % p != 0 || b / p < 2 {
        bail!(
            "data.batch_size = {b} (the global batch) must split into {p} equal per-rank \
             batches of at least 2"
        );
    }
    if let Some(w) = cfg.method.whitening_loss() {
        if w.w_size > 1 && (b / p) % w.w_size != 0 {
            bail!(
                "method.w_size = {} must divide the per-rank batch data.batch_size / {p} = {}: \
                 whitening runs per sub-batch on each rank",
                w.w_size,
                b / p
            );
        }
    }
    Ok(b / p)
}

/// The loader shard of this rank.
pub fn shard(d: &Dist) -> ssl_data::Shard {
    ssl_data::Shard {
        rank: d.rank(),
        count: d.world_size(),
    }
}

/// Every tensor that must start equal on all ranks: parameters, buffers
/// (BatchNorm statistics) and the EMA target.
fn state_tensors(nets: &Networks) -> Vec<Tensor> {
    let mut v: Vec<(String, Tensor)> = nets.vs.variables().into_iter().collect();
    if let Some(t) = &nets.target {
        v.extend(
            t.ema
                .var_store()
                .variables()
                .into_iter()
                .map(|(k, t)| (format!("ema.{k}"), t)),
        );
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, t)| t).collect()
}

/// The gradient averaging of one run, plus the per-step agreements.
#[derive(Debug)]
pub struct DataParallel {
    dist: Arc<Dist>,
    sync: Option<GradSync>,
    params: Vec<Tensor>,
    check_params: bool,
}

impl DataParallel {
    /// Takes rank 0's state (after a resume too) and plans the gradient
    /// buckets of `nets`' trainable parameters. `check_params` compares
    /// the parameters of all ranks after every step (a test of the
    /// data-parallel contract; one broadcast of a checksum per step).
    pub fn new(dist: Arc<Dist>, nets: &Networks, check_params: bool) -> Result<Self> {
        let mut trainable: Vec<(String, Tensor)> = nets
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        trainable.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<Tensor> = trainable.into_iter().map(|(_, t)| t).collect();
        let sync = if dist.world_size() > 1 {
            broadcast_tensors(&*dist, &state_tensors(nets), 0)
                .context("broadcasting rank 0's parameters")?;
            Some(GradSync::new(
                params.iter().map(|p| p.shallow_clone()).collect(),
                ssl_dist::DEFAULT_BUCKET_BYTES,
            )?)
        } else {
            None
        };
        Ok(Self {
            dist,
            sync,
            params,
            check_params,
        })
    }

    /// Rank 0: logs, evaluates, writes the run directory.
    pub fn is_root(&self) -> bool {
        self.dist.is_root()
    }

    /// The step's loss averaged over the ranks (one all-reduce of a scalar),
    /// what rank 0 logs and every rank checks for finiteness, so all ranks
    /// stop together on a non-finite loss. With one process, `value` itself.
    pub fn mean_loss(&self, value: f64, step: usize) -> Result<f64> {
        if self.sync.is_none() {
            return Ok(value);
        }
        self.dist.set_context(format!("loss of step {step}"));
        let mut buf = [value as f32];
        self.dist
            .all_reduce_sum(&mut buf)
            .with_context(|| format!("averaging the loss of step {step}"))?;
        Ok(f64::from(buf[0]) / self.dist.world_size() as f64)
    }

    /// This rank and the world size.
    pub fn rank(&self) -> (usize, usize) {
        (self.dist.rank(), self.dist.world_size())
    }

    /// Backward, gradient averaging over the ranks, optimiser step. With
    /// one process this is exactly `opt.backward_step(loss)`. Returns a
    /// note when the parameter check ran and should be reported (every
    /// rank after the first step, rank 0 after every step).
    pub fn backward_step(
        &mut self,
        opt: &mut Optimizer,
        loss: &Tensor,
        step: usize,
    ) -> Result<Option<String>> {
        let Some(sync) = self.sync.as_mut() else {
            opt.backward_step(loss);
            return Ok(None);
        };
        self.dist.set_context(format!("step {step}"));
        opt.zero_grad();
        loss.backward();
        sync.all_reduce_mean(&*self.dist)
            .with_context(|| format!("averaging the gradients of step {step}"))?;
        opt.step();
        if self.check_params {
            let mine = checksum(&self.params)?;
            let mut root = mine.to_le_bytes();
            self.dist.broadcast_bytes(&mut root, 0)?;
            if u64::from_le_bytes(root) != mine {
                bail!(
                    "rank {}: the parameters differ from rank 0's after step {step}",
                    self.dist.rank()
                );
            }
            if step == 0 || self.is_root() {
                return Ok(Some(format!(
                    "rank {}: parameters identical to rank 0's after step {step} ({mine:016x})",
                    self.dist.rank()
                )));
            }
        }
        Ok(None)
    }

    /// Whether any rank was interrupted (Ctrl-C): all ranks stop together.
    pub fn any(&self, flag: bool) -> Result<bool> {
        if self.sync.is_none() {
            return Ok(flag);
        }
        let mut v = [f32::from(u8::from(flag))];
        self.dist.all_reduce_sum(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// The other ranks wait (without a time limit) while rank 0 evaluates
    /// or writes; a dead rank still ends the job (see `Dist::barrier_untimed`).
    pub fn wait_for_root(&self) -> Result<()> {
        if self.sync.is_some() {
            self.dist.barrier_untimed()?;
        }
        Ok(())
    }
}
