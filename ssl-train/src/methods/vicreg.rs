//! VICReg (Bardes et al., 2022): variance, invariance and covariance terms
//! of the two views' embeddings (the release's `vicreg.py`).

use rand::Rng;
use ssl_losses::{vicreg_loss, LossError, VicRegWeights};
use tch::Tensor;

use super::{ExtraNetworks, LossContext, MethodOutputs};
use crate::networks::ForwardPlan;

/// The VICReg paper's weights (25, 25, 1).
pub fn defaults() -> VicRegWeights {
    VicRegWeights::default()
}

/// The head runs per view (`vicreg.py`).
pub fn networks(_: &VicRegWeights) -> ExtraNetworks {
    ExtraNetworks {
        plan: ForwardPlan {
            head_per_view: true,
            bn_last_per_view: false,
        },
        ..ExtraNetworks::NONE
    }
}

/// Two views exactly.
pub const FIXED_VIEWS: Option<i64> = Some(2);

/// The loss of the embeddings.
pub fn loss<R: Rng + ?Sized>(
    w: &VicRegWeights,
    out: &MethodOutputs<'_>,
    _ctx: &LossContext,
    _rng: &mut R,
) -> Result<Tensor, LossError> {
    vicreg_loss(out.embeddings, w)
}
