//! Shuffled-DBN's "whitening": batch standardisation per random sub-batch
//! (Hua et al., "On Feature Decorrelation in Self-Supervised Learning",
//! ICCV 2021, as reproduced in the CW-RGP paper's Table 1). This is what
//! the release's `bn.py` computes; Hua et al.'s transform also decorrelates
//! (`docs/reference.md` §3.2 and §10).
//!
//! Each sub-batch `x ∈ R^{w×d}` becomes `(x − μ) / √(σ² + eps)` with the
//! per-channel mean `μ` and *biased* variance `σ²` over its `w` rows:
//! `BatchNorm1d(d, eps, affine=False, track_running_stats=False)` in
//! training mode. The reference passes `w_eps` (default 0) as `eps`; the
//! method's default here is BatchNorm1d's 1e-5 (torch 2.x rejects 0).
//! The loss itself is [`crate::WhiteningLoss::shuffled_dbn`].

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::batch_norm::batch_standardize;

/// Standardises each of the `n` sub-batches of `x: [n, w, d]` over its `w`
/// rows: `(x − mean) / sqrt(var_biased + eps)`, channel by channel.
pub fn sub_batch_standardize(x: &Tensor, eps: f64) -> Tensor {
    batch_standardize(x, eps)
}

/// Shuffled-DBN (reference `bn` method: `w_size` 128). The reference passes
/// `w_eps` (0) as the BatchNorm eps, which torch ≥ 2.x rejects in training
/// ("eps must be positive"); the default here is BatchNorm1d's 1e-5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShuffledDbnParams {
    /// Sub-batch size.
    pub w_size: i64,
    /// Sub-batch splits averaged per step.
    pub w_iter: usize,
    /// Normalised or plain MSE.
    pub norm: bool,
    /// BatchNorm eps (`w_eps`).
    pub eps: f64,
}

impl Default for ShuffledDbnParams {
    fn default() -> Self {
        Self {
            w_size: 128,
            w_iter: 1,
            norm: true,
            eps: 1e-5,
        }
    }
}
