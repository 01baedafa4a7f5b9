//! ssl-dist: data-parallel training across processes on existing engines.
//!
//! - [`Communicator`]: rank, world size, in-place all-reduce (sum) of `f32`
//!   buffers and tensors, broadcast, barrier, abort; [`Single`] for one
//!   process.
//! - Backends loaded at run time with `dlopen`, so nothing here is needed
//!   at build time: [`Mpi`] (Open MPI, CPU processes under `mpirun`) and
//!   [`Nccl`] (CUDA, `torchrun`-style launches, the engine PyTorch's DDP
//!   uses). Asking for a backend whose library is missing is an error that
//!   says what to install.
//! - [`Dist`]: the handle a trainer holds: a communicator whose every call
//!   runs under a [`Watchdog`], so a dead or hung peer ends the job with a
//!   message naming the call (and, on NCCL, the dead rank) within the
//!   timeout instead of hanging.
//! - [`GradSync`]: DDP-style gradient bucketing (a few ~25 MB buffers,
//!   all-reduced and averaged); [`broadcast_tensors`] for the initial
//!   parameters; [`checksum`] to compare parameters across ranks.
//! - [`LaunchEnv`]: the launch variables, `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//!   `MASTER_ADDR` and `MASTER_PORT` (torchrun, SLURM scripts) or
//!   `OMPI_COMM_WORLD_*` (mpirun).
//! - The distributed sampler is ssl-data's loader `Shard` (PyTorch's
//!   `DistributedSampler` contract); this crate works on tensors only.
//!
//! Architecture Invariant: knows nothing of models, losses or datasets;
//! works on tensors; never prints (the caller's `report`
//! callback receives the watchdog's message just before the job is ended).

mod bucket;
mod comm;
mod env;
mod error;
mod mpi;
mod nccl;
pub mod rendezvous;
mod watchdog;

use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tch::{Device, Tensor};

pub use bucket::{
    broadcast_tensors, checksum, Bucket, BucketPlan, GradSync, Slot, DEFAULT_BUCKET_BYTES,
};
pub use comm::{Communicator, Single};
pub use env::{LaunchEnv, Launcher};
pub use error::{DistError, Result};
pub use mpi::Mpi;
pub use nccl::{nccl_version, Nccl};
pub use watchdog::{Expire, Watchdog};

/// Exit status of a job ended by the watchdog or by an error on one rank.
pub const ABORT_CODE: i32 = 1;

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Open MPI (CPU processes under `mpirun`).
    Mpi,
    /// NCCL (one GPU per rank, `torchrun`-style environment).
    Nccl,
    /// `mpi` under mpirun, `nccl` under torchrun with CUDA, else none.
    Auto,
    /// One process.
    None,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mpi" => Ok(Self::Mpi),
            "nccl" => Ok(Self::Nccl),
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            _ => Err(format!("unknown backend {s:?}: mpi, nccl, auto or none")),
        }
    }
}

impl Backend {
    /// The concrete backend for `self` under launch environment `env`
    /// (`Auto` resolved; `None` refused when a launcher started several
    /// processes, which would otherwise all write the same run).
    pub fn resolve(self, env: &LaunchEnv, cuda: bool) -> Result<Backend> {
        let multi = env.world_size > 1;
        match self {
            Backend::Auto => Ok(match env.launcher {
                Launcher::Mpirun => Backend::Mpi,
                Launcher::Torchrun if multi && cuda => Backend::Nccl,
                Launcher::Torchrun if multi => {
                    return Err(DistError::Env(
                        "WORLD_SIZE > 1 but no GPU: NCCL needs CUDA; for CPU processes launch \
                         with `mpirun -np N` (--dist mpi)"
                            .into(),
                    ))
                }
                _ => Backend::None,
            }),
            Backend::None if multi => Err(DistError::Env(format!(
                "this process is rank {} of {} but --dist none was given: every rank would \
                 train alone; use --dist auto",
                env.rank, env.world_size
            ))),
            b => Ok(b),
        }
    }
}

/// The communicator a trainer holds: every collective runs under the
/// watchdog with the configured timeout.
pub struct Dist {
    // Field order matters: the watchdog (whose action holds the
    // communicator) stops before the communicator is finalised.
    dog: Watchdog,
    comm: Arc<dyn Communicator>,
    timeout: Duration,
    context: Mutex<String>,
    env: LaunchEnv,
}

impl std::fmt::Debug for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dist")
            .field("comm", &self.comm)
            .field("timeout", &self.timeout)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// Receives a fatal message (print it); the job is ended right after.
pub type Report = Arc<dyn Fn(&str) + Send + Sync>;

impl Dist {
    /// One process: collectives are no-ops.
    pub fn single() -> Self {
        Self::wrap(
            Arc::new(Single),
            Duration::from_secs(3600),
            LaunchEnv::single(),
            Arc::new(|_| {}),
        )
    }

    /// Wraps `comm` (any backend, e.g. a test double) with the watchdog.
    pub fn wrap(
        comm: Arc<dyn Communicator>,
        timeout: Duration,
        env: LaunchEnv,
        report: Report,
    ) -> Self {
        let weak: Weak<dyn Communicator> = Arc::downgrade(&comm);
        let dog = Watchdog::start(comm.rank(), fatal(weak, report));
        Self {
            dog,
            comm,
            timeout,
            context: Mutex::new(String::new()),
            env,
        }
    }

