//! Data-parallel training (`--dist`): the trainer's side of ssl-dist.
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
//! The communicator of the process lives here (set once by `ssl train`),
//! so the trainer reaches it without threading it through every call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ssl_dist::{broadcast_tensors, checksum, Backend, Communicator, Dist, GradSync};
use ssl_models::Optimizer;
use tch::{Device, Tensor};

use crate::config::Config;

use super::networks::Networks;

#[derive(Debug, Clone, Args)]
pub struct DistArgs {
    /// Data-parallel backend: mpi (CPU processes under `mpirun -np N`), nccl
    /// (one GPU per rank, torchrun-style RANK/WORLD_SIZE/MASTER_ADDR), auto
    /// (mpi under mpirun, nccl under torchrun with CUDA), or none.
    #[arg(long, default_value = "auto", value_name = "BACKEND")]
    pub dist: String,
    /// Seconds a collective (or the NCCL rendezvous) may wait for the other
    /// ranks before the job is ended with an error naming the call.
    #[arg(long, default_value_t = 600.0, value_name = "SECONDS")]
    pub dist_timeout: f64,
}

static CURRENT: Mutex<Option<Arc<Dist>>> = Mutex::new(None);

/// The communicator of this process (one process unless `init` ran).
pub fn current() -> Arc<Dist> {
    CURRENT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(|| Arc::new(Dist::single()))
        .clone()
}

/// Starts the backend `args` name (a no-op for one process).
pub fn init(args: &DistArgs) -> Result<Arc<Dist>> {
    let backend: Backend = args.dist.parse().map_err(anyhow::Error::msg)?;
    if !(args.dist_timeout > 0.0 && args.dist_timeout.is_finite()) {
        bail!("--dist-timeout {}: expected seconds > 0", args.dist_timeout);
    }
    let timeout = Duration::from_secs_f64(args.dist_timeout);
    let report: ssl_dist::Report = Arc::new(|m| say(format!("error: {m}")));
    let dist = Arc::new(Dist::init(backend, timeout, report).context("--dist")?);
    if dist.world_size() > 1 {
        // One intra-op thread per core share: ranks on one machine would
        // otherwise oversubscribe it (override with OMP_NUM_THREADS).
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let local = local_world();
            tch::set_num_threads((cores / local).max(1) as i32);
        }
        if dist.is_root() {
            say(format!(
                "train | data-parallel: {} ranks over {} (timeout {:.0} s)",
                dist.world_size(),
                dist.backend(),
                args.dist_timeout
            ));
        }
    }
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(dist.clone());
    Ok(dist)
}

fn local_world() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(1)
}

/// Ends the backend (MPI_Finalize, NCCL teardown) after a successful run.
pub fn shutdown() -> Result<()> {
    let dist = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(d) = dist {
        if d.world_size() > 1 {
            d.barrier_untimed()?;
        }
        drop(d);
    }
    Ok(())
}

/// Ends the whole job after an error on this rank: the message, then
/// `MPI_Abort` / `ncclCommAbort`, so the other ranks do not wait forever.
pub fn abort_on_error(err: &anyhow::Error) {
    let d = current();
    if d.world_size() > 1 {
        let mut text = format!("error (rank {} of {}): {err}", d.rank(), d.world_size());
        for cause in err.chain().skip(1) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
        say(text);
        d.abort(ssl_dist::ABORT_CODE);
    }
}

/// The device of this rank: `cuda:LOCAL_RANK` under NCCL, else `device`.
pub fn rank_device(device: Device) -> Device {
    match current().device() {
        Device::Cuda(i) => Device::Cuda(i),
        _ => device,
    }
}

/// This rank's share of the global batch; fails when the ranks cannot
/// split it evenly (or a whitening sub-batch would straddle ranks).
pub fn per_rank_batch(cfg: &Config) -> Result<i64> {
    let p = current().world_size() as i64;
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
pub fn shard() -> ssl_data::Shard {
    let d = current();
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
    fail_at: Option<(usize, usize)>,
}

impl DataParallel {
    /// Takes rank 0's state (after a resume too) and plans the gradient
    /// buckets of `nets`' trainable parameters.
    pub fn new(nets: &Networks) -> Result<Self> {
        let dist = current();
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
        // Test hooks: SSL_DIST_CHECK_PARAMS=1 compares the parameters of all
        // ranks after every step; SSL_DIST_FAIL_AT=RANK:STEP makes that rank
        // die (exit 3, no goodbye) after that step, as a crash would.
        let check_params = std::env::var("SSL_DIST_CHECK_PARAMS").is_ok_and(|v| v == "1");
        let fail_at = std::env::var("SSL_DIST_FAIL_AT").ok().and_then(|v| {
            let (r, s) = v.split_once(':')?;
            Some((r.parse().ok()?, s.parse().ok()?))
        });
        Ok(Self {
            dist,
            sync,
            params,
            check_params,
            fail_at,
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

    /// Backward, gradient averaging over the ranks, optimiser step. With
    /// one process this is exactly `opt.backward_step(loss)`.
    pub fn backward_step(&mut self, opt: &mut Optimizer, loss: &Tensor, step: usize) -> Result<()> {
        let Some(sync) = self.sync.as_mut() else {
            opt.backward_step(loss);
            return Ok(());
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
                // One write per line: mpirun interleaves the ranks' output
                // write by write.
                let line = format!(
                    "train | rank {}: parameters identical to rank 0's after step {step} \
                     ({mine:016x})\n",
                    self.dist.rank()
                );
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            }
        }
        if self.fail_at == Some((self.dist.rank(), step + 1)) {
            say(format!(
                "rank {}: SSL_DIST_FAIL_AT: dying after step {}",
                self.dist.rank(),
                step + 1
            ));
            std::process::exit(3);
        }
        Ok(())
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

/// One line (or block) to stderr in a single write: stderr is unbuffered
/// and `eprintln!` writes piece by piece, which mpirun interleaves with the
/// other ranks' output.
fn say(mut text: String) {
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn loader_shards_follow_the_sampler_contract() {
        // ssl-data's Shard and ssl-dist's shard implement one contract.
        let order: Vec<usize> = (0..23).rev().collect();
        for count in 1..5 {
            for rank in 0..count {
                for drop_last in [false, true] {
                    let s = ssl_data::Shard { rank, count };
                    assert_eq!(
                        s.apply(order.clone(), drop_last),
                        ssl_dist::shard(&order, rank, count, drop_last)
                    );
                }
            }
        }
    }
}
