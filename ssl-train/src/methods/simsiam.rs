//! SimSiam (Chen & He, 2021): SimSiam's head and predictor, the negative
//! cosine between each view's prediction and the other view's
//! stop-gradient projection (the release's `simsiam.py`).

use rand::Rng;
use ssl_losses::{simsiam_loss, LossError, MethodName, SimsiamParams};
use tch::Tensor;

use super::{ExtraNetworks, Head, LossContext, MethodOutputs, Predictor};
use crate::networks::ForwardPlan;

/// Predictor hidden width 512.
pub fn defaults() -> SimsiamParams {
    SimsiamParams::default()
}

/// SimSiam's head and predictor; the head runs per view (`simsiam.py`).
pub fn networks(p: &SimsiamParams) -> ExtraNetworks {
    ExtraNetworks {
        head: Head::Simsiam,
        predictor: Some(Predictor::Simsiam {
            hidden: p.predictor_hidden,
        }),
        plan: ForwardPlan {
            head_per_view: true,
            bn_last_per_view: false,
        },
        ..ExtraNetworks::NONE
    }
}

/// Two views exactly.
pub const FIXED_VIEWS: Option<i64> = Some(2);

/// The loss of the predictions against the projections.
pub fn loss<R: Rng + ?Sized>(
    _: &SimsiamParams,
    out: &MethodOutputs<'_>,
    _ctx: &LossContext,
    _rng: &mut R,
) -> Result<Tensor, LossError> {
    simsiam_loss(out.predictions_for(MethodName::Simsiam)?, out.embeddings)
}
