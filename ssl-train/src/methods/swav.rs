//! SwAV (Caron et al., 2020): swapped prediction of Sinkhorn–Knopp codes
//! over a learnable prototype matrix.

use rand::Rng;
use ssl_losses::{swav_loss, LossError, MethodName, SwavParams};
use tch::Tensor;

use super::{ExtraNetworks, LossContext, MethodOutputs};

/// The SwAV paper's ImageNet defaults (3000 prototypes, T 0.1, ε 0.05,
/// 3 Sinkhorn iterations).
pub fn defaults() -> SwavParams {
    SwavParams::default()
}

/// The `[K, emb]` prototypes; the head on the views concatenated.
pub fn networks(p: &SwavParams) -> ExtraNetworks {
    ExtraNetworks {
        prototypes: Some(p.prototypes),
        ..ExtraNetworks::NONE
    }
}

/// Any number of views ≥ 2.
pub const FIXED_VIEWS: Option<i64> = None;

/// The loss of the embeddings against the prototypes.
pub fn loss<R: Rng + ?Sized>(
    p: &SwavParams,
    out: &MethodOutputs<'_>,
    _ctx: &LossContext,
    _rng: &mut R,
) -> Result<Tensor, LossError> {
    swav_loss(out.embeddings, out.prototypes_for(MethodName::Swav)?, p)
}
