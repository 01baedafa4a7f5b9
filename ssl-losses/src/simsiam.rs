//! SimSiam (`docs/reference.md` §3.5; Chen & He, "Exploring Simple Siamese
//! Representation Learning", CVPR 2021):
//!
//! ```text
//! L = −½ [mean_r cos(p₁, sg z₂) + mean_r cos(p₂, sg z₁)]
//! ```
//!
//! with the predictor outputs `p` and the projections `z` of two views;
//! the cosine has eps 1e-8 (`nn.CosineSimilarity`). Lies in `[−1, 1]`.
//!
//! ```
//! let z = tch::Tensor::randn([2, 8, 4], (tch::Kind::Float, tch::Device::Cpu));
//! let loss = ssl_losses::simsiam_loss(&z, &z)?; // p = z: the views disagree, loss > −1
//! assert!(loss.double_value(&[]) >= -1.0);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::views::{same_shape, two_view_dims};
use crate::LossError;

/// `nn.CosineSimilarity`'s default eps.
const COS_EPS: f64 = 1e-8;

/// The negative cosine loss between predictions `p: [2, m, d]` and
/// projections `z: [2, m, d]` with stop-gradient on `z`.
pub fn simsiam_loss(predictions: &Tensor, projections: &Tensor) -> Result<Tensor, LossError> {
    two_view_dims(predictions, "predictions", 1)?;
    same_shape(predictions, projections, "projections")?;
    let z = projections.detach();
    let neg_cos = |p: &Tensor, z: &Tensor| -Tensor::cosine_similarity(p, z, -1, COS_EPS).mean(None);
    Ok((neg_cos(&predictions.get(0), &z.get(1)) + neg_cos(&predictions.get(1), &z.get(0))) * 0.5)
}

/// SimSiam (predictor hidden size 512).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimsiamParams {
    /// Hidden size of the predictor.
    pub predictor_hidden: i64,
}

impl Default for SimsiamParams {
    fn default() -> Self {
        Self {
            predictor_hidden: 512,
        }
    }
}
