//! `--dist`: the program's side of data-parallel training. It starts the
//! backend (and chooses the process-wide thread count for ranks sharing a
//! machine), hands the communicator to the trainer, and ends or aborts the
//! job; the training side is `ssl_train::data_parallel`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ssl_dist::{Backend, Communicator, Dist};

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
    Ok(dist)
}

fn local_world() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(1)
}

/// Ends the backend (MPI_Finalize, NCCL teardown) after a successful run.
pub fn shutdown(dist: Arc<Dist>) -> Result<()> {
    if dist.world_size() > 1 {
        dist.barrier_untimed()?;
    }
    drop(dist);
    Ok(())
}

/// Ends the whole job after an error on this rank: the message, then
/// `MPI_Abort` / `ncclCommAbort`, so the other ranks do not wait forever.
pub fn abort_on_error(d: &Dist, err: &anyhow::Error) {
    if d.world_size() > 1 {
        let mut text = format!("error (rank {} of {}): {err}", d.rank(), d.world_size());
        for cause in err.chain().skip(1) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
        say(text);
        d.abort(ssl_dist::ABORT_CODE);
    }
}

/// One line (or block) to stderr in a single write: stderr is unbuffered
/// and `eprintln!` writes piece by piece, which mpirun interleaves with the
/// other ranks' output.
pub fn say(mut text: String) {
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}

/// `SSL_DIST_FAIL_AT=RANK:STEP`, a test hook: that rank dies (exit 3, no
/// goodbye) after that step, as a crash would.
pub fn fail_at() -> Option<(usize, usize)> {
    let v = std::env::var("SSL_DIST_FAIL_AT").ok()?;
    let (r, s) = v.split_once(':')?;
    Some((r.parse().ok()?, s.parse().ok()?))
}

/// `SSL_DIST_CHECK_PARAMS=1`, a test hook: compare the parameters of all
/// ranks after every step.
pub fn check_params() -> bool {
    std::env::var("SSL_DIST_CHECK_PARAMS").is_ok_and(|v| v == "1")
}
