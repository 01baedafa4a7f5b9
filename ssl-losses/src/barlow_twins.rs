//! Barlow Twins (Zbontar et al., "Barlow Twins: Self-Supervised Learning
//! via Redundancy Reduction", ICML 2021), as the CW-RGP release computes it
//! (`base/methods/barlow_twins.py`, `BARLOW_TWINS.forward`):
//!
//! ```text
//! c = BN(z₁)ᵀ BN(z₂) / d        (d × d, d = the embedding size)
//! L = Σ_i (1 − c_ii)² + λ Σ_{i≠j} c_ij²
//! ```
//!
//! `BN` standardises each channel over the batch (biased variance, eps
//! 1e-5: `BatchNorm1d` in training mode, without its affine parameters,
//! which a trainer may add to the head). λ = 0.008 is the CW-RGP
//! release's default (the Barlow Twins paper uses 0.0051).
//!
//! The divisor follows the release, `c.div_(len(z1[0]))`: the embedding
//! size `d`, not the batch size `m` of the Barlow Twins paper (and of
//! other descriptions of this loss). Each standardised column has squared
//! norm `m`, so `c_ii` of identical views is `m/d`, not 1: the two
//! definitions agree only when `m = d`, as at the release's defaults
//! (`base/cfg.py`: bs = emb = 512); elsewhere this `c` is the paper's
//! times `m/d`.
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//! let (m, d) = (64, 64);
//! let view = Tensor::randn([1, m, d], (Kind::Float, Device::Cpu));
//! let z = view.expand([2, m, d], false); // identical views: c_ii = m/d = 1
//! let loss = ssl_losses::barlow_twins_loss(&z, 0.008)?;
//! // Only λ·Σ_{i≠j} c_ij² of the sample correlations (≈ 1/m each) remains.
//! assert!(loss.double_value(&[]) < 1.0);
//! // Twice the batch: c_ii = 2, so each of the 64 channels adds (1 − 2)².
//! let view = Tensor::randn([1, 2 * m, d], (Kind::Float, Device::Cpu));
//! let z = view.expand([2, 2 * m, d], false);
//! assert!(ssl_losses::barlow_twins_loss(&z, 0.008)?.double_value(&[]) > 60.0);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::batch_norm::{batch_standardize, BATCH_NORM_EPS};
use crate::views::two_view_dims;
use crate::LossError;

/// The Barlow Twins loss of `z: [2, m, d]` with off-diagonal weight
/// `lambda`, each view batch-standardised here (the release's `self.bn` at
/// its initial `γ = 1`, `β = 0`); the cross-correlation is divided by `d`,
/// as in the release's `base/methods/barlow_twins.py` (see the module
/// documentation).
pub fn barlow_twins_loss(z: &Tensor, lambda: f64) -> Result<Tensor, LossError> {
    two_view_dims(z, "embeddings", 2)?;
    barlow_twins_loss_of_normalized(&batch_standardize(z, BATCH_NORM_EPS), lambda)
}

/// The Barlow Twins loss of views that are already batch-normalised,
/// `zn: [2, m, d]` = `[bn(z₁), bn(z₂)]`: for a network that applies the
/// release's learnable `BatchNorm1d(emb)` (`self.bn`, affine, each view
/// separately) itself. `c = zn₁ᵀ zn₂ / d`, then the loss of the module
/// documentation.
pub fn barlow_twins_loss_of_normalized(zn: &Tensor, lambda: f64) -> Result<Tensor, LossError> {
    let (_, d) = two_view_dims(zn, "normalised embeddings", 2)?;
    let c = zn.get(0).transpose(0, 1).matmul(&zn.get(1)) / d as f64;
    let diag = c.diagonal(0, 0, 1);
    let on = (1.0_f64 - &diag).square().sum(None);
    let off = c.square().sum(None) - diag.square().sum(None);
    Ok(on + off * lambda)
}

/// Barlow Twins (λ 0.008, the CW-RGP reference default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BarlowTwinsParams {
    /// Off-diagonal weight λ (`barlow_lambda`).
    pub lambda: f64,
}

impl Default for BarlowTwinsParams {
    fn default() -> Self {
        Self { lambda: 0.008 }
    }
}
