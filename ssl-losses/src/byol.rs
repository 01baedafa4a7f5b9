//! BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020),
//! as the W-MSE/CW-RGP release computes it.
//!
//! Loss, over the pairs of views `i < j`, with the online predictions
//! `p = pred(head(enc(x)))` and the EMA target's projections `t` (no
//! gradient):
//!
//! ```text
//! L = 1/P Σ_{i<j} [norm_mse(p_i, sg t_j) + norm_mse(p_j, sg t_i)]
//! ```
//!
//! The target follows the online network by `θ_t ← τ θ_t + (1 − τ) θ_o`
//! after every optimiser step, with τ on the release's cosine schedule in
//! the *epoch*: `τ = 1 − (1 − τ₀)(cos(π·e/E) + 1)/2` for the 0-based epoch
//! `e` of `E` ([`byol_tau`]), the same τ for every step of an epoch, from
//! τ₀ = 0.99 at the first epoch to `1 − (1 − τ₀)(1 − cos(π/E))/2` at the
//! last (never 1). The CW-RGP release calls `model.step(epoch /
//! cfg.epochs)` after each `optimizer.step()` (`base/train.py`), and
//! `BYOL.step` turns that progress into τ (`base/methods/byol.py`); the
//! BYOL paper's schedule runs per step (`k/K`) instead, which this follows
//! the release in not doing.
//!
//! ```
//! let p = tch::Tensor::randn([2, 8, 4], (tch::Kind::Float, tch::Device::Cpu));
//! let t = tch::Tensor::randn([2, 8, 4], (tch::Kind::Float, tch::Device::Cpu));
//! let loss = ssl_losses::byol_loss(&p, &t)?;
//! assert!((0.0..=8.0).contains(&loss.double_value(&[])));
//! assert_eq!(ssl_losses::byol_tau(0, 100, 0.99), 0.99); // epoch 0 of 100
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

use tch::Tensor;

use crate::norm_mse::norm_mse;
use crate::views::{same_shape, view_dims, view_pairs};
use crate::LossError;

/// The symmetric BYOL loss between online predictions `p: [views, m, d]`
/// and target projections `t: [views, m, d]` (detached here), averaged
/// over the pairs of views; each pair contributes up to 8.
pub fn byol_loss(predictions: &Tensor, targets: &Tensor) -> Result<Tensor, LossError> {
    let (views, _, _) = view_dims(predictions, "predictions", 2, 1)?;
    same_shape(predictions, targets, "target embeddings")?;
    let t = targets.detach();
    let pairs = (views * (views - 1) / 2) as f64;
    let total = view_pairs(views)
        .map(|(i, j)| {
            norm_mse(&predictions.get(i), &t.get(j)) + norm_mse(&predictions.get(j), &t.get(i))
        })
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| predictions.zeros_like().sum(None));
    Ok(total / pairs)
}

/// BYOL's EMA coefficient for every step of the 0-based `epoch` of
/// `epochs`: `τ = 1 − (1 − τ₀)·(cos(π·epoch/epochs) + 1)/2`, as the release
/// computes it (`BYOL.step(progress)` in `base/methods/byol.py`, called with
/// `progress = epoch / cfg.epochs` after every step by `base/train.py`).
/// τ₀ at epoch 0, `(1 + τ₀)/2` halfway; `epochs` 0 is read as 1 and
/// `epoch ≥ epochs` gives 1.
pub fn byol_tau(epoch: usize, epochs: usize, tau0: f64) -> f64 {
    let progress = (epoch as f64 / epochs.max(1) as f64).min(1.0);
    1.0 - (1.0 - tau0) * ((PI * progress).cos() + 1.0) / 2.0
}

/// The EMA update `t ← τ·t + (1 − τ)·o` of every target tensor from the
/// online tensor at the same position, in place and without gradient.
pub fn ema_update(targets: &[Tensor], online: &[Tensor], tau: f64) -> Result<(), LossError> {
    if targets.len() != online.len() {
        return Err(LossError::Shape {
            what: "EMA target variables",
            problem: format!(
                "{} target tensors for {} online tensors",
                targets.len(),
                online.len()
            ),
        });
    }
    tch::no_grad(|| {
        for (k, (t, o)) in targets.iter().zip(online).enumerate() {
            if t.size() != o.size() {
                return Err(LossError::Shape {
                    what: "EMA target variables",
                    problem: format!(
                        "tensor {k} has shape {:?}, its online counterpart {:?}",
                        t.size(),
                        o.size()
                    ),
                });
            }
            let mut t = t.shallow_clone();
            let _scaled = t.f_mul_scalar_(tau)?;
            let _updated = t.f_add_(&(o.detach() * (1.0 - tau)))?;
        }
        Ok(())
    })
}

/// BYOL (τ₀ 0.99; the predictor's hidden size is the head size).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByolParams {
    /// Starting EMA coefficient τ₀ (`byol_tau`).
    pub tau0: f64,
}

impl Default for ByolParams {
    fn default() -> Self {
        Self { tau0: 0.99 }
    }
}
