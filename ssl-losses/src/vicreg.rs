//! VICReg (`docs/reference.md` §3.7; Bardes, Ponce & LeCun, "VICReg:
//! Variance-Invariance-Covariance Regularization for Self-Supervised
//! Learning", ICLR 2022):
//!
//! ```text
//! L = λ·mean (z₁ − z₂)²
//!   + μ·[mean_k relu(1 − √(Var(z₁)_k + 1e-4)) + same for z₂]
//!   + ν·[Σ_{i≠j} Cov(z₁)_ij² / d + same for z₂]
//! ```
//!
//! with unbiased variances and covariances over the batch; λ = μ = 25,
//! ν = 1.
//!
//! ```
//! let z = tch::Tensor::randn([2, 64, 8], (tch::Kind::Float, tch::Device::Cpu));
//! let loss = ssl_losses::vicreg_loss(&z, &ssl_losses::VicRegWeights::default())?;
//! assert!(loss.double_value(&[]) > 0.0);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::views::two_view_dims;
use crate::LossError;

/// Added to the variance before the square root.
const VAR_EPS: f64 = 1e-4;

/// The three weights of VICReg.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VicRegWeights {
    /// Invariance weight λ (`vicreg_sim`, 25).
    pub sim: f64,
    /// Variance weight μ (`vicreg_var`, 25).
    pub var: f64,
    /// Covariance weight ν (`vicreg_cov`, 1).
    pub cov: f64,
}

impl Default for VicRegWeights {
    fn default() -> Self {
        Self {
            sim: 25.0,
            var: 25.0,
            cov: 1.0,
        }
    }
}

/// The VICReg loss of `z: [2, m, d]`.
pub fn vicreg_loss(z: &Tensor, w: &VicRegWeights) -> Result<Tensor, LossError> {
    let (m, d) = two_view_dims(z, "embeddings", 2)?;
    let (z1, z2) = (z.get(0), z.get(1));
    let invariance = (&z1 - &z2).square().mean(None);
    let centred = z - z.mean_dim(1, true, None);
    let var = centred.square().sum_dim_intlist(1, false, None) / (m - 1) as f64; // [2, d]
    let variance = (1.0_f64 - (var + VAR_EPS).sqrt())
        .relu()
        .mean_dim(1, false, None)
        .sum(None);
    let cov = centred.transpose(1, 2).matmul(&centred) / (m - 1) as f64; // [2, d, d]
    let off = cov.square().sum(None) - cov.diagonal(0, 1, 2).square().sum(None);
    let covariance = off / d as f64;
    Ok(invariance * w.sim + variance * w.var + covariance * w.cov)
}
