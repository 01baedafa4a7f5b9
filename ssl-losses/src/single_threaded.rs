//! A scope in which libtorch runs on one intra-op thread, for the CPU
//! computation of the whitening losses.

/// Runs libtorch single-threaded until dropped, then restores the thread
/// count; entered for the whole CPU computation (forward and backward) of
/// a whitening loss. Why: CPU `eigh` and `cholesky` hand each small
/// `w × w` matrix to LAPACK in turn, where OpenMP threads only add
/// synchronisation, and on a shared 2-core machine every multi-threaded
/// op of these paths waits on a descheduled team-mate.
/// Measured there (load 6–7, torch 2.13/MKL, CW-RGP 4, release):
/// 96–136 ms per forward + backward with this scope, 180–810 ms with two
/// threads everywhere but `eigh`; batched 64×64 `eigh` alone 10.6 ms on
/// one thread, 26–50 ms on two. The setting is process-wide, so other
/// threads' libtorch calls run single-threaded meanwhile (slower, never
/// wrong).
#[derive(Debug)]
pub(crate) struct SingleThreadedScope {
    previous: i32,
}

impl SingleThreadedScope {
    pub(crate) fn enter() -> Self {
        let previous = tch::get_num_threads();
        if previous != 1 {
            tch::set_num_threads(1);
        }
        Self { previous }
    }
}

impl Drop for SingleThreadedScope {
    fn drop(&mut self) {
        if self.previous != 1 {
            tch::set_num_threads(self.previous);
        }
    }
}
