//! Barlow Twins (Zbontar et al., 2021): the cross-correlation of the two
//! views' embeddings pulled to the identity. The release's
//! `barlow_twins.py` normalises each view with a learnable
//! `BatchNorm1d(emb)` (`self.bn`, the trainer's `bn_last`, per view).

use rand::Rng;
use ssl_losses::{
    barlow_twins_loss, barlow_twins_loss_of_normalized, BarlowTwinsParams, LossError,
};
use tch::Tensor;

use super::{ExtraNetworks, LossContext, MethodOutputs};
use crate::networks::ForwardPlan;

/// λ 0.008 (the CW-RGP release's default).
pub fn defaults() -> BarlowTwinsParams {
    BarlowTwinsParams::default()
}

/// The head and the learnable `bn_last`, both per view.
pub fn networks(_: &BarlowTwinsParams) -> ExtraNetworks {
    ExtraNetworks {
        bn_last: true,
        plan: ForwardPlan {
            head_per_view: true,
            bn_last_per_view: true,
        },
        ..ExtraNetworks::NONE
    }
}

/// Two views exactly.
pub const FIXED_VIEWS: Option<i64> = Some(2);

/// The loss of the embeddings, already normalised when the trainer's
/// `bn_last` ran, standardised by the loss otherwise.
pub fn loss<R: Rng + ?Sized>(
    p: &BarlowTwinsParams,
    out: &MethodOutputs<'_>,
    ctx: &LossContext,
    _rng: &mut R,
) -> Result<Tensor, LossError> {
    if ctx.bn_last_applied {
        barlow_twins_loss_of_normalized(out.embeddings, p.lambda)
    } else {
        barlow_twins_loss(out.embeddings, p.lambda)
    }
}
