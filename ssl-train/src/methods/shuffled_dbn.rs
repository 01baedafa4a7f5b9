//! Shuffled-DBN (the reference's `bn` method): batch standardisation per
//! random sub-batch of `w_size`, then the MSE between every pair of views.

use rand::Rng;
use ssl_losses::{LossError, ShuffledDbnParams, WhiteningLoss};
use tch::Tensor;

use super::{whitening_family_loss, ExtraNetworks, LossContext, MethodOutputs};

/// `w_size` 128, BatchNorm1d's eps 1e-5 ([`ShuffledDbnParams`] says why).
pub fn defaults() -> ShuffledDbnParams {
    ShuffledDbnParams::default()
}

/// Encoder and projection head alone, the head on the views concatenated.
pub fn networks(_: &ShuffledDbnParams) -> ExtraNetworks {
    ExtraNetworks::NONE
}

/// Any number of views ≥ 2 (all pairs).
pub const FIXED_VIEWS: Option<i64> = None;

/// The standardising loss of `p`.
pub fn whitening_loss(p: &ShuffledDbnParams) -> WhiteningLoss {
    WhiteningLoss::shuffled_dbn(p.w_size, p.eps)
        .with_w_iter(p.w_iter)
        .with_normalized(p.norm)
}

/// The loss of the head's embeddings.
pub fn loss<R: Rng + ?Sized>(
    p: &ShuffledDbnParams,
    out: &MethodOutputs<'_>,
    ctx: &LossContext,
    rng: &mut R,
) -> Result<Tensor, LossError> {
    whitening_family_loss(whitening_loss(p), out, ctx, rng)
}
