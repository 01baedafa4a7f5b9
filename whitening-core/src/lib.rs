//! Batch and channel whitening for self-supervised learning.
//!
//! Implements the whitening of "An Investigation into Whitening Loss for
//! Self-supervised Learning" (Weng et al., NeurIPS 2022; `docs/reference.md`
//! §2): batch whitening (BW, W-MSE) and channel whitening (CW, CW-RGP) with
//! ZCA, PCA, Cholesky and Newton–Schulz whitening matrices, channel groups
//! and random group partition (RGP), random sub-batches, and the rank
//! diagnostics the paper uses.
//!
//! Everything on [`tch::Tensor`] is batched and differentiable: all
//! sub-batches × views × groups of one call go through one batched
//! covariance, one batched decomposition and one batched product. (The
//! tests hold them to an f64 re-implementation with ndarray and LAPACK,
//! which is not part of the library: building the crate needs libtorch
//! alone.)
//!
//! ```
//! use rand::SeedableRng;
//! use whitening_core::{whiten_sub_batches, WhiteningConfig};
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! // 2 views of 128 examples with 512-d embeddings; sub-batches of 64.
//! let h = tch::Tensor::randn([2, 128, 512], (tch::Kind::Float, tch::Device::Cpu));
//! let cfg = WhiteningConfig::cw_rgp(4);
//! let z = whiten_sub_batches(&h, 64, &cfg, &mut rng).unwrap();
//! assert_eq!(z.size(), [2, 128, 512]);
//! ```

pub mod config;
pub mod cpu;
pub mod diagnostics;
pub mod error;
pub mod group_partition;
pub mod process;
pub mod running_stats;
pub mod symmetric_eigen;
pub mod whitening;
pub mod zca_closed_form;

pub use config::{WhiteningAxis, WhiteningConfig, WhiteningKind};
pub use error::WhiteningError;
pub use group_partition::{random_group_partition, random_sub_batches};
pub use running_stats::BatchWhiteningRunningStats;
pub use symmetric_eigen::eigh_rows_f32;
pub use whitening::{
    covariance_of_centred, whiten, whiten_sub_batches, whiten_with_permutations, whitening_matrix,
};
pub use zca_closed_form::{zca_whiten_centred, ZcaWhitened};
