//! CW-RGP (paper §4): channel whitening by ZCA over a random partition of
//! the channels into `groups` groups, per random sub-batch of `w_size`
//! examples, then the normalised MSE between every pair of views.

use rand::Rng;
use ssl_losses::{LossError, WhiteningLoss, WhiteningParams};
use tch::Tensor;
use whitening_core::WhiteningConfig;

use super::{whitening_family_loss, ExtraNetworks, LossContext, MethodOutputs};

/// The CW-RGP CIFAR runs (`docs/reference.md` §6.4): `w_size` 64, 4 groups,
/// normalised MSE, `minus` 1, no shrinkage, no covariance term.
pub fn defaults() -> WhiteningParams {
    WhiteningParams::default()
}

/// Encoder and projection head alone, the head on the views concatenated
/// (`self.head(torch.cat(h))`).
pub fn networks(_: &WhiteningParams) -> ExtraNetworks {
    ExtraNetworks::NONE
}

/// Any number of views ≥ 2 (all pairs).
pub const FIXED_VIEWS: Option<i64> = None;

/// The whitening loss of `p`.
pub fn whitening_loss(p: &WhiteningParams) -> WhiteningLoss {
    WhiteningLoss::from_params(WhiteningConfig::cw_rgp(p.groups), p)
}

/// The loss of the head's embeddings.
pub fn loss<R: Rng + ?Sized>(
    p: &WhiteningParams,
    out: &MethodOutputs<'_>,
    ctx: &LossContext,
    rng: &mut R,
) -> Result<Tensor, LossError> {
    whitening_family_loss(whitening_loss(p), out, ctx, rng)
}