    /// Starts `backend` (resolved with [`Backend::resolve`]) for the launch
    /// environment of this process. `timeout` bounds every collective and
    /// the rendezvous; `report` receives the message of a fatal failure
    /// just before the job is ended.
    pub fn init(backend: Backend, timeout: Duration, report: Report) -> Result<Self> {
        let env = LaunchEnv::from_env()?;
        let backend = backend.resolve(&env, tch::Cuda::is_available())?;
        match backend {
            Backend::None | Backend::Auto => Ok(Self::single()),
            Backend::Mpi => {
                let mpi = Mpi::init()?;
                if env.launcher == Launcher::Torchrun && mpi.world_size() != env.world_size {
                    return Err(DistError::Env(format!(
                        "WORLD_SIZE={} but MPI sees {} process(es): the MPI backend needs \
                         `mpirun -np N`, not torchrun",
                        env.world_size,
                        mpi.world_size()
                    )));
                }
                Ok(Self::wrap(Arc::new(mpi), timeout, env, report))
            }
            Backend::Nccl => {
                let nccl = Arc::new(Nccl::init(&env, timeout)?);
                let weak: Weak<dyn Communicator> =
                    Arc::downgrade(&(nccl.clone() as Arc<dyn Communicator>));
                let on_death = fatal(weak, report.clone());
                nccl.links().monitor(on_death);
                Ok(Self::wrap(nccl, timeout, env, report))
            }
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }
    /// Rank 0: the one that logs, evaluates and writes checkpoints.
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }
    /// `mpi`, `nccl` or `single`.
    pub fn backend(&self) -> &'static str {
        self.comm.backend()
    }
    /// The limit on every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// The launch environment.
    pub fn env(&self) -> &LaunchEnv {
        &self.env
    }

    /// Names what the next collectives belong to (e.g. `step 12`), for the
    /// watchdog's message.
    pub fn set_context(&self, what: impl Into<String>) {
        *self.context.lock().unwrap_or_else(|p| p.into_inner()) = what.into();
    }

    fn watched<T>(&self, op: &str, limit: Option<Duration>, f: impl FnOnce() -> T) -> T {
        let ctx = self
            .context
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let name = if ctx.is_empty() {
            format!("{} {op}", self.comm.backend())
        } else {
            format!("{} {op} ({ctx})", self.comm.backend())
        };
        self.dog.watch(&name, limit, f)
    }

    /// A barrier with no time limit: for waits whose length is legitimately
    /// unbounded, such as the other ranks waiting while rank 0 evaluates.
    /// (A dead rank still ends the job: mpirun kills it, NCCL's liveness
    /// links abort it.)
    pub fn barrier_untimed(&self) -> Result<()> {
        if self.world_size() == 1 {
            return Ok(());
        }
        self.watched("barrier", None, || self.comm.barrier())
    }
}

fn fatal(comm: Weak<dyn Communicator>, report: Report) -> Expire {
    Arc::new(move |msg: String| {
        report(&msg);
        match comm.upgrade() {
            Some(c) => c.abort(ABORT_CODE),
            None => std::process::exit(ABORT_CODE),
        }
    })
}

impl Communicator for Dist {
    fn backend(&self) -> &'static str {
        self.comm.backend()
    }
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world_size(&self) -> usize {
        self.comm.world_size()
    }
    fn device(&self) -> Device {
        self.comm.device()
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.watched("all-reduce", Some(self.timeout), || {
            self.comm.all_reduce_sum(buf)
        })
    }
    fn all_reduce_sum_tensor(&self, t: &mut Tensor) -> Result<()> {
        self.watched("all-reduce", Some(self.timeout), || {
            self.comm.all_reduce_sum_tensor(t)
        })
    }
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        self.watched("broadcast", Some(self.timeout), || {
            self.comm.broadcast_bytes(buf, root)
        })
    }
    fn broadcast_tensor(&self, t: &mut Tensor, root: usize) -> Result<()> {
        self.watched("broadcast", Some(self.timeout), || {
            self.comm.broadcast_tensor(t, root)
        })
    }
    fn barrier(&self) -> Result<()> {
        self.watched("barrier", Some(self.timeout), || self.comm.barrier())
    }
    fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_resolution() {
        let single = LaunchEnv::single();
        let mpi = LaunchEnv {
            launcher: Launcher::Mpirun,
            world_size: 2,
            ..LaunchEnv::single()
        };
        let torchrun = LaunchEnv {
            launcher: Launcher::Torchrun,
            world_size: 4,
            rank: 1,
            ..LaunchEnv::single()
        };
        assert_eq!(Backend::Auto.resolve(&single, true).unwrap(), Backend::None);
        assert_eq!(Backend::Auto.resolve(&mpi, false).unwrap(), Backend::Mpi);
        assert_eq!(
            Backend::Auto.resolve(&torchrun, true).unwrap(),
            Backend::Nccl
        );
        let e = Backend::Auto
            .resolve(&torchrun, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mpirun"), "{e}");
        let e = Backend::None
            .resolve(&torchrun, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 1 of 4"), "{e}");
        assert_eq!(Backend::Mpi.resolve(&single, false).unwrap(), Backend::Mpi);
        assert_eq!("nccl".parse::<Backend>().unwrap(), Backend::Nccl);
        assert!("gloo".parse::<Backend>().is_err());
    }

    #[test]
    fn single_dist_is_a_no_op() {
        let d = Dist::single();
        assert!(d.is_root() && d.world_size() == 1);
        let mut v = [1.0f32, 2.0];
        d.all_reduce_sum(&mut v).unwrap();
        assert_eq!(v, [1.0, 2.0]);
        d.barrier().unwrap();
        d.barrier_untimed().unwrap();
    }
}
