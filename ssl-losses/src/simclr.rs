//! SimCLR's NT-Xent contrastive loss (`docs/reference.md` §3.3; Chen et al., "A
//! Simple Framework for Contrastive Learning of Visual Representations", ICML
//! 2020), as the W-MSE/CW-RGP release computes it.
//!
//! The head output of all views is batch-normalised (`BatchNorm1d`,
//! affine-free, batch statistics over the `views·m` rows, eps 1e-5) and
//! L2-normalised. For a pair of views `(a, b)` with similarities
//! `s(x, y) = x·y / τ`:
//!
//! ```text
//! ℓ(a, b) = −1/m Σ_r log( e^{s(a_r, b_r)} / (Σ_k e^{s(a_r, b_k)} + Σ_{k≠r} e^{s(a_r, a_k)}) )
//! NT-Xent(a, b) = ½ [ℓ(a, b) + ℓ(b, a)]
//! ```
//!
//! averaged over the pairs of views. τ = 0.5 in the paper's runs.
//!
//! ```
//! let z = tch::Tensor::randn([2, 32, 16], (tch::Kind::Float, tch::Device::Cpu));
//! let loss = ssl_losses::nt_xent(&z, 0.5, true)?;
//! assert!(loss.double_value(&[]) > 0.0);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::batch_norm::{batch_standardize, BATCH_NORM_EPS};
use crate::norm_mse::l2_normalize;
use crate::views::{view_dims, view_pairs};
use crate::LossError;

/// The mean over pairs of views of NT-Xent on `z: [views, m, d]` at
/// temperature `tau`, after batch-normalising the head output when
/// `batch_norm` is true.
pub fn nt_xent(z: &Tensor, tau: f64, batch_norm: bool) -> Result<Tensor, LossError> {
    let (views, m, d) = view_dims(z, "embeddings", 2, 2)?;
    if tau.is_nan() || tau <= 0.0 {
        return Err(LossError::HyperParameter {
            method: "simclr",
            key: "tau",
            value: tau.to_string(),
            reason: "must be positive",
        });
    }
    let z = if batch_norm {
        batch_standardize(&z.view([views * m, d]), BATCH_NORM_EPS).view([views, m, d])
    } else {
        z.shallow_clone()
    };
    let u = l2_normalize(&z);
    let pairs = (views * (views - 1) / 2) as f64;
    let total = view_pairs(views)
        .map(|(i, j)| {
            let (a, b) = (u.get(i), u.get(j));
            (one_direction(&a, &b, tau) + one_direction(&b, &a, tau)) * 0.5
        })
        .reduce(|x, y| x + y)
        .unwrap_or_else(|| z.zeros_like().sum(None));
    Ok(total / pairs)
}

/// `ℓ(a, b)`: cross-entropy of `[a bᵀ, a aᵀ − diag·∞] / τ` against the
/// positive `b_r` of each row `a_r`.
fn one_direction(a: &Tensor, b: &Tensor, tau: f64) -> Tensor {
    let m = a.size()[0];
    let cross = a.matmul(&b.transpose(0, 1)) / tau;
    // The reference subtracts 1e9 on the diagonal: exp underflows to 0.
    let own = a.matmul(&a.transpose(0, 1)) / tau - Tensor::eye(m, (a.kind(), a.device())) * 1e9;
    let logits = Tensor::cat(&[cross.shallow_clone(), own], 1);
    let log_norm = logits.logsumexp(1, false);
    let positive = cross.diagonal(0, 0, 1);
    (log_norm - positive).mean(None)
}

/// SimCLR (τ 0.5, batch-norm on the head output).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimclrParams {
    /// Temperature τ.
    pub tau: f64,
    /// Batch-normalise the head output before L2 normalisation.
    pub batch_norm: bool,
}

impl Default for SimclrParams {
    fn default() -> Self {
        Self {
            tau: 0.5,
            batch_norm: true,
        }
    }
}
