//! BYOL (Grill et al., 2020): a predictor on the online head's output and
//! an EMA target of encoder + head; the normalised MSE between each view's
//! prediction and the target's embedding of the other views (the release's
//! `byol.py`).

use rand::Rng;
use ssl_losses::{byol_loss, ByolParams, LossError, MethodName};
use tch::Tensor;

use super::{EmaSchedule, ExtraNetworks, LossContext, MethodOutputs, Predictor};
use crate::networks::ForwardPlan;

/// τ₀ 0.99.
pub fn defaults() -> ByolParams {
    ByolParams::default()
}

/// BYOL's predictor (hidden width `model.head_size`) and the EMA target
/// from τ₀; the head runs per view (`byol.py`).
pub fn networks(p: &ByolParams) -> ExtraNetworks {
    ExtraNetworks {
        predictor: Some(Predictor::Byol),
        ema_target: Some(EmaSchedule { tau0: p.tau0 }),
        plan: ForwardPlan {
            head_per_view: true,
            bn_last_per_view: false,
        },
        ..ExtraNetworks::NONE
    }
}

/// Any number of views ≥ 2.
pub const FIXED_VIEWS: Option<i64> = None;

/// The loss of the predictions against the target's embeddings.
pub fn loss<R: Rng + ?Sized>(
    _: &ByolParams,
    out: &MethodOutputs<'_>,
    _ctx: &LossContext,
    _rng: &mut R,
) -> Result<Tensor, LossError> {
    let targets = out.targets_for(MethodName::Byol)?;
    byol_loss(out.predictions_for(MethodName::Byol)?, targets)
}
