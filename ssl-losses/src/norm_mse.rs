//! The normalised mean squared error of the W-MSE family
//! (`docs/reference.md` §3.1).
//!
//! `norm_mse(a, b) = 2 − 2·mean_r cos(a_r, b_r)`: the mean over rows of
//! `‖â_r − b̂_r‖²` with `â_r = a_r / max(‖a_r‖, 1e-12)` (PyTorch's
//! `F.normalize`), so it lies in `[0, 4]`. Ermolov et al., "Whitening for
//! Self-Supervised Representation Learning", ICML 2021, eq. (2);
//! the `--no_norm` variant is the plain element-wise MSE.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Smallest norm `F.normalize` divides by.
const NORMALIZE_EPS: f64 = 1e-12;

/// Rows of `x` (last axis) divided by `max(‖x_r‖₂, 1e-12)`, as
/// `torch.nn.functional.normalize(x, dim=-1)`.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    // Clamping the squared norm keeps the gradient finite at a zero row,
    // where `F.normalize`'s gradient is finite too.
    let norm = x
        .square()
        .sum_dim_intlist(-1, true, None)
        .clamp_min(NORMALIZE_EPS * NORMALIZE_EPS)
        .sqrt();
    x / norm
}

/// `2 − 2·mean_r cos(a_r, b_r)` over the rows of two `[.., d]` tensors of
/// the same shape (cosine along the last axis, mean over all other axes).
pub fn norm_mse(a: &Tensor, b: &Tensor) -> Tensor {
    let cos = (l2_normalize(a) * l2_normalize(b)).sum_dim_intlist(-1, false, None);
    2.0 - cos.mean(None) * 2.0
}

/// Plain element-wise MSE `mean (a − b)²` (`F.mse_loss`, the `--no_norm`
/// variant).
pub fn plain_mse(a: &Tensor, b: &Tensor) -> Tensor {
    (a - b).square().mean(None)
}

/// The plain control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlainParams {
    /// Normalised or plain MSE.
    pub norm: bool,
}

impl Default for PlainParams {
    fn default() -> Self {
        Self { norm: true }
    }
}
