//! Barlow Twins (`docs/reference.md` §3.6; Zbontar et al., "Barlow Twins:
//! Self-Supervised Learning via Redundancy Reduction", ICML 2021):
//!
//! ```text
//! c = BN(z₁)ᵀ BN(z₂) / m        (d × d cross-correlation)
//! L = Σ_i (1 − c_ii)² + λ Σ_{i≠j} c_ij²
//! ```
//!
//! `BN` standardises each channel over the batch (biased variance, eps
//! 1e-5: `BatchNorm1d` in training mode, without its affine parameters,
//! which a trainer may add to the head). λ = 0.008 is the CW-RGP
//! reference default (the Barlow Twins paper uses 0.0051).
//!
//! Departure from the reference code, following the Barlow Twins paper
//! (`docs/reference.md` §10): the reference divides `c` by the embedding size
//! `d` (`c.div_(len(z1[0]))`), not by the batch size `m`; the two differ by the
//! factor `m/d` (1 at the reference defaults bs = emb = 512).
//!
//! ```
//! let view = tch::Tensor::randn([1, 64, 8], (tch::Kind::Float, tch::Device::Cpu));
//! let z = view.expand([2, 64, 8], false); // identical views: c_ii = 1
//! let loss = ssl_losses::barlow_twins_loss(&z, 0.008)?;
//! // Only λ·Σ c_ij² of the sample correlations (≈ 1/m each) remains.
//! assert!(loss.double_value(&[]) < 0.05);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use tch::Tensor;

use crate::batch_norm::{batch_standardize, BATCH_NORM_EPS};
use crate::views::two_view_dims;
use crate::LossError;

/// The Barlow Twins loss of `z: [2, m, d]` with off-diagonal weight `lambda`.
pub fn barlow_twins_loss(z: &Tensor, lambda: f64) -> Result<Tensor, LossError> {
    let (m, _) = two_view_dims(z, "embeddings", 2)?;
    let zn = batch_standardize(z, BATCH_NORM_EPS);
    let c = zn.get(0).transpose(0, 1).matmul(&zn.get(1)) / m as f64;
    let diag = c.diagonal(0, 0, 1);
    let on = (1.0_f64 - &diag).square().sum(None);
    let off = c.square().sum(None) - diag.square().sum(None);
    Ok(on + off * lambda)
}
