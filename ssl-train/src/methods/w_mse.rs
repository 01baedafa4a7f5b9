//! W-MSE (Ermolov et al., ICML 2021): batch whitening by Cholesky per
//! random sub-batch of `w_size`, then the normalised MSE between every
//! pair of views.

use rand::Rng;
use ssl_losses::{LossError, WhiteningLoss, WhiteningParams};
use tch::Tensor;
use whitening_core::WhiteningConfig;

use super::{whitening_family_loss, ExtraNetworks, LossContext, MethodOutputs};

/// One group, sub-batches of 128 (`docs/reference.md` §6.3–§6.4).
pub fn defaults() -> WhiteningParams {
    WhiteningParams {
        groups: 1,
        w_size: 128,
        ..WhiteningParams::default()
    }
}

/// The method's table in a config: the keys given over [`defaults`].
pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<WhiteningParams, D::Error> {
    super::overlay(d, defaults())
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
    WhiteningLoss::from_params(WhiteningConfig::w_mse().with_groups(p.groups), p)
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
