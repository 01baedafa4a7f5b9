//! PCA whitening (the paper's failure case, analysis 1): whitening along
//! `axis` by PCA (no rotation back), over fixed contiguous groups, per
//! random sub-batch of `w_size`.

use rand::Rng;
use ssl_losses::{LossError, PcaWhiteningParams, WhiteningLoss};
use tch::Tensor;
use whitening_core::{WhiteningConfig, WhiteningKind};

use super::{whitening_family_loss, ExtraNetworks, LossContext, MethodOutputs};

/// The reference's: channel axis, no groups, CW-RGP's other defaults.
pub fn defaults() -> PcaWhiteningParams {
    PcaWhiteningParams::default()
}

/// The method's table in a config: the keys given over [`defaults`].
pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<PcaWhiteningParams, D::Error> {
    super::overlay(d, defaults())
}

/// Encoder and projection head alone, the head on the views concatenated.
pub fn networks(_: &PcaWhiteningParams) -> ExtraNetworks {
    ExtraNetworks::NONE
}

/// Any number of views ≥ 2 (all pairs).
pub const FIXED_VIEWS: Option<i64> = None;

/// The whitening loss of `p`.
pub fn whitening_loss(p: &PcaWhiteningParams) -> WhiteningLoss {
    WhiteningLoss::from_params(
        WhiteningConfig::new(p.axis.into(), WhiteningKind::Pca).with_groups(p.whitening.groups),
        &p.whitening,
    )
}

/// The loss of the head's embeddings.
pub fn loss<R: Rng + ?Sized>(
    p: &PcaWhiteningParams,
    out: &MethodOutputs<'_>,
    ctx: &LossContext,
    rng: &mut R,
) -> Result<Tensor, LossError> {
    whitening_family_loss(whitening_loss(p), out, ctx, rng)
}
