//! The plain control: the MSE between every pair of views with no
//! whitening at all, which collapses.

use rand::Rng;
use ssl_losses::{LossError, PlainParams, WhiteningLoss};
use tch::Tensor;

use super::{whitening_family_loss, ExtraNetworks, LossContext, MethodOutputs};

/// Normalised MSE.
pub fn defaults() -> PlainParams {
    PlainParams::default()
}

/// Encoder and projection head alone, the head on the views concatenated.
pub fn networks(_: &PlainParams) -> ExtraNetworks {
    ExtraNetworks::NONE
}

/// Any number of views ≥ 2 (all pairs).
pub const FIXED_VIEWS: Option<i64> = None;

/// The loss of `p`, without a transform.
pub fn whitening_loss(p: &PlainParams) -> WhiteningLoss {
    WhiteningLoss::plain().with_normalized(p.norm)
}

/// The loss of the head's embeddings.
pub fn loss<R: Rng + ?Sized>(
    p: &PlainParams,
    out: &MethodOutputs<'_>,
    ctx: &LossContext,
    rng: &mut R,
) -> Result<Tensor, LossError> {
    whitening_family_loss(whitening_loss(p), out, ctx, rng)
}
