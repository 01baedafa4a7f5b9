//! Errors a user can act on: each names the backend, the rank or the variable.

/// What can go wrong while setting up or running collectives.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The backend's shared library (or one of its symbols) is not there.
    #[error("{0}")]
    Library(String),
    /// The launch environment is missing or inconsistent.
    #[error("launch environment: {0}")]
    Env(String),
    /// A collective call returned an error code.
    #[error("{backend} {op} failed on rank {rank}: {detail}")]
    Collective {
        /// `mpi` or `nccl`.
        backend: &'static str,
        /// The call, e.g. `MPI_Allreduce`.
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// The library's error string or code.
        detail: String,
    },
    /// The TCP rendezvous (NCCL's unique-id exchange) failed.
    #[error("rendezvous: {0}")]
    Rendezvous(String),
    /// A tensor is not what the collective needs (device, dtype, layout).
    #[error("{0}")]
    Invalid(String),
    /// libtorch refused an operation.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = DistError> = std::result::Result<T, E>;
