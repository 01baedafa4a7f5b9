//! Zero-CL's instance loss, "Zero-ICL" (`docs/reference.md` §3.8; Zhang et al.,
//! "Zero-CL: Instance and Feature Decorrelation for Negative-Free Symmetric
//! Contrastive Learning", ICLR 2022), as the CW-RGP release reproduces it.
//!
//! For each view `z ∈ R^{m×d}`:
//! 1. standardise each row over its `d` features: `(z_r − mean z_r) / std z_r`
//!    (unbiased std);
//! 2. ZCA-whiten along the batch axis: `Σ = z zᵀ / (d − 1)` (`m × m`),
//!    `Σ' = 0.9 Σ + 0.1 I = U S Uᵀ`, `W = U (S + 1e-5)^{-1/2} Uᵀ` (no
//!    gradient through `W`), `ẑ = W z`.
//!
//! Then `c = ẑ₁ ẑ₂ᵀ / d` (`m × m`) and `L = Σ_i (1 − c_ii)²`.
//!
//! ```
//! let z = tch::Tensor::randn([2, 16, 64], (tch::Kind::Float, tch::Device::Cpu));
//! let loss = ssl_losses::zero_cl_instance_loss(&z)?;
//! assert!(loss.double_value(&[]) >= 0.0);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::views::two_view_dims;
use crate::LossError;

/// Shrinkage towards the identity before the decomposition.
const SHRINK: f64 = 0.1;
/// Added to the eigenvalues before `^{-1/2}`.
const EIG_EPS: f64 = 1e-5;

/// The Zero-ICL loss of `z: [2, m, d]`.
pub fn zero_cl_instance_loss(z: &Tensor) -> Result<Tensor, LossError> {
    let (m, d) = two_view_dims(z, "embeddings", 1)?;
    if d < 2 {
        return Err(LossError::Shape {
            what: "embeddings",
            problem: format!("Zero-ICL standardises over d features and needs d >= 2, got d = {d}"),
        });
    }
    let std_rows = (z - z.mean_dim(-1, true, None)) / z.std_dim(-1, true, true);
    let cov = std_rows.matmul(&std_rows.transpose(1, 2)) / (d - 1) as f64; // [2, m, m]
    let eye = Tensor::eye(m, (z.kind(), z.device()));
    let shrunk = cov.detach() * (1.0 - SHRINK) + eye * SHRINK;
    let (s, u) = shrunk.f_linalg_eigh("L")?;
    let w = (&u * (s + EIG_EPS).rsqrt().unsqueeze(-2)).matmul(&u.transpose(-1, -2));
    let white = w.matmul(&std_rows); // [2, m, d]
    let c_diag = (white.get(0) * white.get(1)).sum_dim_intlist(-1, false, None) / d as f64;
    Ok((1.0_f64 - c_diag).square().sum(None))
}

/// Zero-CL's instance loss has no hyper-parameters of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroClParams {}
