//! Errors a user can act on.

use crate::config::WhiteningAxis;

/// What can go wrong in whitening, each with the remedy in its message.
#[derive(Debug, thiserror::Error)]
pub enum WhiteningError {
    /// The embedding dimension is not a multiple of the number of groups.
    #[error("embedding dimension d = {d} is not divisible by groups g = {groups}: choose g among the divisors of {d}")]
    GroupsDoNotDivide { d: i64, groups: i64 },

    /// The batch is not a multiple of the sub-batch size.
    #[error("batch of {m} examples is not divisible by the sub-batch size w_size = {w_size}: choose a w_size that divides {m}")]
    SubBatchDoesNotDivide { m: i64, w_size: i64 },

    /// The covariance to whiten is singular by construction.
    #[error(
        "rank-deficient covariance for {axis} whitening: {samples} samples (minus {minus}) estimate \
         a {vars}x{vars} covariance, whose rank is at most {rank}. {hint}"
    )]
    RankDeficient {
        axis: WhiteningAxis,
        samples: i64,
        vars: i64,
        minus: f64,
        rank: i64,
        hint: String,
    },

    /// The whitening matrix has NaN or infinite entries.
    #[error(
        "the {kind} whitening matrix is not finite: the covariance met condition number {condition:.3e} \
         (eigenvalues from {min_eig:.3e} to {max_eig:.3e}); set a shrinkage eps > 0 (e.g. 1e-4), use \
         fewer groups or a larger sub-batch"
    )]
    NonFinite {
        kind: String,
        condition: f64,
        min_eig: f64,
        max_eig: f64,
    },

    /// The eigen-decomposition of a covariance failed.
    #[error(
        "eigen-decomposition of a covariance failed: {0}; check the embeddings for NaN/inf (a \
         diverging run), or set a shrinkage eps > 0 (e.g. 1e-4)"
    )]
    Decomposition(String),

    /// The input tensor has the wrong rank or dtype.
    #[error("bad input: {0}")]
    BadInput(String),

    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
